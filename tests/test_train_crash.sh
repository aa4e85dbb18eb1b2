#!/usr/bin/env bash
# test_train_crash.sh — a crash in the middle of writing a checkpoint loses nothing.
#   1. train 6 steps with ckpt_every 3 -> complete checkpoints 3 and 6;
#   2. --resume to step 9 with OSP_TEST_ABORT_IN_CHECKPOINT=1: the process abort()s right
#      after writing model.safetensors of checkpoint 9 into its temporary directory;
#   3. step_00000009 must not exist (only a step_00000009.tmp.* leftover may), 3 and 6 must
#      still be complete, and --resume must continue from step 6 and finish step 9;
#   4. the resumed steps 7..9 equal (bit for bit) those of a straight 9-step run, and so do
#      the step-9 weights (constant LR schedule, so train.steps does not change the LR);
#   5. every saved model/ema.safetensors passes `osp ckpt inspect`, and `osp sample` on the
#      run writes a GIF.
# Env: OSP (binary), TMPROOT (scratch root); OSP_TEST_DEVICE (default cpu).
set -euo pipefail
: "${OSP:?set OSP to the osp binary}" "${TMPROOT:=/tmp}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS=1
ulimit -c 0 # the abort must not leave a core file
mkdir -p "$TMPROOT"
W=$(mktemp -d "$TMPROOT/train_crash.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$W"; else echo "(kept $W)" >&2; fi' EXIT
cd "$W"
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir D
"$OSP" data synth --out D/s_train.h5 --num 32 --num-val 8 --frames 4 --size 16 --seed 2 >/dev/null

DIMS=(--set model.dim=32 --set model.ffn_dim=64 --set model.num_heads=2 --set model.num_layers=2)
CFG=("${DIMS[@]}" --set device="${OSP_TEST_DEVICE:-cpu}" --set seed=4
     --set data.train=D/s_train.h5 --set data.val=D/s_val.h5 --set train.batch_size=4
     --set train.log_every=1 --set train.ckpt_every=3 --set train.val_every=3 --set train.val_batches=1
     --set train.lr=2e-3 --set train.warmup=2 --set train.schedule=constant --set train.min_lr=0)
CK=R/checkpoints

# train/val losses by step as printed, the LAST entry of a step winning (a crashed
# invocation leaves entries that the resumed one writes again)
losses() {
    sed -n 's/.*"kind": "\(train\|val\)", "step": \([0-9]*\), "\(loss\|val_loss\)": \([^,}]*\).*/\1 \2 \4/p' "$1" |
        awk '{ v[$1 " " $2] = $3; if (!($1 " " $2 in seen)) { seen[$1 " " $2] = 1; k[n++] = $1 " " $2 } }
             END { for (i = 0; i < n; i++) print k[i], v[k[i]] }' | sort -k1,1 -k2n
}

echo "== reference: 9 steps straight"
"$OSP" train "${CFG[@]}" --set train.steps=9 --set run_dir=S >S.log 2>&1 || { tail -3 S.log; fail "reference run failed"; }

echo "== run 1: 6 steps"
"$OSP" train "${CFG[@]}" --set train.steps=6 --set run_dir=R >R1.log 2>&1 || { tail -3 R1.log; fail "run 1 failed"; }
for s in 3 6; do [ -f $CK/step_0000000$s/DONE ] || fail "checkpoint $s missing after run 1"; done
echo "  checkpoints 3 and 6 complete"

echo "== run 2: --resume to 9, abort while writing checkpoint 9"
set +e
OSP_TEST_ABORT_IN_CHECKPOINT=1 "$OSP" train "${CFG[@]}" --set train.steps=9 --set run_dir=R --resume >R2.log 2>&1
rc=$?
set -e
[ $rc -ne 0 ] || fail "run 2 exited 0 although it was told to abort in ckpt_save"
[ $rc -ge 128 ] || { tail -3 R2.log; fail "run 2 exited $rc: an error, not the injected abort (signal)"; }
grep -q '"step": 9' R/metrics.jsonl || fail "run 2 did not reach step 9 before the abort"
echo "  died with exit status $rc (signal $((rc - 128))) after step 9"
[ ! -e $CK/step_00000009 ] || fail "step_00000009 exists after a crash during its write"
leftover=$(cd $CK && ls -d step_00000009.tmp.* 2>/dev/null || true)
others=$(cd $CK && ls | grep -v -x -e step_00000003 -e step_00000006 -e 'step_00000009\.tmp\.[0-9]*' || true)
[ -z "$others" ] || fail "unexpected entries in checkpoints/: $others"
for s in 3 6; do [ -f $CK/step_0000000$s/DONE ] || fail "checkpoint $s damaged by the crash"; done
echo "  no step_00000009; checkpoints 3, 6 intact; leftover: ${leftover:-none}"

echo "== run 3: --resume to 9"
"$OSP" train "${CFG[@]}" --set train.steps=9 --set run_dir=R --resume >R3.log 2>&1 || { tail -3 R3.log; fail "run 3 failed"; }
grep -q "continuing from $CK/step_00000006 (step 6)" R3.log || { grep -i resume R3.log; fail "run 3 did not resume from step 6"; }
[ -f $CK/step_00000009/DONE ] || fail "checkpoint 9 missing after run 3"
echo "  resumed from step 6, checkpoint 9 complete"
losses S/metrics.jsonl >S.loss
losses R/metrics.jsonl >R.loss
[ "$(grep -c '^train' S.loss)" -eq 9 ] && [ "$(grep -c '^val' S.loss)" -eq 3 ] || fail "reference run lacks 9 train / 3 val entries"
diff S.loss R.loss >&2 || fail "losses of the crashed+resumed run differ from the straight run"
cmp -s S/checkpoints/step_00000009/model.safetensors $CK/step_00000009/model.safetensors ||
    fail "step-9 weights differ from the straight run"
echo "  train losses 1..9 and val losses 3/6/9 equal the straight run bit for bit (step 9: $(grep '^train 9 ' R.loss | cut -d' ' -f3)); step-9 weights identical"

echo "== checkpoints load"
n=0
for f in $CK/step_*/model.safetensors $CK/step_*/ema.safetensors; do
    case $f in *.tmp.*) continue ;; esac
    "$OSP" ckpt inspect "$f" >inspect.log 2>&1 || { tail -3 inspect.log; fail "osp ckpt inspect $f failed"; }
    grep -q "key check: all" inspect.log || fail "$f: key check did not pass"
    n=$((n + 1))
done
[ $n -ge 4 ] || fail "only $n checkpoint files found"
echo "  $n model/ema files pass osp ckpt inspect"

echo "== sample from the run"
# --out with missing parents: created like mkdir -p
"$OSP" sample --ckpt R --prompt "red circle moving left" --steps 2 --out R/out/nested/samples "${DIMS[@]}" \
    --set device="${OSP_TEST_DEVICE:-cpu}" --set sample.num_frames=4 --set sample.height=16 --set sample.width=16 \
    >sample.log 2>&1 || { tail -3 sample.log; fail "osp sample failed"; }
S=R/out/nested/samples
gif=$S/red_circle_moving_left.gif
[ -s $gif ] || fail "no GIF written"
[ "$(head -c 6 $gif)" = "GIF89a" ] || [ "$(head -c 6 $gif)" = "GIF87a" ] || fail "$gif is not a GIF"
[ "$(ls $S/red_circle_moving_left/frame_*.png | wc -l)" -eq 4 ] || fail "expected 4 PNG frames"
[ -s $S/latents.h5 ] || fail "no latents.h5"
echo "  $gif ($(wc -c <$gif) bytes), 4 PNG frames, latents.h5"
echo "PASS test_train_crash"
