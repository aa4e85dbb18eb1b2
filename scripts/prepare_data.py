#!/usr/bin/env python3
"""prepare_data.py — turn a folder of videos and their captions into an osp training file.

usage:
  prepare_data.py VIDEOS CAPTIONS --model WAN_DIR --out DATA.h5 [options]
  prepare_data.py VIDEOS CAPTIONS --tiny-random SEED --out DATA.h5 [options]   (no weights)
  prepare_data.py merge SHARD.h5... --out DATA.h5

VIDEOS is a folder (searched recursively for .mp4 .mov .mkv .avi .webm .m4v .gif) or a text
file with one video path per line. CAPTIONS is a CSV file with a header naming a path column
(path, video, file or filename) and a caption column (caption, text or prompt), or a JSONL
file with the same keys. A caption's path may be relative to VIDEOS, absolute, or a bare
file name; videos without a caption are skipped (and reported).

Every clip is
  * assigned the bucket (HxW) nearest to its aspect ratio; among buckets of (nearly) that
    aspect the largest one the video covers without upscaling (else the smallest);
  * resized (bicubic) to cover the bucket and centre-cropped to it;
  * sampled at --fps (nearest source frame to each target time, from --start seconds on)
    to the largest of the --frames counts (each of the form 4k+1) that the video holds;
    a video holding fewer than the smallest count is skipped as too short;
  * encoded by the Wan VAE (diffusers AutoencoderKLWan, fp32, the mean of the posterior)
    into [16, 1+(F-1)/4, H/8, W/8] and normalised per channel, z = (mu - mean) / std, with
    the VAE config's latents_mean/latents_std (the Wan2.1 table when it has none);
  * captioned by umT5 (transformers UMT5EncoderModel + its tokenizer; HTML entities and
    whitespace cleaned, ftfy applied when installed, as Wan's pipelines do;
    512 tokens with special tokens, attention mask): the output is trimmed to the true
    length, text_len is stored, and rows past it are zero (wan21.md §10).
The output has one group per bucket, /bucket_<H>x<W> (/bucket_<F>f_<H>x<W> when several
frame counts are given), each with latents [N,16,T,H/8,W/8], text [N,512,Dt], text_len [N],
prompts [N] and sources [N] (video paths), which `osp data inspect` reports and `osp train`
reads. --dtype bf16 (default) stores latents and text as bfloat16 (uint16 + dtype
attribute), fp16 as IEEE half, fp32 as float32.

Resuming: every finished clip (and every skip, with its reason) is kept in the work folder
(--work, default DATA.h5.work/); a rerun with the same settings does only what is missing
and then writes DATA.h5 atomically (temporary name, fsync, rename). Settings that change
the result (buckets, frames, fps, models, dtype) are recorded there; a rerun with other
settings is refused. --shard i/n takes every n-th clip starting at i (i = 0..n-1); join the
shards' outputs with `prepare_data.py merge`.

--model WAN_DIR is a diffusers Wan2.1 pipeline folder or Hub id (vae/, text_encoder/,
tokenizer/), e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers; --vae, --text-encoder and --tokenizer
override its parts (--vae also takes the original Wan2.1_VAE.pth, as decode_latents.py
does). --tiny-random SEED builds randomly initialised small models instead (the VAE of
`decode_latents.py --random-tiny-vae --seed SEED`, a 2-layer umT5 of width 32 with a byte
tokenizer), to test the pipeline without downloads; --vae-config / --text-config JSON
files build randomly initialised models of any other size.

Requires torch, numpy, h5py, diffusers (>= 0.33), transformers (with sentencepiece for
the umT5 tokenizer) and PyAV (pip install av) or imageio + imageio-ffmpeg.
"""
import argparse
import csv
import hashlib
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

VIDEO_EXT = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif")
BUCKET_PRESETS = {
    "480p": "480x832,832x480,480x640,640x480,512x512",
    "720p": "720x1280,1280x720,720x960,960x720,720x720",
}
FORMAT_VERSION = 1


