#!/usr/bin/env python3
"""decode_latents.py — decode Wan2.1 latents written by `osp sample` into MP4 videos.

usage:
  decode_latents.py LATENTS.h5 --vae DIR_OR_REPO [--out OUT_DIR] [--fps 16]
  decode_latents.py LATENTS.h5 --random-tiny-vae [--out OUT_DIR]      (no weights needed)

LATENTS.h5 holds `latents` [N,16,T,H,W] (float32; float16, or uint16 with attribute
dtype="bfloat16", are accepted too): NORMALISED Wan-VAE latents, z = (mu - mean) / std
per channel, which is what the DiT trains on and `osp sample` writes (docs/model.md §2).
An optional `prompts` [N] string dataset names the output files.

Each clip is un-normalised (mu = z * std + mean), decoded by diffusers' AutoencoderKLWan
in fp32 (T latent frames -> 1 + 4 (T - 1) video frames, 8x the spatial size), clamped to
[-1, 1] and written as OUT_DIR/<index>_<prompt>.mp4 (imageio + ffmpeg, H.264). Without
imageio/ffmpeg the frames are written as PNGs in OUT_DIR/<index>_<prompt>/ instead, with
a note on how to get MP4s. The per-channel mean/std come from the VAE's config
(latents_mean / latents_std, as in diffusers' Wan pipeline) when it has them, else from
the Wan2.1 table.

--vae accepts
  * a diffusers VAE folder (config.json + diffusion_pytorch_model.safetensors),
  * a diffusers pipeline folder or Hub repo id with a vae/ subfolder, e.g.
    Wan-AI/Wan2.1-T2V-1.3B-Diffusers,
  * an original Wan2.1 VAE file (Wan2.1_VAE.pth or a .safetensors, original or
    diffusers key layout), or a folder holding one (e.g. a Wan2.1-T2V-1.3B download).
--random-tiny-vae builds a randomly initialised AutoencoderKLWan of the same architecture
with base_dim 8 (seeded), to check the pipeline end to end without downloading weights;
its videos are noise-like, not meaningful.

Requires torch, numpy, h5py and diffusers (>= 0.33, which has AutoencoderKLWan);
imageio + imageio-ffmpeg for MP4 (pip install imageio imageio-ffmpeg).
"""
import argparse
import glob
import json
import os
import re
import sys
import time

# Wan2.1 VAE per-channel latent statistics (Wan2.1 wan/modules/vae.py; identical to diffusers' defaults)
WAN_LATENTS_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
WAN_LATENTS_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                   3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]


def die(msg):
    print(f"decode_latents: error: {msg}", file=sys.stderr)
    sys.exit(1)


def slug(text, n=60):
    s = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    return s[:n] or "clip"


def read_latents(path):
    """Returns (latents float32 [N,C,T,H,W], prompt strings or None)."""
    import h5py
    import numpy as np
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        die(f"{path}: cannot open ({e})")
    with f:
        if "latents" not in f:
            die(f"{path}: no dataset `latents`")
        ds = f["latents"]
        if ds.ndim != 5:
            die(f"{path}: `latents` has rank {ds.ndim}, expected 5 [N,C,T,H,W]")
        raw = ds[()]
        kind = ds.attrs.get("dtype", b"")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if raw.dtype == np.uint16 and kind == "bfloat16":
            lat = (raw.astype(np.uint32) << 16).view(np.float32)
        elif raw.dtype == np.uint16 and kind == "float16":
            lat = raw.view(np.float16).astype(np.float32)
        elif raw.dtype.kind == "f":
            lat = raw.astype(np.float32)
        else:
            die(f"{path}: `latents` has dtype {raw.dtype}; expected a float type")
        prompts = None
        if "prompts" in f and f["prompts"].shape == (lat.shape[0],):
            prompts = [p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in f["prompts"][()]]
    if not np.isfinite(lat).all():
        die(f"{path}: `latents` contains NaN/Inf")
    return lat, prompts


def load_state_dict_file(path):
    import torch
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # torch without weights_only
        sd = torch.load(path, map_location="cpu")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return sd


def vae_from_file(path):
    """An original Wan2.1 VAE file (or a diffusers-layout one) into the default (Wan2.1) architecture."""
    from diffusers import AutoencoderKLWan
    sd = load_state_dict_file(path)
    if not any(k.startswith(("decoder.up_blocks.", "encoder.down_blocks.")) for k in sd):
        try:
            from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
        except ImportError:
            # older diffusers: let from_single_file find the converter (may need the Hub for the config)
            return AutoencoderKLWan.from_single_file(path, torch_dtype=__import__("torch").float32)
        sd = convert_wan_vae_to_diffusers(sd)
    vae = AutoencoderKLWan()  # defaults = Wan2.1 VAE (base_dim 96, z_dim 16, dim_mult [1,2,4,4])
    missing, unexpected = vae.load_state_dict(sd, strict=False)
    if missing or unexpected:
        die(f"{path}: not a Wan2.1 VAE ({len(missing)} missing keys e.g. {missing[:2]}, "
            f"{len(unexpected)} unexpected e.g. {unexpected[:2]})")
    return vae


