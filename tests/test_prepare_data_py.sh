#!/usr/bin/env bash
# test_prepare_data_py.sh — scripts/prepare_data.py and scripts/encode_prompts.py end to end on
# videos this test writes (PyAV): moving squares at several sizes, frame rates and containers
# (H.264 .mp4 640x360, FFV1 .mkv 250x406 and 301x297 — odd sizes —, MJPEG .avi 333x187 in a
# subfolder), one corrupt file, one too short, one without a caption; with randomly initialised
# tiny AutoencoderKLWan and umT5 models (--tiny-random, no downloads). Checks:
#  * buckets (nearest aspect ratio), shapes [N,16,3,H/8,W/8], dtypes (bf16 = uint16 + attribute),
#    text [N,512,32] zero past text_len, text_len = the tokenizer's count, prompts, sources;
#  * normalisation: every stored clip equals (mu - mean)/std of the VAE called directly on the
#    clip as this test decodes, samples and crops it itself (||a-b||/||b|| < 1e-2: bf16
#    storage), and decoding the stored latents un-normalised equals decoding mu (< 2e-2);
#  * the corrupt, short and uncaptioned files are skipped with their reasons and counted;
#  * a run killed (SIGKILL) midway and restarted redoes nothing finished and gives the same
#    file (prompts/sources/text_len equal, latents/text ||a-b||/||b|| < 1e-3: batch 1 vs 2);
#  * --shard 0/2 + 1/2 merged hold the same clips as one run;
#  * --model DIR with the same models saved in the Diffusers layout (from_pretrained: vae/,
#    text_encoder/, tokenizer/) and VIDEOS as a list file give the same numbers;
#  * `osp data inspect` accepts the file, `osp train` runs 2 steps on it, encode_prompts.py
#    writes a file `osp data inspect` reports and `osp sample --prompts` samples from, and
#    decode_latents.py turns the samples into MP4s (the README walk-through, on tiny models).
# Needs a Python with torch, diffusers (AutoencoderKLWan), transformers, h5py, numpy, PyAV,
# Pillow and imageio + imageio-ffmpeg: OSP_PY_DATA (default PY). Without them the test exits
# 77, which ctest reports as SKIPPED (not passed); README "Tests" says where it runs.
# Env: OSP, SRC, TMPROOT, PY / OSP_PY_DATA.
set -euo pipefail
: "${OSP:?set OSP to the osp binary}" "${TMPROOT:=/tmp}"
SRC="${SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
PYD="${OSP_PY_DATA:-${PY:-python3}}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" OPENBLAS_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
if ! missing=$("$PYD" - <<'EOF' 2>/dev/null
import importlib
miss = []
for m in ("torch", "numpy", "h5py", "diffusers", "transformers", "av", "PIL", "imageio", "imageio_ffmpeg"):
    try:
        importlib.import_module(m)
    except Exception:
        miss.append(m)
if not miss:
    try:
        from diffusers import AutoencoderKLWan  # noqa: F401
        from transformers import UMT5EncoderModel, ByT5Tokenizer  # noqa: F401
    except Exception as e:
        miss.append(f"diffusers/transformers too old ({type(e).__name__})")
print(" ".join(miss))
raise SystemExit(1 if miss else 0)
EOF
); then
    echo "SKIP test_prepare_data_py: $PYD lacks: ${missing:-python itself} (set OSP_PY_DATA to a Python with torch, diffusers, transformers, av)"
    exit 77
