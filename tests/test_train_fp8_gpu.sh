#!/usr/bin/env bash
# test_train_fp8_gpu.sh — HiF8 training on E4M3 tensor cores (quant.hif8_exec: fp8) against the
# bf16 emulation (quant.hif8_exec: emulate), through the osp binary (ctest label gpu):
# the same 30-step HiF8 run (shapes world, dim 64, 2 heads, 2 layers, batch 4, bf16 activation
# storage) on cuda both ways. Every logged train loss must agree within 5e-2 relative (the two
# differ by the emulation's bf16 rounding of the quantised operands, about 2e-3 per GEMM, and by
# the E4M3 path's bf16 bias), the final validation losses within 2%, and the runs must NOT be
# bit-identical (that would mean the E4M3 path never ran). Both must learn (mean of the last 5
# losses below the first 5). A config that E4M3 cannot hold (forward_target 64) is a one-line error.
# Skips (exit 0) where nvidia-smi lists no GPU, unless OSP_GPU_TEST_FORCE=1.
# Env: OSP (binary), PY (python3), TMPROOT (scratch root).
set -euo pipefail
: "${OSP:?set OSP to the osp binary}" "${TMPROOT:=/tmp}"
PY=${PY:-python3}
if [ "${OSP_GPU_TEST_FORCE:-0}" != 1 ] && ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "skipped: no GPU visible (nvidia-smi)"
    exit 0
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}" OPENBLAS_NUM_THREADS=1
mkdir -p "$TMPROOT"
W=$(mktemp -d "$TMPROOT/train_fp8_gpu.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$W"; else echo "test_train_fp8_gpu: FAILED (rc=$rc), files kept in $W" >&2; fi' EXIT
cd "$W"
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir D
"$OSP" data synth --out D/t.h5 --num 32 --num-val 8 --frames 4 --size 16 --seed 7 >/dev/null
CFG=(--set seed=3 --set device=cuda --set quant.format=hif8
     --set model.dim=64 --set model.ffn_dim=128 --set model.num_heads=2 --set model.num_layers=2
     --set data.train=D/t.h5 --set data.val=D/t_val.h5
     --set train.steps=30 --set train.batch_size=4 --set train.lr=3e-3 --set train.warmup=5
     --set train.log_every=1 --set train.val_every=30 --set train.ckpt_every=0
     --set sample.num_frames=4 --set sample.height=16 --set sample.width=16)
for ex in emulate fp8; do
    "$OSP" train "${CFG[@]}" --set quant.hif8_exec=$ex --set run_dir=R_$ex >R_$ex.log 2>&1 ||
        { tail -n 5 R_$ex.log; fail "HiF8 training with hif8_exec=$ex failed"; }
done

"$PY" - R_emulate/metrics.jsonl R_fp8/metrics.jsonl <<'PYEOF'
import json, sys
TOL, VTOL = 5e-2, 2e-2
def read(path):
    tr, va = {}, None
    for line in open(path):
        r = json.loads(line)
        if r.get("kind") == "train" and r.get("loss") is not None:
            tr[int(r["step"])] = float(r["loss"])
        if r.get("kind") == "val" and r.get("val_loss") is not None:
            va = float(r["val_loss"])
    return tr, va
(e, ve), (f, vf) = read(sys.argv[1]), read(sys.argv[2])
steps = sorted(e)
if len(steps) < 20 or sorted(f) != steps:
    sys.exit("FAIL: logged steps differ or too few: emulate %d, fp8 %d" % (len(e), len(f)))
bad, worst = [], 0.0
print("step  emulate     fp8         rel diff")
for s in steps:
    d = abs(f[s] - e[s]) / max(abs(e[s]), 1e-12)
    worst = max(worst, d)
    if not d < TOL:
        bad.append(s)
    print("%4d  %.6f  %.6f  %.2e" % (s, e[s], f[s], d))
print("worst per-step relative loss difference %.3e (tol %.0e)" % (worst, TOL))
if all(e[s] == f[s] for s in steps):
    bad.append("fp8 losses bit-identical to the emulation: the E4M3 path did not run")
if ve is None or vf is None:
    bad.append("no validation loss logged")
else:
    dv = abs(vf - ve) / ve
    print("validation loss: emulate %.6f, fp8 %.6f, rel diff %.2e (tol %.0e)" % (ve, vf, dv, VTOL))
    if not dv < VTOL:
        bad.append("validation loss")
for name, l in (("emulate", e), ("fp8", f)):
    v = [l[s] for s in steps]
    if not sum(v[-5:]) < sum(v[:5]):
        bad.append("%s loss did not decrease" % name)
if bad:
    sys.exit("FAIL: %s" % bad)
PYEOF

if "$OSP" train "${CFG[@]}" --set quant.hif8_exec=fp8 --set quant.forward_target=64 --set run_dir=R_bad >bad.log 2>&1; then
    fail "forward_target 64 with hif8_exec fp8 was accepted"
fi
grep -q 'quant.forward_target' bad.log || { cat bad.log; fail "the error does not name quant.forward_target"; }
echo "PASS test_train_fp8_gpu"