def load_vae(spec):
    """Returns (vae, description)."""
    import torch
    from diffusers import AutoencoderKLWan
    f32 = torch.float32
    if os.path.isfile(spec):
        return vae_from_file(spec), f"single file {spec}"
    if os.path.isdir(spec):
        cfg = os.path.join(spec, "config.json")
        if os.path.isfile(cfg):
            with open(cfg) as fh:
                cls = json.load(fh).get("_class_name", "")
            if cls and cls != "AutoencoderKLWan":
                die(f"{cfg}: _class_name is {cls}, expected AutoencoderKLWan")
            return AutoencoderKLWan.from_pretrained(spec, torch_dtype=f32), f"diffusers folder {spec}"
        if os.path.isfile(os.path.join(spec, "vae", "config.json")):
            return (AutoencoderKLWan.from_pretrained(spec, subfolder="vae", torch_dtype=f32),
                    f"diffusers folder {spec}/vae")
        cands = sorted(p for ext in ("pth", "pt", "safetensors", "ckpt")
                       for p in glob.glob(os.path.join(spec, f"*.{ext}")) if "vae" in os.path.basename(p).lower())
        if len(cands) == 1:
            return vae_from_file(cands[0]), f"single file {cands[0]}"
        die(f"{spec}: no config.json, vae/config.json or single *VAE*.pth/.safetensors file "
            f"(found {len(cands)} candidates)")
    # a Hub repo id: pipelines keep the VAE in vae/
    try:
        return AutoencoderKLWan.from_pretrained(spec, subfolder="vae", torch_dtype=f32), f"{spec} (vae/)"
    except Exception as first:  # noqa: BLE001 - report the most useful of the two failures
        try:
            return AutoencoderKLWan.from_pretrained(spec, torch_dtype=f32), spec
        except Exception:
            die(f"{spec}: not a file, folder or loadable Hub repo ({type(first).__name__}: {first})")


def tiny_vae(seed):
    import torch
    from diffusers import AutoencoderKLWan
    torch.manual_seed(seed)
    # same architecture as Wan2.1's VAE (z_dim 16, dim_mult [1,2,4,4], 2 res blocks, temporal
    # downsampling [F,T,T]), only narrower: base_dim 96 -> 8
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                           temperal_downsample=[False, True, True])
    return vae, f"random tiny AutoencoderKLWan (base_dim 8, seed {seed})"


def channel_stats(vae, z_dim):
    cfg = vae.config
    mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
    if mean is not None and std is not None and len(mean) == z_dim and len(std) == z_dim:
        return list(mean), list(std), "VAE config latents_mean/latents_std"
    if z_dim != len(WAN_LATENTS_MEAN):
        die(f"VAE z_dim {z_dim} has no latents_mean/latents_std in its config and is not the Wan2.1 16")
    return WAN_LATENTS_MEAN, WAN_LATENTS_STD, "Wan2.1 table (docs/model.md)"


def write_mp4(path, frames, fps):
    """frames uint8 [F,H,W,3]. Returns None, or the reason MP4 writing is unavailable."""
    try:
        import imageio.v2 as iio
    except ImportError:
        return "imageio is not installed (pip install imageio imageio-ffmpeg)"
    try:
        # macro_block_size=1: keep the exact size (the VAE output is a multiple of 8, even)
        iio.mimwrite(path, list(frames), fps=fps, codec="libx264", quality=8, macro_block_size=1,
                     ffmpeg_log_level="error")
    except Exception as e:  # noqa: BLE001 - no ffmpeg backend, codec missing, ...
        if os.path.exists(path):
            os.remove(path)
        return f"imageio could not write MP4 ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); " \
               "pip install imageio-ffmpeg"
    return None


