#!/usr/bin/env bash
# test_ref_forward.sh -- checks `osp forward` (full attention) against the independent float64
# PyTorch reference in tests/ref: output and the gradient of sum(out * R) for every parameter,
# for each checkpoint layout osp must load (original, diffusers, prefixed+bf16, 3 shards) and
# one non-default config; plus a bad-input check (inputs without `text`).
# Tolerance: relative error ||a-b||/||b|| <= 1e-4 per dataset (fp32 vs fp64 reference).
# Env: OSP (osp binary), PY (python with torch/h5py/numpy), TMPROOT (scratch root).
set -euo pipefail

: "${OSP:?set OSP to the osp binary}"
PY=${PY:-/usr/bin/python3}
TMPROOT=${TMPROOT:-/tmp}
REF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ref"
TOL=1e-4
mkdir -p "$TMPROOT"
WORK=$(mktemp -d "$TMPROOT/ref_forward.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$WORK"; else echo "test_ref_forward: FAILED (rc=$rc), files kept in $WORK"; fi' EXIT

# 0. the reference checks itself (finite differences, layouts, bf16 files) before judging osp
"$PY" "$REF/wan_ref.py" --selftest full

# run_case NAME CKPT -- make_case args... : generate, run osp forward, compare.
# CKPT is the file inside the case dir, or "." for the case dir itself (sharded).
run_case() {
    local name=$1 ckpt=$2
    shift 3
    local dir="$WORK/$name"
    local path="$dir/$ckpt"
    [ "$ckpt" = "." ] && path="$dir"
    "$PY" "$REF/make_case.py" --out "$dir" "$@"
    echo "== $name: $OSP forward --ckpt $path --heads 2"
    "$OSP" forward --ckpt "$path" --heads 2 --set model.text_len=16 \
        --inputs "$dir/inputs.h5" --out "$dir/out.h5"
    "$PY" "$REF/compare.py" "$dir/out.h5" "$dir/expected.h5" --tol "$TOL"
}

# (a) original keys, head dim 128 (dim 256, 2 heads), 5x6 token grid (not square), batch 2
run_case a_original model.safetensors -- --layout original --seed 11
# (b) diffusers keys (norm2/norm3 swap, proj_out, scale_shift_table), 4x7 grid
run_case b_diffusers model.safetensors -- --layout diffusers --seed 12 --frames 2 --height 8 --width 14
# (c) "model.diffusion_model." prefix, BF16 weights (reference uses the rounded values)
run_case c_prefixed_bf16 model.safetensors -- --layout prefixed --dtype bf16 --seed 13
# (d) 3 shards + index json, 3 layers (shard boundaries fall inside blocks); --ckpt is the dir
run_case d_sharded . -- --shards 3 --layers 3 --seed 14
# (e) non-default sizes: in 12 / out 8 channels, ffn 384, text_dim 48, freq_dim 128, batch 1
run_case e_config model.safetensors -- --seed 15 --in 12 --out-ch 8 --ffn 384 --text-dim 48 \
    --freq 128 --batch 1 --frames 2 --height 6 --width 10

# bad input: inputs.h5 without `text` must fail cleanly with a one-line message naming it
bad="$WORK/bad"
mkdir -p "$bad"
"$PY" - "$WORK/a_original/inputs.h5" "$bad/inputs.h5" <<'EOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2], "w") as dst:
    for k in ("latents", "timesteps", "R"):
        dst[k] = src[k][()]
EOF
set +e
"$OSP" forward --ckpt "$WORK/a_original/model.safetensors" --heads 2 --set model.text_len=16 \
    --inputs "$bad/inputs.h5" --out "$bad/out.h5" >"$bad/stdout" 2>"$bad/stderr"
rc=$?
set -e
last=$(grep -v '^[[:space:]]*$' "$bad/stderr" | tail -n 1 || true)
echo "== bad input (no text): rc=$rc, stderr: $last"
if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ]; then
    echo "test_ref_forward: expected a clean non-zero exit for inputs without 'text', got rc=$rc"
    exit 1
fi
if ! printf '%s\n' "$last" | grep -qi 'text'; then
    echo "test_ref_forward: error message does not mention 'text'"
    exit 1
fi
echo "test_ref_forward: all cases passed (tol $TOL)"