def die(msg):
    print(f"prepare_data: error: {msg}", file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------ inputs

def parse_buckets(spec):
    out = []
    for part in spec.split(","):
        part = part.strip()
        if part in BUCKET_PRESETS:
            out += parse_buckets(BUCKET_PRESETS[part])
            continue
        m = re.fullmatch(r"(\d+)x(\d+)", part)
        if not m:
            die(f"--buckets: '{part}' is not HxW (e.g. 480x832) or a preset ({', '.join(BUCKET_PRESETS)})")
        h, w = int(m.group(1)), int(m.group(2))
        if h % 16 or w % 16 or h <= 0 or w <= 0:
            die(f"--buckets: {h}x{w}: height and width must be positive multiples of 16 (VAE 8x, patch 2x2)")
        if (h, w) not in out:
            out.append((h, w))
    if not out:
        die("--buckets: no bucket given")
    return out


def parse_frames(spec):
    out = sorted({int(x) for x in spec.split(",") if x.strip()}, reverse=True)
    for f in out:
        if f < 1 or (f - 1) % 4:
            die(f"--frames: {f} is not of the form 4k+1 (1, 5, 9, ..., 81)")
    return out


def list_videos(spec):
    if os.path.isdir(spec):
        found = []
        for root, _, files in os.walk(spec):
            for f in files:
                if f.lower().endswith(VIDEO_EXT):
                    found.append(os.path.join(root, f))
        return os.path.abspath(spec), sorted(os.path.abspath(p) for p in found)
    if os.path.isfile(spec):
        base = os.path.dirname(os.path.abspath(spec))
        with open(spec, encoding="utf-8") as fh:
            paths = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
        return base, [p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p)) for p in paths]
    die(f"{spec}: no such folder or list file")


def read_captions(path):
    """{path as written: caption}"""
    pkeys, ckeys = ("path", "video", "file", "filename", "video_path"), ("caption", "text", "prompt")
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            if path.lower().endswith((".jsonl", ".json")):
                for i, ln in enumerate(fh, 1):
                    if not ln.strip():
                        continue
                    try:
                        rows.append((i, json.loads(ln)))
                    except json.JSONDecodeError as e:
                        die(f"{path}:{i}: not JSON ({e.msg})")
            else:
                for i, r in enumerate(csv.DictReader(fh), 2):
                    rows.append((i, r))
    except OSError as e:
        die(f"{path}: cannot read ({e.strerror})")
    caps = {}
    for i, r in rows:
        r = {str(k).strip().lower(): v for k, v in r.items() if k is not None}
        p = next((r[k] for k in pkeys if r.get(k)), None)
        c = next((r[k] for k in ckeys if r.get(k) is not None), None)
        if p is None or c is None:
            die(f"{path}:{i}: needs a path column ({'/'.join(pkeys)}) and a caption column ({'/'.join(ckeys)})")
        caps[str(p).strip()] = str(c)
    if not caps:
        die(f"{path}: no captions")
    return caps


def match_captions(base, videos, caps):
    """[(abs path, caption or None)]: by path relative to base, absolute path, then file name."""
    by_abs, by_name = {}, {}
    for p, c in caps.items():
        by_abs[os.path.normpath(p if os.path.isabs(p) else os.path.join(base, p))] = c
        by_name.setdefault(os.path.basename(p), []).append(c)
    out = []
    for v in videos:
        c = by_abs.get(os.path.normpath(v))
        if c is None and len(by_name.get(os.path.basename(v), [])) == 1:
            c = by_name[os.path.basename(v)][0]
        out.append((v, c))
    return out


def clean_caption(text):
    """as Wan's pipelines clean prompts: ftfy (when installed), HTML entities, whitespace"""
    import html
    try:
        import ftfy
        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def pick_bucket(h, w, buckets):
    import math
    ar = math.log(h / w)
    best = min(abs(math.log(bh / bw) - ar) for bh, bw in buckets)
    near = [(bh, bw) for bh, bw in buckets if abs(math.log(bh / bw) - ar) <= best + 0.05]
    fits = [b for b in near if b[0] * b[1] <= h * w]
    return max(fits, key=lambda b: b[0] * b[1]) if fits else min(near, key=lambda b: b[0] * b[1])


# ------------------------------------------------------------------ video decoding