def write_pngs(folder, frames):
    os.makedirs(folder, exist_ok=True)
    try:
        from PIL import Image
        for i, fr in enumerate(frames):
            Image.fromarray(fr).save(os.path.join(folder, f"frame_{i:03d}.png"))
        return "png"
    except ImportError:
        import numpy as np
        np.save(os.path.join(folder, "frames.npy"), frames)
        return "npy"


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("latents", help="HDF5 file with `latents` [N,16,T,H,W] (e.g. RUN/samples/latents.h5)")
    ap.add_argument("--vae", help="diffusers VAE/pipeline folder, Hub repo id, or Wan2.1_VAE.pth file/folder")
    ap.add_argument("--random-tiny-vae", action="store_true", help="random base_dim-8 AutoencoderKLWan (no weights)")
    ap.add_argument("--out", help="output folder (default: <latents folder>/videos)")
    ap.add_argument("--fps", type=float, default=16.0, help="frame rate of the MP4s (Wan2.1: 16)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--raw", action="store_true", help="latents are NOT normalised: skip z * std + mean")
    ap.add_argument("--tiling", action="store_true", help="tiled decoding (less memory for large frames)")
    ap.add_argument("--limit", type=int, default=0, help="decode only the first N clips")
    ap.add_argument("--seed", type=int, default=0, help="seed of --random-tiny-vae")
    args = ap.parse_args(argv)
    if bool(args.vae) == bool(args.random_tiny_vae):
        ap.error("give exactly one of --vae DIR_OR_REPO and --random-tiny-vae")
    if args.fps <= 0:
        ap.error("--fps must be > 0")

    try:
        import numpy as np
        import torch
        import h5py  # noqa: F401
    except ImportError as e:
        die(f"{e.name} is not installed (needs torch, numpy, h5py, diffusers)")
    try:
        import diffusers
        from diffusers import AutoencoderKLWan  # noqa: F401
    except ImportError:
        die("diffusers with AutoencoderKLWan is not installed (pip install 'diffusers>=0.33')")

    lat, prompts = read_latents(args.latents)
    if args.limit > 0:
        lat = lat[: args.limit]
    N, C, T, H, W = lat.shape
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    vae, desc = tiny_vae(args.seed) if args.random_tiny_vae else load_vae(args.vae)
    vae = vae.to(device=device, dtype=torch.float32).eval()  # the Wan VAE runs in fp32
    if args.tiling:
        vae.enable_tiling()
    z_dim = int(getattr(vae.config, "z_dim", 16))
    if C != z_dim:
        die(f"{args.latents}: latents have {C} channels, the VAE expects {z_dim}"
            + (" (pixel-space models: osp sample writes GIFs directly)" if C == 3 else ""))
    mean, std, stats_src = channel_stats(vae, z_dim)
    out_dir = args.out or os.path.join(os.path.dirname(os.path.abspath(args.latents)), "videos")
    os.makedirs(out_dir, exist_ok=True)
    F = 1 + 4 * (T - 1)
    print(f"diffusers {diffusers.__version__}, VAE: {desc}, device {device}")
    print(f"{N} clip(s) of latents [{C},{T},{H},{W}] -> video [3,{F},{8 * H},{8 * W}] at {args.fps:g} fps; "
          f"un-normalise with {'nothing (--raw)' if args.raw else stats_src}")

    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, z_dim, 1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, z_dim, 1, 1, 1)
    note = None
    for i in range(N):
        t0 = time.time()
        z = torch.from_numpy(np.ascontiguousarray(lat[i:i + 1])).to(device)
        if not args.raw:
            z = z * std_t + mean_t  # diffusers' WanPipeline: latents / (1 / std) + mean
        with torch.no_grad():
            video = vae.decode(z, return_dict=False)[0]  # [1,3,F,8H,8W]
        video = video.float().clamp(-1.0, 1.0)[0]
        frames = ((video.permute(1, 2, 3, 0).cpu().numpy() + 1.0) * 127.5).round().astype(np.uint8)  # [F,H,W,3]
        name = f"{i:03d}_{slug(prompts[i])}" if prompts else f"{i:03d}"
        mp4 = os.path.join(out_dir, name + ".mp4")
        why = write_mp4(mp4, frames, args.fps)
        if why is None:
            target = mp4
        else:
            note = why
            kind = write_pngs(os.path.join(out_dir, name), frames)
            target = os.path.join(out_dir, name, "frame_*.png" if kind == "png" else "frames.npy")
        print(f"[{i + 1}/{N}] {frames.shape[0]} frames {frames.shape[1]}x{frames.shape[2]}, "
              f"{time.time() - t0:.1f} s -> {target}")
    if note:
        msg = f"note: wrote frames instead of MP4: {note}\n"
        with open(os.path.join(out_dir, "NOTE.txt"), "w") as fh:
            fh.write(msg + f"(to assemble one: ffmpeg -framerate {args.fps:g} -i DIR/frame_%03d.png "
                     "-pix_fmt yuv420p out.mp4)\n")
        print(msg.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
