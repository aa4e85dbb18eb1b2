#!/usr/bin/env bash
# test_ref_train.sh -- checks `osp train` (CPU) against tests/ref/train_ref.py, an independent
# float64 PyTorch trainer: 10 AdamW steps of a tiny Wan DiT from the same random weights
# (--init) on the same random HDF5 data. The reference rebuilds osp's batches, noise, sigmas
# and text dropout from the documented counter-based generators (flow.h, dataset.h), so no
# hook in osp is needed. Compared: every step's loss, gradient norm and learning rate
# (metrics.jsonl, log_every 1) and every tensor of the final model and EMA weights, both the
# weights themselves and their update w - w0 (the part training changed).
#
# Case full:   full attention, grad_accum 2 (20 batches of 2 from 6 clips: 7 epochs, each
#              reshuffled), logit-normal sigma with shift 3, text dropout 0.3, warm-up 3 then
#              cosine, weight decay 0.1, beta2 0.95, EMA 0.9, clip 2.0 (active in steps 1-5 only).
# Case hybrid: Skiparse hybrid (P=2, K=0: a token and a group block, 5x6 grid padded to 6x6),
#              sin-cos position table, uniform sigma, constant lr, 5 clips (one dropped per epoch),
#              clip 2.5 (active in some steps).
# Tolerances (fp32 osp vs float64 reference), relative: loss 1e-6 per step, grad norm 1e-5,
# final weights ||a-b||/||b|| 1e-5 per tensor, updates (w - w0) 1e-3 per tensor. Measured:
# see notes/train_tests.md (loss ~1e-8, weights ~1e-6, updates ~6e-5).
# Negative controls (train_ref.py --control): the reference with beta1, beta2, adam_eps,
# weight_decay, ema_decay, warmup, grad_clip, text_dropout or the sigma shift changed must fail
# the comparison on a numeric criterion.
# Env: OSP (osp binary), PY (python with torch/h5py/numpy), TMPROOT (scratch root);
# OSP_TEST_DEVICE (default cpu) selects osp's backend, e.g. cuda on the GPU machine.
set -euo pipefail

: "${OSP:?set OSP to the osp binary}"
PY=${PY:-/usr/bin/python3}
TMPROOT=${TMPROOT:-/tmp}
DEVICE=${OSP_TEST_DEVICE:-cpu}
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS=1
REF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ref"
TOLS=(--tol-loss 1e-6 --tol-gnorm 1e-5 --tol-weight 1e-5 --tol-update 1e-3)
mkdir -p "$TMPROOT"
WORK=$(mktemp -d "$TMPROOT/ref_train.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$WORK"; else echo "test_ref_train: FAILED (rc=$rc), files kept in $WORK"; fi' EXIT
fail() { echo "test_ref_train: $*"; exit 1; }

MODEL=(model.dim=64 model.ffn_dim=128 model.num_heads=2 model.num_layers=2 model.in_channels=4
       model.out_channels=4 model.text_dim=32 model.text_len=8 model.freq_dim=64 "model.patch=[1,2,2]"
       model.eps=1e-6)
TRAIN=(train.steps=10 train.batch_size=2 train.lr=1e-3 train.min_lr=1e-4 train.beta1=0.9
       train.beta2=0.95 train.adam_eps=1e-8 train.weight_decay=0.1 train.ema_decay=0.9
       train.logit_mean=0 train.logit_std=1)

# run_case NAME NUM_CLIPS key=value ... : data + weights, osp train, reference check
run_case() {
    local name=$1 num=$2
    shift 2
    local sets=("${MODEL[@]}" "${TRAIN[@]}" "$@") args=() s mode=full
    [[ " $* " == *" model.attention.mode=hybrid "* ]] && mode=hybrid
    for s in "${sets[@]}"; do args+=(--set "$s"); done
    local dir="$WORK/$name"
    "$PY" "$REF/train_ref.py" make --out "$dir" --seed 7 --num "$num" --grid 2 10 12 --text-rows 8 "${args[@]}"
    echo "== $name: $OSP train ($DEVICE) ${*}"
    "$OSP" train "${args[@]}" --set device="$DEVICE" --set data.train="$dir/train.h5" --set data.val= \
        --set train.log_every=1 --set train.ckpt_every=0 --set train.val_every=0 --set run_dir="$dir/run" \
        --init "$dir/init.safetensors" >"$dir/osp.log" 2>&1 || { tail -5 "$dir/osp.log"; fail "$name: osp train failed"; }
    grep -q "69 loaded, 0 missing" "$dir/osp.log" || fail "$name: --init did not load all 69 tensors"
    grep -q "$mode attention" "$dir/osp.log" || fail "$name: osp did not train with $mode attention"
    "$PY" "$REF/train_ref.py" check --init "$dir/init.safetensors" --data "$dir/train.h5" --run "$dir/run" \
        "${TOLS[@]}" "${args[@]}" "${CONTROLS[@]}" >"$dir/check.txt" || { cat "$dir/check.txt"; fail "$name: mismatch"; }
    grep -v '^  ref step' "$dir/check.txt"
    # the case must exercise clipping on some steps and not on others
    grep -q 'clipped by train.grad_clip .*: [1-9][0-9]* of 10 steps' "$dir/check.txt" &&
        ! grep -q ': 10 of 10 steps' "$dir/check.txt" || fail "$name: gradient clipping should be active in some steps only"
    grep -q 'text dropped in [1-9]' "$dir/check.txt" || fail "$name: text dropout should drop some samples"
}

FULL=(seed=3 model.pos_embed=rope model.attention.mode=full model.attention.sparse_ratio=2
      model.attention.num_full_blocks=0 train.grad_accum=2 train.warmup=3 train.schedule=cosine
      train.sigma_sampling=logit_normal train.shift=3 train.text_dropout=0.3 train.grad_clip=2.0)
HYBRID=(seed=11 model.pos_embed=rope+sincos model.attention.mode=hybrid model.attention.sparse_ratio=2
        model.attention.num_full_blocks=0 train.grad_accum=1 train.warmup=2 train.schedule=constant
        train.sigma_sampling=uniform train.shift=1 train.text_dropout=0.2 train.grad_clip=2.5)
# negative controls (full case): the reference with one setting changed must fail the comparison
CONTROLS=(--control train.beta2=0.96 --control train.weight_decay=0.05 --control train.ema_decay=0.91
          --control train.warmup=4 --control train.text_dropout=0 --control train.shift=2.9
          --control train.adam_eps=1e-6)
run_case full 6 "${FULL[@]}"
CONTROLS=(--control train.beta1=0.91 --control train.grad_clip=3)
run_case hybrid 5 "${HYBRID[@]}"

echo "test_ref_train: all cases passed"