class Unusable(Exception):
    """A video that is skipped (the message is the logged reason)."""


def resize_crop(img, bh, bw):
    """PIL image -> uint8 [bh, bw, 3]: bicubic resize to cover the bucket, centre crop."""
    import numpy as np
    from PIL import Image
    w, h = img.size
    s = max(bh / h, bw / w)
    nw, nh = max(bw, round(w * s)), max(bh, round(h * s))
    img = img.convert("RGB").resize((nw, nh), Image.BICUBIC)
    x0, y0 = (nw - bw) // 2, (nh - bh) // 2
    return np.asarray(img.crop((x0, y0, x0 + bw, y0 + bh)), dtype=np.uint8)


def target_count(n_avail, frames):
    for f in frames:  # largest first
        if n_avail >= f:
            return f
    return 0


def _frames_pyav(path):
    """(width, height, fps, iterator of (time, PIL image))"""
    import av
    try:
        c = av.open(path)
    except Exception as e:  # noqa: BLE001 - any open failure is a skip
        raise Unusable(f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    if not c.streams.video:
        c.close()
        raise Unusable("unreadable (no video stream)")
    st = c.streams.video[0]
    rate = st.average_rate or st.guessed_rate
    fps = float(rate) if rate else 0.0
    w, h = st.codec_context.width, st.codec_context.height
    tb = float(st.time_base) if st.time_base else None

    def gen():
        try:
            k = 0
            for fr in c.decode(st):
                t = fr.pts * tb if (fr.pts is not None and tb) else (k / fps if fps else None)
                yield t, fr.to_image()
                k += 1
        finally:
            c.close()
    return w, h, fps, gen()


def _frames_imageio(path):
    import imageio.v2 as iio
    from PIL import Image
    try:
        r = iio.get_reader(path, "ffmpeg")
        meta = r.get_meta_data()
    except Exception as e:  # noqa: BLE001
        raise Unusable(f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    fps = float(meta.get("fps") or 0)
    w, h = meta.get("size", (0, 0))

    def gen():
        try:
            for k, a in enumerate(r):
                yield (k / fps if fps else None), Image.fromarray(a)
        finally:
            r.close()
    return w, h, fps, gen()


def load_clip(path, buckets, frames, fps, start=0.0):
    """-> (bucket (h, w), uint8 [F, h, w, 3]); raises Unusable with the reason."""
    try:
        import av  # noqa: F401
        opener = _frames_pyav
    except ImportError:
        opener = _frames_imageio
    w, h, src_fps, it = opener(path)
    if not w or not h:
        raise Unusable("unreadable (no frame size)")
    bh, bw = pick_bucket(h, w, buckets)
    nmax = frames[0]
    targets = [start + j / fps for j in range(nmax)]
    picked, prev = [], None  # prev = (time, image)
    seen = 0
    try:
        for t, img in it:
            seen += 1
            if t is None:
                raise Unusable("unreadable (no frame rate or timestamps)")
            while len(picked) < nmax and t >= targets[len(picked)] - 1e-6:
                tt = targets[len(picked)]
                use = img if prev is None or abs(t - tt) <= abs(prev[0] - tt) else prev[1]
                picked.append(resize_crop(use, bh, bw))
            prev = (t, img)
            if len(picked) == nmax:
                break
    except Unusable:
        raise
    except Exception as e:  # noqa: BLE001 - a decode error midway: use what came before it? no: skip
        raise Unusable(f"unreadable (decoding failed after {seen} frame(s): {type(e).__name__})")
    if seen == 0:
        raise Unusable("unreadable (no frames decoded)")
    # the last frame covers the target times up to one source frame after it
    if prev is not None and src_fps > 0:
        while len(picked) < nmax and targets[len(picked)] < prev[0] + 0.5 / src_fps:
            picked.append(resize_crop(prev[1], bh, bw))
    n = target_count(len(picked), frames)
    if n == 0:
        dur = prev[0] - start + (1 / src_fps if src_fps else 0) if prev else 0
        raise Unusable(f"too short ({len(picked)} frame(s) at {fps:g} fps from {dur:.2f} s; "
                       f"needs {frames[-1]})")
    import numpy as np
    return (bh, bw), np.stack(picked[:n])


# ------------------------------------------------------------------ models

def load_models(args, device):
    """-> dict(vae, tokenizer, text_encoder, desc, mean, std, text_len)"""
    import torch
    from decode_latents import channel_stats, load_vae, tiny_vae
    if args.tiny_random is not None or args.vae_config or args.text_config:
        from diffusers import AutoencoderKLWan
        from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel
        seed = args.tiny_random if args.tiny_random is not None else 0
        if args.vae_config:
            with open(args.vae_config) as fh:
                torch.manual_seed(seed)
                vae, vdesc = AutoencoderKLWan(**json.load(fh)), f"random AutoencoderKLWan from {args.vae_config}"
        else:
            vae, vdesc = tiny_vae(seed)
        tcfg = dict(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                    relative_attention_num_buckets=32, dropout_rate=0.0)
        if args.text_config:
            with open(args.text_config) as fh:
                tcfg = json.load(fh)
        torch.manual_seed(seed + 1)
        te = UMT5EncoderModel(UMT5Config(**tcfg))
        tok = ByT5Tokenizer() if not args.tokenizer else _tokenizer(args.tokenizer)
        tdesc = f"random UMT5EncoderModel (d_model {te.config.d_model}, {te.config.num_layers} layers, seed {seed + 1})"
    else:
        from transformers import UMT5EncoderModel
        if not (args.model or (args.vae and args.text_encoder and args.tokenizer)):
            die("give --model WAN_DIR (or --vae, --text-encoder and --tokenizer, or --tiny-random SEED)")
        vae, vdesc = load_vae(args.vae or args.model)
        te_src = args.text_encoder or args.model
        sub = {} if args.text_encoder else {"subfolder": "text_encoder"}
        try:
            te = UMT5EncoderModel.from_pretrained(te_src, torch_dtype=torch.float32, **sub)
        except Exception as e:  # noqa: BLE001
            die(f"{te_src}: cannot load the umT5 encoder{' from text_encoder/' if sub else ''} ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); an original Wan2.1 download has no transformers "
                "encoder: use the Diffusers layout (Wan-AI/Wan2.1-T2V-1.3B-Diffusers) or --text-encoder")
        tdesc = f"UMT5EncoderModel {te_src}"
        tok = _tokenizer(args.tokenizer or args.model, sub_ok=not args.tokenizer)
    z = int(getattr(vae.config, "z_dim", 16))
    mean, std, stats_src = channel_stats(vae, z)
    vdt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    vae = vae.to(device=device).eval()
    if args.vae_dtype != "fp32":  # the Wan VAE runs in fp32; half precision only on request
        vae = vae.to(dtype=vdt[args.vae_dtype])
    if args.tiling:
        vae.enable_tiling()
    te = te.to(device=device, dtype=vdt[args.text_dtype or ("bf16" if device.type == "cuda" else "fp32")]).eval()
    return dict(vae=vae, tok=tok, te=te, vdesc=vdesc, tdesc=tdesc, mean=mean, std=std, stats_src=stats_src,
                dt=int(te.config.d_model))


def _tokenizer(src, sub_ok=False):
    from transformers import AutoTokenizer
    errs = []
    for kw in ([{"subfolder": "tokenizer"}] if sub_ok else []) + [{}]:
        try:
            return AutoTokenizer.from_pretrained(src, **kw)
        except Exception as e:  # noqa: BLE001
            errs.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    die(f"{src}: cannot load the umT5 tokenizer ({'; '.join(errs)}; needs sentencepiece)")


def encode_text(m, captions, text_len, device):
    """-> (float32 [B, text_len, Dt] zero past each length, lengths [B])"""
    import torch
    tok = m["tok"](captions, padding="max_length", max_length=text_len, truncation=True,
                   add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    ids, mask = tok.input_ids.to(device), tok.attention_mask.to(device)
    with torch.no_grad():
        h = m["te"](input_ids=ids, attention_mask=mask).last_hidden_state.float()
    lens = mask.sum(dim=1).long()
    keep = torch.arange(text_len, device=device)[None, :] < lens[:, None]
    h = h * keep[:, :, None]  # trimmed to the true length, zero-padded (wan21.md §10.1)
    return h.cpu().numpy(), lens.cpu().numpy()


def encode_video(m, clips, device):
    """uint8 [B, F, H, W, 3] -> normalised latents float32 [B, C, T, H/8, W/8]"""
    import numpy as np
    import torch
    x = torch.from_numpy(np.ascontiguousarray(clips)).to(device)
    x = x.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # [B,3,F,H,W] in [-1,1]
    vae = m["vae"]
    with torch.no_grad():
        mu = vae.encode(x.to(vae.dtype)).latent_dist.mean.float()  # the mean; never sampled
    c = mu.shape[1]
    mean = torch.tensor(m["mean"], dtype=torch.float32, device=device).view(1, c, 1, 1, 1)
    std = torch.tensor(m["std"], dtype=torch.float32, device=device).view(1, c, 1, 1, 1)
    return ((mu - mean) / std).cpu().numpy()


# ------------------------------------------------------------------ storage

def to_store(a, dtype):
    """float32 array -> (array to write, dtype attribute or None)"""
    import numpy as np
    a = np.asarray(a, np.float32)
    if dtype == "fp32":
        return a, None
    if dtype == "fp16":
        return a.astype(np.float16), None
    u = a.view(np.uint32).astype(np.uint64)  # bfloat16, round to nearest even
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    r[nan] = 0x7FC0
    return r, "bfloat16"


def save_atomic_npz(path, **arrays):
    import numpy as np
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path, obj):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def group_name(f, h, w, multi):
    return f"bucket_{f}f_{h}x{w}" if multi else f"bucket_{h}x{w}"


def write_h5(out, groups, attrs):
    """groups: {name: (n, rows)}, rows yielding (latents, text [L,Dt], text_len, prompt, source, dtype
    attribute or None) in storage dtype. Rows are written one at a time (a dataset can be far larger
    than memory) into a temporary file that is renamed to `out` only when complete."""
    import h5py
    import numpy as np
    tmp = f"{out}.tmp.{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            for name in sorted(groups):
                n, rows = groups[name]
                g = f.create_group(name)
                lens, prompts, sources = np.zeros(n, np.int32), [], []
                for i, (lat, txt, tl, prompt, source, attr) in enumerate(rows):
                    if i == 0:
                        for key, a in (("latents", lat), ("text", txt)):
                            d = g.create_dataset(key, shape=(n,) + a.shape, dtype=a.dtype, chunks=(1,) + a.shape)
                            if attr:
                                d.attrs["dtype"] = attr
                    g["latents"][i] = lat
                    g["text"][i] = txt
                    lens[i] = tl
                    prompts.append(prompt)
                    sources.append(source)
                if len(prompts) != n:
                    raise RuntimeError(f"{name}: {len(prompts)} rows, expected {n}")
                g.create_dataset("text_len", data=lens)
                st = h5py.string_dtype("utf-8")
                g.create_dataset("prompts", data=np.array(prompts, dtype=object), dtype=st)
                g.create_dataset("sources", data=np.array(sources, dtype=object), dtype=st)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
        dfd = os.open(os.path.dirname(os.path.abspath(out)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ------------------------------------------------------------------ progress

class Progress:
    def __init__(self, total, done=0):
        self.total, self.done, self.t0, self.start_done = total, done, time.time(), done
        self.tty, self.last = sys.stderr.isatty(), 0.0
        self.skipped = 0

    def step(self, n=1, skipped=0):
        self.done += n
        self.skipped += skipped
        now = time.time()
        if not self.tty and now - self.last < 10 and self.done < self.total:
            return
        self.last = now
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else 0
        frac = self.done / self.total if self.total else 1
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if rate > 0 else "--:--:--"
        msg = (f"[{bar}] {self.done}/{self.total} {100 * frac:5.1f}% {rate:.2f} clip/s ETA {eta}"
               f"{f', {self.skipped} skipped' if self.skipped else ''}")
        print(("\r" + msg) if self.tty else msg, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self):
        if self.tty:
            print(file=sys.stderr)


# ------------------------------------------------------------------ the run

def settings_of(args, buckets, frames, m):
    return dict(version=FORMAT_VERSION, buckets=[f"{h}x{w}" for h, w in buckets], frames=frames, fps=args.fps,
                start=args.start, dtype=args.dtype, text_len=args.text_len, vae=m["vdesc"], text_encoder=m["tdesc"],
                vae_dtype=args.vae_dtype, latents_mean=list(m["mean"]), latents_std=list(m["std"]))


def clip_key(path):
    stem = re.sub(r"[^0-9A-Za-z]+", "_", os.path.splitext(os.path.basename(path))[0])[:40]
    return f"{stem}_{hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]}"


def run(args):
    import numpy as np
    import torch
    buckets, frames = parse_buckets(args.buckets), parse_frames(args.frames)
    if args.fps <= 0:
        die("--fps must be > 0")
    m_sh = re.fullmatch(r"(\d+)/(\d+)", args.shard or "0/1")
    if not m_sh or not 0 <= int(m_sh.group(1)) < int(m_sh.group(2)):
        die(f"--shard {args.shard}: expected i/n with 0 <= i < n")
    si, sn = int(m_sh.group(1)), int(m_sh.group(2))
    base, videos = list_videos(args.videos)
    caps = read_captions(args.captions)
    items = match_captions(base, videos, caps)[si::sn]
    if not items:
        die(f"{args.videos}: no videos{f' in shard {si}/{sn}' if sn > 1 else ''}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.set_grad_enabled(False)
    m = load_models(args, device)
    settings = settings_of(args, buckets, frames, m)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    work = args.work or args.out + ".work"
    os.makedirs(os.path.join(work, "clips"), exist_ok=True)
    for stale in os.listdir(os.path.join(work, "clips")):  # left by a killed run (one run per work folder)
        if ".tmp." in stale:
            os.remove(os.path.join(work, "clips", stale))
    sfile = os.path.join(work, "settings.json")
    if os.path.exists(sfile):
        with open(sfile) as fh:
            old = json.load(fh)
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            die(f"{work}: made with other settings ({', '.join(diff)} differ); use another --work or delete it")
    else:
        write_json_atomic(sfile, settings)
    print(f"{len(items)} video(s){f' (shard {si}/{sn})' if sn > 1 else ''}; buckets "
          f"{' '.join(settings['buckets'])}; frames {frames} at {args.fps:g} fps; device {device}", file=sys.stderr)
    print(f"VAE: {m['vdesc']} (normalised with the {m['stats_src']}); text: {m['tdesc']}", file=sys.stderr)

    def done_path(p):
        return os.path.join(work, "clips", clip_key(p) + ".npz")

    def skip_path(p):
        return os.path.join(work, "clips", clip_key(p) + ".skip.json")

    todo = [(p, c) for p, c in items if not os.path.exists(done_path(p)) and not os.path.exists(skip_path(p))]
    if len(todo) < len(items):
        nskip = sum(os.path.exists(skip_path(p)) for p, _ in items)
        print(f"resuming: {len(items) - len(todo)} clip(s) already done in {work} "
              f"({len(items) - len(todo) - nskip} encoded, {nskip} skipped)", file=sys.stderr)
    prog = Progress(len(items), len(items) - len(todo))
    pending = {}  # (F, h, w) -> [(path, caption, frames uint8)]

    def skip(p, reason):
        write_json_atomic(skip_path(p), {"source": p, "reason": reason})
        print(("\n" if prog.tty else "") + f"skip {p}: {reason}", file=sys.stderr)
        prog.step(1, 1)

    def flush(key):
        batch = pending.pop(key, [])
        if not batch:
            return
        lat = encode_video(m, np.stack([b[2] for b in batch]), device)
        txt, lens = encode_text(m, [b[1] for b in batch], args.text_len, device)
        for i, (p, c, _) in enumerate(batch):
            L = int(lens[i])
            la, la_attr = to_store(lat[i], args.dtype)
            ta, ta_attr = to_store(txt[i, :L], args.dtype)  # trimmed; padded again at assembly
            save_atomic_npz(done_path(p), latents=la, text=ta, text_len=np.int32(L),
                            meta=np.array(json.dumps({"source": p, "prompt": c, "frames": key[0], "h": key[1],
                                                      "w": key[2], "attr": la_attr or ""})))
        prog.step(len(batch))

    def read(pc):  # runs on a decoding thread (PyAV and PIL release the GIL while they work)
        p, c = pc
        if c is None:
            return p, None, None, None, "no caption in " + args.captions
        try:
            bucket, clip = load_clip(p, buckets, frames, args.fps, args.start)
            return p, clean_caption(c), bucket, clip, None
        except Unusable as e:
            return p, c, None, None, str(e)

    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=args.workers) as ex:
        it, window = iter(todo), deque()  # results are taken in clip order: the run is deterministic
        for pc in it:
            window.append(ex.submit(read, pc))
            if len(window) >= 2 * args.workers:
                break
        while window:
            p, c, bucket, clip, why = window.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                window.append(ex.submit(read, nxt))
            if why:
                skip(p, why)
                continue
            key = (clip.shape[0],) + bucket
            pending.setdefault(key, []).append((p, c, clip))
            if len(pending[key]) >= args.batch:
                flush(key)
    for key in list(pending):
        flush(key)
    prog.close()
    assemble(args.out, items, work, settings, len(frames) > 1, done_path, skip_path)


def assemble(out, items, work, settings, multi, done_path, skip_path):
    import numpy as np
    members, skipped = {}, []  # group -> [npz path]
    L = settings["text_len"]
    for p, _ in items:
        if os.path.exists(skip_path(p)):
            with open(skip_path(p)) as fh:
                skipped.append((p, json.load(fh)["reason"]))
            continue
        with np.load(done_path(p)) as z:
            meta = json.loads(str(z["meta"]))
        members.setdefault(group_name(meta["frames"], meta["h"], meta["w"], multi), []).append(done_path(p))

    def rows(paths):
        for path in paths:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                n, t = int(z["text_len"]), z["text"]
                full = np.zeros((L, t.shape[1]), t.dtype)  # zero rows past the prompt
                full[:n] = t
                yield z["latents"], full, n, meta["prompt"], meta["source"], meta["attr"] or None

    if not members:
        die(f"no usable clip: all {len(items)} skipped ({skipped[0][1] if skipped else ''} ...)")
    attrs = {k: (json.dumps(v) if isinstance(v, list) and k not in ("latents_mean", "latents_std") else v)
             for k, v in settings.items()}
    attrs["source"] = "prepare_data.py"
    write_h5(out, {k: (len(v), rows(v)) for k, v in members.items()}, attrs)
    with open(os.path.join(work, "skipped.tsv"), "w") as fh:
        for p, r in skipped:
            fh.write(f"{p}\t{r}\n")
    n = sum(len(v) for v in members.values())
    print(f"wrote {out}: {n} clip(s) in {len(members)} bucket(s): "
          + ", ".join(f"{k} {len(v)}" for k, v in sorted(members.items())), file=sys.stderr)
    if skipped:
        kinds = {}
        for _, r in skipped:
            kinds[r.split(" (")[0]] = kinds.get(r.split(" (")[0], 0) + 1
        print(f"skipped {len(skipped)}: " + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
              + f" (list: {os.path.join(work, 'skipped.tsv')})", file=sys.stderr)


# ------------------------------------------------------------------ merge

def merge(shards, out):
    import h5py
    attrs, counts, files = None, {}, []
    try:
        for s in shards:
            try:
                f = h5py.File(s, "r")
            except OSError as e:
                die(f"{s}: cannot open ({e})")
            files.append(f)
            a = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}
            if attrs is None:
                attrs = a
            elif a != attrs:
                diff = sorted(k for k in set(a) | set(attrs) if a.get(k) != attrs.get(k))
                die(f"{s}: made with other settings than {shards[0]} ({', '.join(diff)} differ)")
            for name, g in f.items():
                if isinstance(g, h5py.Group) and "latents" in g:
                    counts[name] = counts.get(name, 0) + g["latents"].shape[0]
        if not counts:
            die("no bucket groups in the shards")

        def rows(name):
            for f in files:
                if name not in f:
                    continue
                g = f[name]
                attr = g["latents"].attrs.get("dtype")
                attr = attr.decode() if isinstance(attr, bytes) else attr
                for i in range(g["latents"].shape[0]):
                    p, s = g["prompts"][i], g["sources"][i]
                    yield (g["latents"][i], g["text"][i], int(g["text_len"][i]),
                           p.decode() if isinstance(p, bytes) else str(p), s.decode() if isinstance(s, bytes) else str(s),
                           attr)

        write_h5(out, {k: (n, rows(k)) for k, n in counts.items()}, attrs)
    finally:
        for f in files:
            f.close()
    print(f"wrote {out}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
          + f" from {len(shards)} shard(s)", file=sys.stderr)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "merge":
        ap = argparse.ArgumentParser(prog="prepare_data.py merge", description="join the outputs of --shard runs")
        ap.add_argument("shards", nargs="+")
        ap.add_argument("--out", required=True)
        a = ap.parse_args(argv[1:])
        merge(a.shards, a.out)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("videos", help="folder of videos, or a text file with one path per line")
    ap.add_argument("captions", help="CSV (path,caption) or JSONL ({\"path\":..., \"caption\":...})")
    ap.add_argument("--out", required=True, help="output HDF5 file")
    ap.add_argument("--model", help="diffusers Wan2.1 folder or Hub id (vae/, text_encoder/, tokenizer/)")
    ap.add_argument("--vae", help="VAE override (diffusers folder, Hub id, or Wan2.1_VAE.pth)")
    ap.add_argument("--text-encoder", help="umT5 encoder override (transformers folder or Hub id)")
    ap.add_argument("--tokenizer", help="tokenizer override (e.g. google/umt5-xxl)")
    ap.add_argument("--tiny-random", type=int, metavar="SEED", help="random tiny models (tests; no weights)")
    ap.add_argument("--vae-config", help="JSON of AutoencoderKLWan arguments: a random VAE of that shape")
    ap.add_argument("--text-config", help="JSON of UMT5Config arguments: a random encoder of that shape")
    ap.add_argument("--buckets", default="480p",
                    help="HxW list and/or presets 480p, 720p (default 480p = " + BUCKET_PRESETS["480p"] + ")")
    ap.add_argument("--frames", default="81", help="frame count(s) 4k+1, e.g. 81 or 81,49 (default 81)")
    ap.add_argument("--fps", type=float, default=16.0, help="sampling rate of the clip (Wan2.1: 16)")
    ap.add_argument("--start", type=float, default=0.0, help="seconds to skip at the start of every video")
    ap.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="storage of latents/text")
    ap.add_argument("--text-len", type=int, default=512, help="text rows (Wan2.1: 512)")
    ap.add_argument("--device", help="torch device (default cuda if available)")
    ap.add_argument("--batch", type=int, default=2, help="clips per VAE/encoder call (default 2)")
    ap.add_argument("--workers", type=int, default=4, help="video decoding threads (default 4)")
    ap.add_argument("--tiling", action="store_true", help="tiled VAE encoding (less memory at 720p)")
    ap.add_argument("--vae-dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="VAE compute (Wan: fp32)")
    ap.add_argument("--text-dtype", choices=("fp32", "bf16", "fp16"), help="umT5 compute (default bf16 on cuda)")
    ap.add_argument("--work", help="folder of finished clips for resuming (default OUT.work)")
    ap.add_argument("--shard", help="i/n: this process's share of the videos")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.text_len < 1 or args.workers < 1:
        ap.error("--batch, --workers and --text-len must be >= 1")
    try:
        import h5py  # noqa: F401
        import numpy  # noqa: F401
        import torch  # noqa: F401
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
        from PIL import Image  # noqa: F401
    except ImportError as e:
        die(f"{e.name} is not installed (needs torch, numpy, h5py, diffusers, transformers, pillow, av)")
    except Exception as e:  # noqa: BLE001 - e.g. a diffusers newer than the installed torch supports
        die(f"cannot import the libraries ({type(e).__name__}: {e}); current diffusers/transformers need torch >= 2")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
