#!/usr/bin/env bash
# test_data_inspect.sh — `osp data inspect` on good and bad files.
# Good: a shapes-world file from `osp data synth` (its numbers are known: N, shapes, text_len
# 4..5 words, the prompts) and a two-bucket bf16/f16 file written with h5py by this test with
# random values and random text lengths, whose reported text_len min/mean/max and latent
# mean/std must equal numpy's (to the printed 1-3 decimals); a prompt file as
# scripts/encode_prompts.py writes it. Bad: missing dataset, wrong rank, N mismatch, empty,
# a text_len outside 0..L, a non-finite latent, a non-HDF5 file: exit 1 and exactly one
# stderr line "osp: error: ..." naming the file and dataset — and for the schema errors the
# very line `osp train` prints for the same file (before its hint).
# Env: OSP (binary), PY (python3 with numpy and h5py), TMPROOT (scratch root).
set -euo pipefail
: "${OSP:?set OSP to the osp binary}" "${PY:=python3}" "${TMPROOT:=/tmp}"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$TMPROOT"
W=$(mktemp -d "$TMPROOT/data_inspect.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$W"; else echo "(kept $W)" >&2; fi' EXIT
cd "$W"
nfail=0
fail() { echo "FAIL  $*" >&2; nfail=$((nfail + 1)); }
ok() { echo "ok    $*"; }

# ---------------------------------------------------------------- good: shapes world
"$OSP" data synth --out s.h5 --num 12 --num-val 0 --frames 4 --size 16 --seed 3 >/dev/null
"$OSP" data inspect s.h5 --prompts 2 >s.out || fail "inspect of a synthesized file exited $?"
grep -q '^s.h5: 12 sample(s) in 1 bucket(s), text \[L=8, Dt=32\]' s.out || fail "synth: header line"
grep -q 'latents   \[12, 3, 4, 16, 16\] float32' s.out || fail "synth: latents shape/dtype"
grep -q 'text      \[12, 8, 32\] float32' s.out || fail "synth: text shape/dtype"
grep -q 'text_len  min 4, mean 4.0, max 4 (of L = 8)' s.out || fail "synth: text_len stats"
[ "$(grep -c '^    \[[0-9]\] "[a-z]* [a-z]* moving [a-z]*"$' s.out)" -eq 2 ] || fail "synth: two prompts shown"
grep -q '^schema: ok' s.out || fail "synth: schema ok line"
[ "$nfail" -eq 0 ] && ok "shapes world: $(head -1 s.out)"

# ---------------------------------------------------------------- good: two buckets from h5py
"$PY" - <<'EOF'
import h5py, numpy as np
rng = np.random.default_rng(20261207)
def bf16(a):  # round-to-nearest-even float32 -> bfloat16 bits
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
stats = {}
with h5py.File("multi.h5", "w") as f:
    f.attrs["fps"] = 16.0
    f.attrs["vae"] = "test"
    for name, (n, t, h, w), kind in [("bucket_16x32", (5, 3, 2, 4), "bf16"), ("bucket_32x16", (3, 2, 4, 2), "f16")]:
        g = f.create_group(name)
        lat = (rng.standard_normal((n, 4, t, h, w)) * 1.7 + 0.3).astype(np.float32)
        lens = rng.integers(1, 7, n)
        txt = rng.standard_normal((n, 6, 5)).astype(np.float32)
        for i, k in enumerate(lens):
            txt[i, k:] = 0
        if kind == "bf16":
            d = g.create_dataset("latents", data=bf16(lat)); d.attrs["dtype"] = "bfloat16"
            d = g.create_dataset("text", data=bf16(txt)); d.attrs["dtype"] = "bfloat16"
            lat = (bf16(lat).astype(np.uint32) << 16).view(np.float32)
        else:
            g.create_dataset("latents", data=lat.astype(np.float16))
            g.create_dataset("text", data=txt.astype(np.float16))
            lat = lat.astype(np.float16).astype(np.float32)
        g.create_dataset("text_len", data=lens.astype(np.int32))
        g.create_dataset("prompts", data=[f"{name} clip {i}" for i in range(n)], dtype=h5py.string_dtype())
        g.create_dataset("sources", data=[f"/videos/{name}_{i}.mp4" for i in range(n)], dtype=h5py.string_dtype())
        m, s = lat.astype(np.float64).mean(), lat.astype(np.float64).std()
        stats[name] = (lens.min(), lens.mean(), lens.max(), m, s)
    f.create_group("not_a_bucket").create_dataset("labels", data=np.arange(3))
with open("multi.expect", "w") as fh:
    for k, (lo, me, hi, m, s) in stats.items():
        fh.write(f"{k} {lo} {me:.1f} {hi} {m:.3f} {s:.3f}\n")
EOF
"$OSP" data inspect multi.h5 --rows -1 >multi.out || fail "inspect of the two-bucket file exited $?"
grep -q '^multi.h5: 8 sample(s) in 2 bucket(s), text \[L=6, Dt=5\]' multi.out || fail "multi: header"
grep -q 'latents   \[5, 4, 3, 2, 4\] bfloat16' multi.out || fail "multi: bf16 latents"
grep -q 'text      \[3, 6, 5\] float16' multi.out || fail "multi: f16 text"
grep -q '  fps = 16$' multi.out && grep -q '  vae = test$' multi.out || fail "multi: root attributes"
grep -q '"bucket_32x16 clip 0"  <- /videos/bucket_32x16_0.mp4' multi.out || fail "multi: prompt with source"
grep -q 'not_a_bucket' multi.out && fail "multi: a group without latents/text is reported as a bucket"
while read -r b lo me hi m s; do
    sed -n "/^bucket $b:/,/^  values/p" multi.out >b.out
    grep -q "text_len  min $lo, mean $me, max $hi (of L = 6)" b.out || fail "multi $b: text_len $lo/$me/$hi not reported"
    grep -q "latents mean $m, std $s " b.out || fail "multi $b: latent mean/std $m/$s not reported"
done <multi.expect
grep -q 'warning' multi.out && fail "multi: zero text padding reported as non-zero"
[ "$nfail" -eq 0 ] && ok "two buckets: text_len and latent statistics match numpy ($(tr '\n' ';' <multi.expect))"

# ---------------------------------------------------------------- good: a prompt file
"$PY" - <<'EOF'
import h5py, numpy as np
rng = np.random.default_rng(7)
with h5py.File("prompts.h5", "w") as f:
    t = rng.standard_normal((3, 6, 5)).astype(np.float32); t[:, 4:] = 0
    f["text"] = t; f["text_len"] = np.array([4, 2, 3], np.int32)
    f["negative"] = rng.standard_normal((6, 5)).astype(np.float32)
    f.create_dataset("prompts", data=["a cat", "a dog", "a fox"], dtype=h5py.string_dtype())
EOF
"$OSP" data inspect prompts.h5 >p.out || fail "inspect of a prompt file exited $?"
grep -q 'prompt embeddings' p.out && grep -q 'text      \[3, 6, 5\] float32' p.out &&
    grep -q 'text_len  min 2, mean 3.0, max 4' p.out && grep -q 'negative  \[6, 5\]' p.out &&
    grep -q '"a fox"' p.out && ok "prompt file" || fail "prompt file report: $(cat p.out)"

# ---------------------------------------------------------------- bad files
"$PY" - <<'EOF'
import h5py, numpy as np
r = np.random.default_rng(1)
def good(f, n=3, nt=None):
    f["latents"] = r.standard_normal((n, 4, 2, 2, 2)).astype(np.float32)
    f["text"] = r.standard_normal((n if nt is None else nt, 6, 5)).astype(np.float32)
with h5py.File("missing.h5", "w") as f:
    g = f.create_group("bucket_a"); g["latents"] = r.standard_normal((3, 4, 2, 2, 2)).astype(np.float32)
with h5py.File("rank.h5", "w") as f:
    f["latents"] = r.standard_normal((3, 4, 2, 2)).astype(np.float32); f["text"] = np.ones((3, 6, 5), np.float32)
with h5py.File("nmismatch.h5", "w") as f:
    good(f, 3, 4)
with h5py.File("empty.h5", "w") as f:
    f["latents"] = np.zeros((0, 4, 2, 2, 2), np.float32); f["text"] = np.zeros((0, 6, 5), np.float32)
with h5py.File("dtype.h5", "w") as f:
    f["latents"] = np.ones((3, 4, 2, 2, 2), np.int32); f["text"] = np.ones((3, 6, 5), np.float32)
with h5py.File("textlen.h5", "w") as f:
    good(f); f["text_len"] = np.array([2, 9, 1], np.int32)
with h5py.File("nan.h5", "w") as f:
    good(f); f["latents"][1, 2, 0, 1, 1] = np.nan
with h5py.File("badneg.h5", "w") as f:
    f["text"] = np.ones((2, 6, 5), np.float32); f["negative"] = np.ones((5, 5), np.float32)
EOF
echo "not hdf5" >junk.h5

# expect NAME NEEDLE [--train]: inspect exits 1 with one "osp: error:" line naming NEEDLE; with
# --train, `osp train` on the same file must print the same line (plus its " (hint: ...)")
expect() {
    local f=$1 needle=$2 rc lines line
    set +e
    "$OSP" data inspect "$f" >o.out 2>o.err
    rc=$?
    set -e
    lines=$(awk 'END { print NR }' o.err)
    line=$(head -n 1 o.err)
    if [ $rc -ne 1 ] || [ "$lines" -ne 1 ] || [[ "$line" != "osp: error: $f: "* ]] || ! grep -qF -- "$needle" o.err; then
        fail "$f: exit $rc, $lines stderr line(s): $line (wanted '$needle')"
        return
    fi
    if [ "${3:-}" = --train ]; then
        set +e
        "$OSP" train --set device=cpu --set model.in_channels=4 --set model.out_channels=4 --set model.text_dim=5 \
            --set model.text_len=6 --set data.train="$f" --set train.steps=1 --set run_dir=R >t.out 2>t.err
        set -e
        # training adds a hint after the same text
        local tl
        tl=$(tail -n 1 t.err)
        [[ "$tl" == "$line" || "$tl" == "$line (hint: "* ]] || { fail "$f: osp train says '$tl', inspect says '$line'"; return; }
    fi
    ok "$f: $line"
}
expect missing.h5 'missing dataset `bucket_a/text`' --train
expect rank.h5 'dataset `latents` has rank 4, expected 5' --train
expect nmismatch.h5 'dataset `text` has N=4 but `latents` has N=3' --train
expect empty.h5 'dataset `latents` is empty (N=0)' --train
expect dtype.h5 'unsupported dtype int32' --train
expect textlen.h5 'dataset `text_len` row 1 is 9, outside 0..6'
expect nan.h5 'dataset `latents` row 1 has a non-finite value'
expect junk.h5 'not an HDF5 file' --train
expect badneg.h5 'negative must be [6,5]'
expect absent.h5 'cannot open (No such file or directory)'

# ---------------------------------------------------------------- CLI
"$OSP" data inspect --help >h.out && grep -q '^usage: osp data inspect' h.out || fail "inspect --help"
set +e
"$OSP" data inspect >/dev/null 2>o.err; rc=$?
set -e
[ $rc -eq 1 ] && grep -q '^osp: error: data inspect: give FILE.h5' o.err || fail "inspect without a file: exit $rc"

if [ "$nfail" -ne 0 ]; then
    echo "$nfail check(s) failed" >&2
    exit 1
fi
echo "PASS test_data_inspect"
