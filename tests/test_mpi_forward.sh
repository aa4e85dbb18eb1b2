#!/usr/bin/env bash
# test_mpi_forward.sh — `osp forward` across ranks: on a reference case of the test suite
# (tests/ref/make_case.py, batch 4, hybrid attention) `mpirun -np 2` and `-np 4` write an
# OUT.h5 with the same datasets as the single process's, whose outputs and input gradients
# (per dataset) and parameter gradients (all as one vector) equal it within 1e-6 relative
# (||a-b||/||a||; the batch split changes only the summation order of parameter gradients).
# Env: OSP (binary), PY (python with torch/h5py/numpy), SRC (source root), TMPROOT.
set -euo pipefail
: "${OSP:?set OSP to the osp binary}" "${PY:=python3}" "${TMPROOT:=/tmp}"
SRC=${SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found (install openmpi-bin)"; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
# containers without ptrace rights break shared-memory single-copy; plain copies always work
export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI=(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x OMPI_MCA_mpi_yield_when_idle)
mkdir -p "$TMPROOT"
W=$(mktemp -d "$TMPROOT/mpi_forward.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$W"; else echo "(kept $W)" >&2; fi' EXIT
cd "$W"
"$PY" "$SRC/tests/ref/make_case.py" --out case --batch 4 --dim 64 --heads 2 --ffn 128 --layers 4 --frames 2 \
    --height 8 --width 8 --mode hybrid --full-blocks 0 --seed 5 >/dev/null
ARGS=(--ckpt case/model.safetensors --heads 2 --set model.text_len=16 --set model.attention.mode=hybrid
      --set model.attention.num_full_blocks=0 --device cpu --inputs case/inputs.h5)
"$OSP" forward "${ARGS[@]}" --out one.h5 2>one.log || { cat one.log; echo "FAIL: single process"; exit 1; }
for np in 2 4; do
    "${MPI[@]}" -np $np "$OSP" forward "${ARGS[@]}" --out np$np.h5 2>np$np.log || { cat np$np.log; echo "FAIL: -np $np"; exit 1; }
    "$PY" - one.h5 np$np.h5 <<'PYEOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], 'r'), h5py.File(sys.argv[2], 'r')
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
other = []
b.visit(lambda n: other.append(n) if isinstance(b[n], h5py.Dataset) else None)
if sorted(names) != sorted(other): sys.exit('FAIL: datasets differ: %s' % sorted(set(names) ^ set(other)))
# parameter gradients as one vector (a key bias has a true gradient of 0: its own
# relative error is rounding noise over nothing), out and input gradients one by one
groups = {n: [n] for n in names if not n.startswith('grads/')}
groups['grads/* (all parameters)'] = [n for n in names if n.startswith('grads/')]
worst, where = 0.0, ''
for label, members in groups.items():
    x = np.concatenate([np.asarray(a[n], np.float64).ravel() for n in members])
    y = np.concatenate([np.asarray(b[n], np.float64).ravel() for n in members])
    e = np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)
    if e > worst: worst, where = e, label
ok = worst <= 1e-6
print('%s %s: %d datasets, worst ||a-b||/||a|| = %.2e (%s)' % ('ok  ' if ok else 'FAIL', sys.argv[2], len(names), worst, where))
sys.exit(0 if ok else 1)
PYEOF
done
echo "test_mpi_forward: passed"
