#!/usr/bin/env bash
# test_mpi_dp.sh — data parallelism under mpirun equals one process.
#  1. 10 steps of a tiny config as one plain process (no launcher: no MPI at all) are the
#     reference; under mpirun -np 1, 2, 4 with parallel.shard none / optimizer (ZeRO-1) every
#     train and validation loss matches it within 1e-6 relative and the final weights, EMA and
#     AdamW moments within 1e-5 relative (||a-b||/||b||, fp32 on the CPU: the summation order of
#     the gradient reduction is the only difference; measured ~3e-9 on losses, ~2e-7 on weights).
#  2. A SIGUSR1 on rank 2 of 4 (ZeRO-1) makes all ranks save at the same step and exit 0; the
#     run resumes at -np 2 (shard none) and as one process and continues the reference, and
#     at -np 4 (ZeRO-1) bit for bit as the uninterrupted -np 4 run (losses and files).
#  3. A rank that stops answering: kill -9 of it ends the job non-zero, naming the rank, well
#     within parallel.timeout_s; left alive, the watchdog of rank 0 ends the job after
#     parallel.timeout_s with one line naming the collective, the group and the silent rank.
#     Either way the last complete checkpoint loads and training continues from it.
#  4. Bad meshes and launches are one line `osp: error: ...` and a non-zero exit.
#  5. `osp sample` under mpirun (rank 0 alone) writes the GIF one process writes.
# Env: OSP (binary), PY (python3 with numpy), TMPROOT (scratch root); OSP_TEST_DEVICE (default
# cpu; cuda: the ranks share the machine's GPU(s), gradients through host memory over MPI, plus
# an NCCL case when there are 2+ GPUs; tolerances LOSS_TOL / WEIGHT_TOL, see test_mpi_dp_gpu.sh).
set -euo pipefail
: "${OSP:?set OSP to the osp binary}" "${PY:=python3}" "${TMPROOT:=/tmp}"
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found (install openmpi-bin)"; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# containers without ptrace rights break shared-memory single-copy; plain copies always work
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# ranks outnumber the cores here: waiting ranks yield instead of spinning
export OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPI=(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x OMPI_MCA_mpi_yield_when_idle)
[ -n "${OSP_CUDA_GEMM:-}" ] && MPI+=(-x OSP_CUDA_GEMM)
DEVICE=${OSP_TEST_DEVICE:-cpu}
export LOSS_TOL=${LOSS_TOL:-1e-6} WEIGHT_TOL=${WEIGHT_TOL:-1e-5}
mkdir -p "$TMPROOT"
W=$(mktemp -d "$TMPROOT/mpi_dp.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$W"; else echo "(kept $W)" >&2; fi' EXIT
cd "$W"
fail() { echo "FAIL: $*" >&2; exit 1; }
"$OSP" data synth --out s_train.h5 --num 64 --num-val 24 --frames 4 --size 16 --seed 3 >/dev/null

BASE=(--set model.dim=32 --set model.ffn_dim=64 --set model.num_heads=2 --set model.num_layers=2
      --set data.train=s_train.h5 --set data.val=s_val.h5 --set device=$DEVICE --set seed=11
      --set train.batch_size=4 --set train.steps=10 --set train.log_every=1 --set train.ckpt_every=5
      --set train.val_every=5 --set train.val_batches=2 --set train.lr=3e-3 --set train.warmup=2
      --set train.keep_last=3 --set train.text_dropout=0.25 --set train.deterministic=true)

# compare REF RUN: losses (1e-6) and step-10 weights/EMA/moments (1e-5)
compare() {
    "$PY" - "$1" "$2" <<'EOF'
import json, os, struct, sys, numpy as np
LT, WT = float(os.environ['LOSS_TOL']), float(os.environ['WEIGHT_TOL'])
def st(path):
    b = open(path, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; assert v['dtype'] == 'F32', (path, k)
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32).astype(np.float64)
    return out
def losses(run):
    L = {}
    for line in open(run + '/metrics.jsonl'):
        j = json.loads(line)
        if j['kind'] == 'train': L[('train', j['step'])] = j['loss']
        if j['kind'] == 'val': L[('val', j['step'])] = j['val_loss']
    return L
a, b = sys.argv[1], sys.argv[2]
La, Lb = losses(a), losses(b)
if La.keys() != Lb.keys(): sys.exit('%s: logged steps %s differ from %s' % (b, sorted(Lb), sorted(La)))
worst = max(abs(La[k] - Lb[k]) / abs(La[k]) for k in La)
msg = ['%d losses rel %.2e' % (len(La), worst)]
ok = worst <= LT
for f in ['model', 'ema', 'optim']:
    A = st('%s/checkpoints/step_00000010/%s.safetensors' % (a, f)); B = st('%s/checkpoints/step_00000010/%s.safetensors' % (b, f))
    if A.keys() != B.keys(): sys.exit('%s/%s: tensor names differ' % (b, f))
    xa = np.concatenate([A[k] for k in sorted(A)]); xb = np.concatenate([B[k] for k in sorted(B)])
    e = np.linalg.norm(xa - xb) / np.linalg.norm(xa)
    msg.append('%s rel %.2e' % (f, e)); ok = ok and e <= WT
print(('ok   ' if ok else 'FAIL ') + b + ': ' + ', '.join(msg))
sys.exit(0 if ok else 1)
EOF
}

echo "== reference: one plain process"
"$OSP" train "${BASE[@]}" --set run_dir=ref >ref.log 2>&1 || { tail -5 ref.log; fail "reference run failed"; }
grep -q "^ranks:" ref.log && fail "a plain run must not report ranks"

echo "== mpirun -np 1, 2, 4 x shard none, optimizer"
for np in 1 2 4; do
    for shard in none optimizer; do
        r="np${np}_$shard"
        "${MPI[@]}" -np $np "$OSP" train "${BASE[@]}" --set run_dir=$r --set parallel.shard=$shard >$r.log 2>&1 ||
            { tail -5 $r.log; fail "$r failed"; }
        compare ref $r || fail "$r differs from the single process"
    done
done
if [ "$DEVICE" = cuda ] && [ "$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')" -ge 2 ]; then
    echo "== NCCL: -np 2, one GPU per rank"
    for shard in none optimizer; do
        "${MPI[@]}" -np 2 "$OSP" train "${BASE[@]}" --set run_dir=nccl_$shard --set parallel.shard=$shard \
            --set parallel.transport=nccl >nccl_$shard.log 2>&1 || { tail -5 nccl_$shard.log; fail "nccl_$shard failed"; }
        grep -q "transport nccl" nccl_$shard.log || fail "nccl_$shard did not use NCCL"
        compare ref nccl_$shard || fail "nccl_$shard differs from the single process"
    done
elif [ "$DEVICE" = cuda ]; then
    echo "(one GPU: the NCCL case needs two; ranks sharing the GPU used the MPI transport above)"
fi
echo "== gradient accumulation (2 micro-batches) at -np 2, ZeRO-1"
"$OSP" train "${BASE[@]}" --set run_dir=ref_ga --set train.grad_accum=2 >ref_ga.log 2>&1 || { tail -5 ref_ga.log; fail "reference (grad_accum 2) failed"; }
"${MPI[@]}" -np 2 "$OSP" train "${BASE[@]}" --set run_dir=np2_ga --set train.grad_accum=2 --set parallel.shard=optimizer \
    >np2_ga.log 2>&1 || { tail -5 np2_ga.log; fail "np2_ga failed"; }
compare ref_ga np2_ga || fail "grad_accum 2 at -np 2 differs from the single process"
[ "$(grep -c '^step .*loss' np4_none.log)" -ge 10 ] || fail "rank 0 did not print the step lines"
grep -q "world 4 = dp 4" np4_none.log || fail "rank 0 did not describe the mesh"

echo "== SIGUSR1 on rank 2 of 4 (ZeRO-1): all save at step 5; resume at -np 2 and as one process"
set +e
OSP_TEST_SIGNAL_AT_STEP=4 OSP_TEST_SIGNAL_RANK=2 "${MPI[@]}" -x OSP_TEST_SIGNAL_AT_STEP -x OSP_TEST_SIGNAL_RANK -np 4 \
    "$OSP" train "${BASE[@]}" --set run_dir=sig --set parallel.shard=optimizer >sig.log 2>&1
rc=$?
set -e
[ $rc -eq 0 ] || { tail -5 sig.log; fail "signalled job exited $rc, expected 0"; }
[ -f sig/checkpoints/step_00000005/DONE ] || fail "no complete checkpoint at step 5 after the signal"
[ ! -e sig/checkpoints/step_00000010 ] || fail "the signalled job went on to step 10"
cp -r sig sig2 && cp -r sig sig1 && cp -r sig sig4
"${MPI[@]}" -np 4 "$OSP" train "${BASE[@]}" --set run_dir=sig4 --set parallel.shard=optimizer --resume >sig4.log 2>&1 ||
    { tail -5 sig4.log; fail "resume at -np 4 failed"; }
for f in model ema optim; do
    cmp -s sig4/checkpoints/step_00000010/$f.safetensors np4_optimizer/checkpoints/step_00000010/$f.safetensors ||
        fail "resume at the same world size (4, ZeRO-1): $f.safetensors is not bit-identical to the uninterrupted run"
done
cmp -s <(grep -o '"loss": [^,]*' sig4/metrics.jsonl) <(grep -o '"loss": [^,]*' np4_optimizer/metrics.jsonl) ||
    fail "resume at the same world size: losses are not bit-identical"
echo "ok   sig4: resumed at the same world size, bit-identical losses and files"
"${MPI[@]}" -np 2 "$OSP" train "${BASE[@]}" --set run_dir=sig2 --resume >sig2.log 2>&1 || { tail -5 sig2.log; fail "resume at -np 2 failed"; }
grep -q "continuing from .*step_00000005" sig2.log || fail "-np 2 did not resume from step 5"
compare ref sig2 || fail "saved at 4 ranks (ZeRO-1), resumed at 2: differs from the uninterrupted run"
"$OSP" train "${BASE[@]}" --set run_dir=sig1 --resume >sig1.log 2>&1 || { tail -5 sig1.log; fail "resume as one process failed"; }
compare ref sig1 || fail "saved at 4 ranks (ZeRO-1), resumed as one process: differs from the uninterrupted run"

echo "== a rank killed with kill -9 mid-run"
OSP_TEST_HANG_AT_STEP=7 OSP_TEST_HANG_RANK=1 "${MPI[@]}" -x OSP_TEST_HANG_AT_STEP -x OSP_TEST_HANG_RANK -np 2 \
    "$OSP" train "${BASE[@]}" --set run_dir=kill --set parallel.timeout_s=60 >kill.log 2>&1 &
job=$!
for _ in $(seq 600); do grep -q "stops answering" kill.log && break; sleep 0.1; done
pid=$(sed -n 's/.*rank 1 (pid \([0-9]*\)) stops answering.*/\1/p' kill.log)
[ -n "$pid" ] || { kill $job; fail "rank 1 never reached step 7"; }
t0=$(date +%s)
kill -9 "$pid"
set +e
wait $job
rc=$?
set -e
dt=$(( $(date +%s) - t0 ))
[ $rc -ne 0 ] || fail "the job of a killed rank exited 0"
[ $dt -lt 60 ] || fail "the job of a killed rank took ${dt}s to end (timeout 60 s)"
grep -q "rank 1" <(grep -v "stops answering" kill.log) || { tail -8 kill.log; fail "the killed rank is not named"; }
echo "ok   killed rank: job ended with exit $rc after ${dt}s, rank 1 named"

echo "== a silent rank: the watchdog ends the job after parallel.timeout_s"
set +e
t0=$(date +%s)
OSP_TEST_HANG_AT_STEP=7 OSP_TEST_HANG_RANK=1 "${MPI[@]}" -x OSP_TEST_HANG_AT_STEP -x OSP_TEST_HANG_RANK -np 2 \
    "$OSP" train "${BASE[@]}" --set run_dir=hang --set parallel.timeout_s=3 >hang.log 2>&1
rc=$?
set -e
dt=$(( $(date +%s) - t0 ))
[ $rc -ne 0 ] || fail "a hung job exited 0"
[ $dt -lt 60 ] || fail "the hung job took ${dt}s to end (timeout 3 s)"
grep -q "osp: error: rank 0: collective all_reduce on group world timed out after 3s (rank(s) 1 unresponsive)" hang.log ||
    { tail -8 hang.log; fail "no watchdog line naming the collective, group and rank"; }
echo "ok   watchdog: exit $rc after ${dt}s: $(grep 'timed out' hang.log)"
for r in kill hang; do
    [ -f $r/checkpoints/step_00000005/DONE ] || fail "$r: the step-5 checkpoint is not complete"
    "$OSP" train "${BASE[@]}" --set run_dir=$r --resume >$r.resume.log 2>&1 || { tail -5 $r.resume.log; fail "$r: resume failed"; }
    grep -q "continuing from .*step_00000005" $r.resume.log || fail "$r: did not resume from step 5"
    compare ref $r || fail "$r: resumed run differs from the uninterrupted one"
done

echo "== bad meshes and launches: one line, non-zero exit"
bad() { # expected-text, then the command
    local want=$1; shift
    set +e
    "$@" >bad.out 2>bad.err
    local rc=$?
    set -e
    [ $rc -ne 0 ] || fail "accepted: $*"
    n=$(grep -c "^osp: error:" bad.err || true)
    [ "$n" -eq 1 ] || { cat bad.err; fail "expected one error line, got $n: $*"; }
    grep -q -- "$want" bad.err || { cat bad.err; fail "error does not say '$want'"; }
    echo "ok   $(grep '^osp: error:' bad.err)"
}
bad "but the job has 1 rank(s)" "$OSP" train "${BASE[@]}" --set run_dir=bad --set parallel.dp=2
bad "but the job has 2 rank(s)" "${MPI[@]}" -np 2 "$OSP" train "${BASE[@]}" --set run_dir=bad --set parallel.dp=4
bad "not divisible by parallel.dp = 3" "${MPI[@]}" -np 3 "$OSP" train "${BASE[@]}" --set run_dir=bad
bad "does not divide model.num_heads" "${MPI[@]}" -np 3 "$OSP" train "${BASE[@]}" --set run_dir=bad --set parallel.sp=3
bad "needs model.attention.mode: hybrid" "${MPI[@]}" -np 2 "$OSP" train "${BASE[@]}" --set run_dir=bad --set parallel.ssp=2
bad "parallel.shard: full" "${MPI[@]}" -np 2 "$OSP" train "${BASE[@]}" --set run_dir=bad --set parallel.shard=full
bad "parallel.shard: expected one of" "$OSP" train "${BASE[@]}" --set run_dir=bad --set parallel.shard=zero
echo "== osp sample under mpirun: rank 0 samples alone, the same GIF as one process"
"$OSP" sample ref/config.yaml --ckpt ref --prompt "red circle moving left" --steps 3 --out samp1 >samp1.log 2>&1 ||
    { tail -3 samp1.log; fail "osp sample failed"; }
"${MPI[@]}" -np 2 "$OSP" sample ref/config.yaml --ckpt ref --prompt "red circle moving left" --steps 3 --out samp2 \
    >samp2.log 2>&1 || { tail -3 samp2.log; fail "osp sample under mpirun failed"; }
cmp -s samp1/red_circle_moving_left.gif samp2/red_circle_moving_left.gif || fail "mpirun osp sample: a different GIF"
echo "test_mpi_dp: all checks passed"
