#!/usr/bin/env bash
# test_ckpt_convert.sh — `osp ckpt convert` and `osp ckpt inspect` on a Wan2.1-layout checkpoint:
# converting to the diffusers layout, to 3 shards + index and back to the original layout must
# keep `osp forward` bit-identical (F32 is copied exactly); converting to BF16 must stay within
# bf16 rounding (rel. err. < 2e-2); inspect must infer the config and pass the key check.
# Env: OSP (binary), PY (python3 with torch/h5py/numpy), TMPROOT (scratch root).
set -euo pipefail
: "${OSP:?set OSP to the osp binary}" "${PY:=python3}" "${TMPROOT:=/tmp}"
REF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ref"
mkdir -p "$TMPROOT"
W=$(mktemp -d "$TMPROOT/ckpt_convert.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$W"; else echo "test_ckpt_convert: FAILED, files kept in $W"; fi' EXIT
"$PY" "$REF/make_case.py" --out "$W/case" --dim 64 --heads 1 --ffn 128 --layers 2 --text-dim 32 --text-len 8 \
    --freq 32 --batch 1 --frames 2 --height 8 --width 8 >/dev/null
fwd() { "$OSP" forward --ckpt "$1" --heads 1 --inputs "$W/case/inputs.h5" --out "$2" --set device=cpu 2>/dev/null; }
fwd "$W/case/model.safetensors" "$W/o_orig.h5"
"$OSP" ckpt convert "$W/case/model.safetensors" "$W/diff.safetensors" --to diffusers
"$OSP" ckpt inspect "$W/diff.safetensors" | tee "$W/inspect.txt" | tail -4
grep -q "dim 64, ffn_dim 128, num_layers 2" "$W/inspect.txt"
grep -q "key check: all 69 Wan2.1 tensors present" "$W/inspect.txt"
grep -q "attn1.to_q" "$W/inspect.txt" || { echo "diffusers names expected in the converted file"; exit 1; }
fwd "$W/diff.safetensors" "$W/o_diff.h5"
"$OSP" ckpt convert "$W/diff.safetensors" "$W/shards" --to original --shard-gb 0.00002
ls "$W/shards" | grep -q "diffusion_pytorch_model.safetensors.index.json"
[ "$(ls "$W/shards" | grep -c -- '-of-')" -ge 2 ] || { echo "expected several shards"; exit 1; }
fwd "$W/shards" "$W/o_shards.h5"
"$OSP" ckpt convert "$W/case/model.safetensors" "$W/bf16.safetensors" --dtype bf16
fwd "$W/bf16.safetensors" "$W/o_bf16.h5"
"$PY" - "$W" <<'PY'
import sys, h5py, numpy as np
w = sys.argv[1]
o = h5py.File(f"{w}/o_orig.h5")["out"][:]
for name in ("o_diff", "o_shards"):
    x = h5py.File(f"{w}/{name}.h5")["out"][:]
    assert np.array_equal(x, o), f"{name}: forward differs after an F32 conversion"
    print(f"{name}: bit-identical to the original checkpoint's forward")
b = h5py.File(f"{w}/o_bf16.h5")["out"][:]
r = float(np.linalg.norm(b - o) / np.linalg.norm(o))
print(f"bf16 weights: rel err {r:.2e} (tol 2e-2)")
assert 0 < r < 2e-2, r
PY
echo "test_ckpt_convert: ok"
