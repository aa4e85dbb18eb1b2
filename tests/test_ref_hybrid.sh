#!/usr/bin/env bash
# test_ref_hybrid.sh -- checks `osp forward` in OSP-Next hybrid mode (dual_end schedule,
# Skiparse-2D token/group blocks) against the float64 reference, which expresses each sparse
# block as dense attention with a same-subsequence block mask (independent of osp's
# pad/rearrange/switch implementation). Output and all parameter gradients of sum(out * R).
# 8 layers, num_full_blocks 4: blocks 0,1,6,7 full, 2 token, 3 group, 4 token, 5 group
# (K <= num_layers/2 per OSP-Next, docs/skiparse.md §9, and a group->token switch is exercised); one case has
# whole-clip temporal patches and osp's sin-cos position table (the demo's model).
# Tolerance: relative error ||a-b||/||b|| <= 1e-4 per dataset.
# Env: OSP (osp binary), PY (python with torch/h5py/numpy), TMPROOT (scratch root).
set -euo pipefail

: "${OSP:?set OSP to the osp binary}"
PY=${PY:-/usr/bin/python3}
TMPROOT=${TMPROOT:-/tmp}
REF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ref"
TOL=1e-4
mkdir -p "$TMPROOT"
WORK=$(mktemp -d "$TMPROOT/ref_hybrid.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$WORK"; else echo "test_ref_hybrid: FAILED (rc=$rc), files kept in $WORK"; fi' EXIT

# 0. reference self-checks: docs/skiparse.md §5 worked example, mask == literal pad/rearrange path
#    (forward and gradients, padded grids), K = num_layers == full, P = 1 == full
"$PY" "$REF/wan_ref.py" --selftest hybrid

# run_case NAME P K [--set key=value ...] -- make_case args...
run_case() {
    local name=$1 P=$2 K=$3
    shift 3
    local sets=()
    while [ "$1" != "--" ]; do sets+=("$1"); shift; done
    shift
    local dir="$WORK/$name"
    "$PY" "$REF/make_case.py" --out "$dir" --mode hybrid --sparse-ratio "$P" --full-blocks "$K" \
        --layers 8 "$@"
    echo "== $name: hybrid P=$P K=$K ${sets[*]}"
    "$OSP" forward --ckpt "$dir/model.safetensors" --heads 2 --set model.text_len=16 \
        --set model.attention.mode=hybrid \
        --set model.attention.sparse_ratio="$P" \
        --set model.attention.num_full_blocks="$K" "${sets[@]}" \
        --inputs "$dir/inputs.h5" --out "$dir/out.h5"
    "$PY" "$REF/compare.py" "$dir/out.h5" "$dir/expected.h5" --tol "$TOL"
}

# latent H x W with patch 2x2 -> token grid H/2 x W/2
run_case h1_pad_5x6 2 4 -- --seed 21 --batch 2 --frames 3 --height 10 --width 12   # pads to 8x8
run_case h2_8x8 2 4 -- --seed 22 --batch 2 --frames 2 --height 16 --width 16       # no padding
run_case h3_p3_9x12 3 4 -- --seed 23 --batch 2 --frames 2 --height 18 --width 24   # W pads to 18
# the demo's layout: whole-clip tokens (patch 4x2x2 over 4 frames, one token per place) plus the
# fixed sin-cos position table (model.pos_embed=rope+sincos); 5x6 grid pads to 6x6 in sparse blocks
run_case h4_clip_pos 2 4 --set model.pos_embed=rope+sincos -- --seed 24 --batch 2 --frames 4 \
    --height 10 --width 12 --patch 4 2 2 --pos-sincos
# ... and the table matters: the same checkpoint without it must miss the reference
"$OSP" forward --ckpt "$WORK/h4_clip_pos/model.safetensors" --heads 2 --set model.text_len=16 \
    --set model.attention.mode=hybrid --set model.attention.num_full_blocks=4 \
    --inputs "$WORK/h4_clip_pos/inputs.h5" --out "$WORK/h4_nopos.h5" >/dev/null
if "$PY" "$REF/compare.py" "$WORK/h4_nopos.h5" "$WORK/h4_clip_pos/expected.h5" --tol "$TOL" >"$WORK/sens_pos.txt"; then
    echo "test_ref_hybrid: the output without the position table matches the reference with it"
    exit 1
fi
echo "== sensitivity: without the position table: $(grep '^out ' "$WORK/sens_pos.txt")"

# The case is sensitive to the mode: the full-attention reference for the same weights and
# inputs must differ from the hybrid one by far more than the tolerance.
"$PY" "$REF/make_case.py" --out "$WORK/h1_as_full" --mode full --layers 8 \
    --seed 21 --batch 2 --frames 3 --height 10 --width 12
if "$PY" "$REF/compare.py" "$WORK/h1_as_full/expected.h5" "$WORK/h1_pad_5x6/expected.h5" \
        --tol "$TOL" >"$WORK/sens.txt"; then
    echo "test_ref_hybrid: hybrid and full references agree; the hybrid cases would not detect a wrong mode"
    exit 1
fi
echo "== sensitivity: full vs hybrid reference: $(grep '^out ' "$WORK/sens.txt"); $(grep '^compare: [0-9]' "$WORK/sens.txt")"
echo "test_ref_hybrid: all cases passed (tol $TOL)"