fi
mkdir -p "$TMPROOT"
W=$(mktemp -d "$TMPROOT/prepare_data.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$W"; else echo "(kept $W)" >&2; fi' EXIT
cd "$W"
fail() { echo "FAIL: $*" >&2; exit 1; }
PREP=("$PYD" "$SRC/scripts/prepare_data.py")
OPTS=(--tiny-random 3 --buckets 32x64,64x32,48x48 --frames 9 --fps 8 --device cpu)

# ---------------------------------------------------------------- videos and captions
"$PYD" - <<'EOF'
import os, av, numpy as np
rng = np.random.default_rng(1207)
def write(path, w, h, fps, n, codec, pix):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    c = av.open(path, "w")
    s = c.add_stream(codec, rate=fps)
    s.width, s.height, s.pix_fmt = w, h, pix
    col = rng.integers(60, 255, 3)
    side = max(4, min(w, h) // 4)
    for i in range(n):
        a = np.full((h, w, 3), 20, np.uint8)
        x = int((w - side) * i / max(n - 1, 1)); y = (h - side) // 2
        a[y:y + side, x:x + side] = col
        a[:, :, 2] = np.clip(a[:, :, 2].astype(int) + rng.integers(0, 30, (h, w)), 0, 255)
        for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
write("videos/wide.mp4", 640, 360, 24, 30, "libx264", "yuv420p")     # 16:9 -> 32x64
write("videos/tall.mkv", 250, 406, 30, 40, "ffv1", "yuv444p")        # odd, portrait -> 64x32
write("videos/square.mkv", 301, 297, 12, 14, "ffv1", "yuv444p")      # odd, ~1:1 -> 48x48
write("videos/sub/wide2.avi", 333, 187, 25, 32, "mjpeg", "yuvj444p") # odd, 16:9 -> 32x64
write("videos/short.mp4", 64, 32, 24, 5, "libx264", "yuv420p")       # 0.2 s: too short for 9 frames at 8 fps
write("videos/nocap.mp4", 64, 32, 24, 30, "libx264", "yuv420p")      # no caption
with open("videos/corrupt.mp4", "wb") as f:                          # a header and garbage
    f.write(b"\x00\x00\x00\x18ftypmp42" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
with open("captions.csv", "w") as f:
    f.write("path,caption\n"
            "wide.mp4,\"a red square slides right, quickly\"\n"
            "tall.mkv,a tall   clip\n"
            "square.mkv,  a square clip with a long caption that goes on and on  \n"
            "sub/wide2.avi,another wide clip\n"
            "short.mp4,too short to use\n"
            "corrupt.mp4,broken file\n")
EOF

# ---------------------------------------------------------------- one run
"${PREP[@]}" videos captions.csv --out full.h5 "${OPTS[@]}" --batch 2 2>full.log ||
    { cat full.log; fail "prepare_data.py failed"; }
cat full.log
grep -q 'skip .*/corrupt.mp4: unreadable' full.log || fail "corrupt.mp4 not skipped as unreadable"
grep -q 'skip .*/short.mp4: too short' full.log || fail "short.mp4 not skipped as too short"
grep -q 'skip .*/nocap.mp4: no caption' full.log || fail "nocap.mp4 not skipped for its missing caption"
grep -q '^skipped 3: 1 no caption in captions.csv, 1 too short, 1 unreadable' full.log || fail "skip summary"
[ "$(wc -l <full.h5.work/skipped.tsv)" -eq 3 ] || fail "skipped.tsv does not list 3 files"

"$PYD" - "$SRC" <<'EOF' || fail "content checks"
import sys, json, h5py, numpy as np, torch, av
from PIL import Image
sys.path.insert(0, sys.argv[1] + "/scripts")
from decode_latents import tiny_vae, WAN_LATENTS_MEAN, WAN_LATENTS_STD
from transformers import ByT5Tokenizer
def f32(d):
    a = d[()]
    return (a.astype(np.uint32) << 16).view(np.float32) if d.attrs.get("dtype") == "bfloat16" else a.astype(np.float32)
def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
want = {"bucket_32x64": ["sub/wide2.avi", "wide.mp4"], "bucket_64x32": ["tall.mkv"], "bucket_48x48": ["square.mkv"]}
vae, _ = tiny_vae(3)
vae = vae.float().eval()
mean = torch.tensor(WAN_LATENTS_MEAN).view(1, 16, 1, 1, 1); std = torch.tensor(WAN_LATENTS_STD).view(1, 16, 1, 1, 1)
tok = ByT5Tokenizer()
worst = worst_dec = 0.0
with h5py.File("full.h5", "r") as f:
    assert sorted(k for k in f) == sorted(want), list(f)
    for b, srcs in want.items():
        g = f[b]; h, w = map(int, b.split("_")[1].split("x")); n = len(srcs)
        assert sorted(s.decode().split("videos/")[1] for s in g["sources"][()]) == sorted(srcs), (b, g["sources"][()])
        assert g["latents"].shape == (n, 16, 3, h // 8, w // 8), g["latents"].shape
        assert g["latents"].dtype == np.uint16 and g["latents"].attrs["dtype"] == "bfloat16"
        assert g["text"].shape == (n, 512, 32) and g["text"].dtype == np.uint16
        lat, txt, tl = f32(g["latents"]), f32(g["text"]), g["text_len"][()]
        for i in range(n):
            src, prompt = g["sources"][i].decode(), g["prompts"][i].decode()
            assert prompt == " ".join(prompt.split()), prompt  # whitespace cleaned
            assert tl[i] == len(tok(prompt).input_ids), (tl[i], prompt)
            assert not txt[i, tl[i]:].any() and np.abs(txt[i, :tl[i]]).sum(1).min() > 0
            # the clip as this test reads it: nearest frame at t = j/8 s, bicubic cover + centre crop
            c = av.open(src); st = c.streams.video[0]
            fr = [(float(x.pts * st.time_base), x.to_image()) for x in c.decode(st)]; c.close()
            clip = []
            for j in range(9):
                t = j / 8
                img = min(fr, key=lambda p: (abs(p[0] - t), p[0]))[1]
                s = max(h / img.height, w / img.width)
                nw, nh = max(w, round(img.width * s)), max(h, round(img.height * s))
                img = img.convert("RGB").resize((nw, nh), Image.BICUBIC)
                x0, y0 = (nw - w) // 2, (nh - h) // 2
                clip.append(np.asarray(img.crop((x0, y0, x0 + w, y0 + h))))
            x = torch.from_numpy(np.stack(clip)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
            with torch.no_grad():
                mu = vae.encode(x).latent_dist.mean
                z = ((mu - mean) / std)[0].numpy()
                e = rel(lat[i], z)
                worst = max(worst, e)
                assert e < 1e-2, f"{src}: stored latents vs (mu-mean)/std of the VAE: {e:.2e}"
                d1 = vae.decode(torch.from_numpy(lat[i])[None] * std + mean).sample
                d0 = vae.decode(mu).sample
                ed = rel(d1.numpy(), d0.numpy()); worst_dec = max(worst_dec, ed)
                assert d1.shape == (1, 3, 9, h, w) and ed < 2e-2, (d1.shape, ed)
    assert json.loads(f.attrs["buckets"]) == ["32x64", "64x32", "48x48"] and f.attrs["fps"] == 8
print(f"normalisation: stored vs direct VAE ||a-b||/||b|| max {worst:.2e} (< 1e-2); decoded {worst_dec:.2e} (< 2e-2)")
EOF

# ---------------------------------------------------------------- killed and restarted
"${PREP[@]}" videos captions.csv --out kill.h5 "${OPTS[@]}" --batch 1 2>kill1.log &
pid=$!
for _ in $(seq 1 600); do
    n=$(ls kill.h5.work/clips 2>/dev/null | grep -c '\.npz$' || true)
    [ "$n" -ge 2 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
kill -9 $pid 2>/dev/null || fail "the run finished before it could be killed"
wait $pid 2>/dev/null || true
[ ! -e kill.h5 ] || fail "a killed run left kill.h5"
ndone=$(ls kill.h5.work/clips | grep -c '\.npz$')
stat -c '%n %i.%.9Y' kill.h5.work/clips/*.npz >before.txt
"${PREP[@]}" videos captions.csv --out kill.h5 "${OPTS[@]}" --batch 1 2>kill2.log || { cat kill2.log; fail "restart failed"; }
grep -q "resuming: [0-9]* clip(s) already done in kill.h5.work ($ndone encoded" kill2.log || fail "the restart did not resume"
while read -r f t; do # a finished clip is not redone: the same file (inode, mtime), untouched
    [ "$(stat -c '%i.%.9Y' "$f")" = "$t" ] || fail "$f was rewritten by the restart"
done <before.txt
"$PYD" - <<'EOF' || fail "restarted file differs"
import h5py, numpy as np
with h5py.File("full.h5") as a, h5py.File("kill.h5") as b:
    assert sorted(a) == sorted(b)
    for g in a:
        for k in ("prompts", "sources", "text_len"):
            assert (a[g][k][()] == b[g][k][()]).all(), (g, k)
        for k in ("latents", "text"):
            x = (a[g][k][()].astype(np.uint32) << 16).view(np.float32)
            y = (b[g][k][()].astype(np.uint32) << 16).view(np.float32)
            e = np.linalg.norm(x - y) / np.linalg.norm(x)
            assert e < 1e-3, (g, k, e)
print("restart: same buckets, prompts, sources, text_len; latents/text within 1e-3")
EOF
echo "killed after $ndone finished clip(s); the restart: $(grep -o 'resuming: .*' kill2.log)"

# ---------------------------------------------------------------- shards and merge
"${PREP[@]}" videos captions.csv --out s0.h5 "${OPTS[@]}" --shard 0/2 2>s0.log || { cat s0.log; fail "shard 0"; }
"${PREP[@]}" videos captions.csv --out s1.h5 "${OPTS[@]}" --shard 1/2 2>s1.log || { cat s1.log; fail "shard 1"; }
"${PREP[@]}" merge s0.h5 s1.h5 --out merged.h5 2>merge.log || { cat merge.log; fail "merge"; }
"$PYD" - <<'EOF' || fail "merged shards differ from one run"
import h5py, numpy as np
with h5py.File("full.h5") as a, h5py.File("merged.h5") as b:
    assert sorted(a) == sorted(b)
    for g in a:
        sa, sb = list(a[g]["sources"][()]), list(b[g]["sources"][()])
        assert sorted(sa) == sorted(sb), (sa, sb)
        for s in sa:
            i, j = sa.index(s), sb.index(s)
            assert (a[g]["text_len"][i] == b[g]["text_len"][j]) and a[g]["prompts"][i] == b[g]["prompts"][j]
            x = (a[g]["latents"][i].astype(np.uint32) << 16).view(np.float32)
            y = (b[g]["latents"][j].astype(np.uint32) << 16).view(np.float32)
            assert np.linalg.norm(x - y) / np.linalg.norm(x) < 1e-3
print("shards 0/2 + 1/2 merged: the same clips as one run")
EOF

# ---------------------------------------------------------------- --model DIR (Diffusers layout)
# the same tiny models saved as a Wan2.1 Diffusers folder (vae/, text_encoder/, tokenizer/) load
# through from_pretrained and give the same numbers; VIDEOS as a list file this time
"$PYD" - "$SRC" <<'EOF'
import sys, torch
sys.path.insert(0, sys.argv[1] + "/scripts")
from decode_latents import tiny_vae
from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel
tiny_vae(3)[0].save_pretrained("wan/vae")
torch.manual_seed(4)  # prepare_data.py --tiny-random 3 seeds the encoder with 3 + 1
UMT5EncoderModel(UMT5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                            relative_attention_num_buckets=32, dropout_rate=0.0)).save_pretrained("wan/text_encoder")
ByT5Tokenizer().save_pretrained("wan/tokenizer")
EOF
printf 'videos/wide.mp4\nvideos/tall.mkv\n' >list.txt
"${PREP[@]}" list.txt captions.csv --out dir.h5 --model wan --buckets 32x64,64x32,48x48 --frames 9 --fps 8 \
    --device cpu 2>dir.log || { cat dir.log; fail "prepare_data.py --model DIR"; }
"$PYD" - <<'EOF' || fail "--model DIR differs from --tiny-random"
import h5py, numpy as np
with h5py.File("full.h5") as a, h5py.File("dir.h5") as b:
    assert sorted(b) == ["bucket_32x64", "bucket_64x32"], list(b)
    for g in b:
        sa = [s.decode() for s in a[g]["sources"][()]]
        for j, s in enumerate(b[g]["sources"][()]):
            i = sa.index(s.decode())
            for k in ("latents", "text"):
                x = (a[g][k][i].astype(np.uint32) << 16).view(np.float32)
                y = (b[g][k][j].astype(np.uint32) << 16).view(np.float32)
                assert np.linalg.norm(x - y) / np.linalg.norm(x) < 1e-3, (g, k)
print("--model DIR (vae/, text_encoder/, tokenizer/ via from_pretrained) and a list file: same clips, same numbers")
EOF

# ---------------------------------------------------------------- osp reads it
"$OSP" data inspect full.h5 >inspect.out || { cat inspect.out; fail "osp data inspect rejected the file"; }
grep -q '^full.h5: 4 sample(s) in 3 bucket(s), text \[L=512, Dt=32\]' inspect.out || fail "inspect header: $(head -1 inspect.out)"
grep -q 'latents   \[2, 16, 3, 4, 8\] bfloat16' inspect.out || fail "inspect: bucket_32x64 latents"
MODEL=(--set device=cpu --set model.in_channels=16 --set model.out_channels=16 --set model.text_dim=32
       --set model.text_len=512 --set 'model.patch=[1,2,2]' --set model.dim=32 --set model.ffn_dim=64
       --set model.num_heads=2 --set model.num_layers=2)
"$OSP" train "${MODEL[@]}" --set data.train=full.h5 --set data.val= --set train.batch_size=1 --set train.steps=2 \
    --set train.log_every=1 --set train.val_every=0 --set train.ckpt_every=0 --set run_dir=R >train.log 2>&1 ||
    { tail -5 train.log; fail "osp train on the prepared file"; }
grep -q '"step": 2' R/metrics.jsonl || fail "osp train did not log step 2"
printf 'a red square moving right\n\na blue   circle\n' >prompts.txt
"$PYD" "$SRC/scripts/encode_prompts.py" prompts.txt --tiny-random 3 --device cpu --negative "blurry, static" \
    --out prompts.h5 2>enc.log || { cat enc.log; fail "encode_prompts.py"; }
"$OSP" data inspect prompts.h5 >pinspect.out || { cat pinspect.out; fail "osp data inspect on prompts.h5"; }
grep -q 'text      \[2, 512, 32\]' pinspect.out && grep -q 'negative  \[512, 32\]' pinspect.out &&
    grep -q '"a blue circle"' pinspect.out || fail "prompt file report: $(cat pinspect.out)"
"$OSP" sample "${MODEL[@]}" --ckpt R --prompts prompts.h5 --steps 2 --set sample.num_frames=3 --set sample.height=4 \
    --set sample.width=8 --out S >sample.log 2>&1 || { tail -5 sample.log; fail "osp sample --prompts prompts.h5"; }
[ -f S/latents.h5 ] || fail "osp sample wrote no latents"
# the walk-through's last step: decode_latents.py with the same tiny VAE (seed 3) -> MP4
"$PYD" "$SRC/scripts/decode_latents.py" S/latents.h5 --random-tiny-vae --seed 3 --device cpu --fps 8 --out V \
    >decode.log 2>&1 || { cat decode.log; fail "decode_latents.py"; }
"$PYD" -c '
import av, sys
c = av.open("V/000_a_red_square_moving_right.mp4"); s = c.streams.video[0]
n = sum(1 for _ in c.decode(s))
assert (n, s.codec_context.height, s.codec_context.width) == (9, 32, 64), (n, s.codec_context.height, s.codec_context.width)
' || fail "decoded MP4: $(cat decode.log)"
echo "osp data inspect, osp train (2 steps), osp sample --prompts and decode_latents.py (MP4, 9 frames 32x64) ran on the files"
echo "PASS test_prepare_data_py"
