#!/usr/bin/env bash
# test_comm_mpi.sh — runs the collectives unit test (tests/test_comm.c, checked against
# hand-computed results) under mpirun at 2 and 4 ranks (ctest also runs it as one process),
# and `osp bench --comm` at 2 ranks. Env: BUILD (build directory), OSP (binary), PY (python3).
set -euo pipefail
: "${BUILD:?set BUILD to the build directory}"
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found (install openmpi-bin)"; exit 1; }
export OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
# containers without ptrace rights break shared-memory single-copy; plain copies always work
export OMPI_MCA_btl_vader_single_copy_mechanism=none
for np in 2 4; do
    out=$(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS -x OMPI_MCA_mpi_yield_when_idle -np $np \
          "$BUILD/tests/test_comm" 2>&1) || { echo "$out"; echo "FAIL: test_comm at -np $np"; exit 1; }
    echo "$out" | grep -E "^(FAIL|test_comm)" || true
    echo "$out" | grep -q "checks passed, 0 failed" || { echo "$out"; echo "FAIL: no summary at -np $np"; exit 1; }
done
# osp bench --comm end to end: every collective at every size 1 KiB..64 KiB, busbw by the
# nccl-tests formula from the reported algbw
: "${OSP:?set OSP to the osp binary}" "${PY:=python3}"
J=$(mktemp "${TMPROOT:-/tmp}/comm_bench.XXXXXX.json")
mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS -x OMPI_MCA_mpi_yield_when_idle -np 2 \
    "$OSP" bench --comm --max-bytes 65536 --iters 2 --json "$J" >/dev/null || { echo "FAIL: osp bench --comm"; exit 1; }
"$PY" - "$J" <<'PYEOF' || { rm -f "$J"; exit 1; }
import json, sys
r = json.load(open(sys.argv[1]))
rows = r['results']; n = r['ranks']
assert n == 2, n
names = sorted({x['collective'] for x in rows})
assert names == ['all_gather', 'all_reduce', 'all_to_all', 'reduce_scatter'], names
assert len(rows) == 4 * 4, len(rows)  # 1, 4, 16, 64 KiB
for x in rows:
    f = 2.0 * (n - 1) / n if x['collective'] == 'all_reduce' else (n - 1) / n
    assert x['time_us'] > 0 and x['algbw_GBps'] > 0, x
    assert abs(x['busbw_GBps'] - f * x['algbw_GBps']) <= 1e-9 * x['algbw_GBps'] + 1e-12, x
print('ok   osp bench --comm: %d rows, busbw = algbw x nccl-tests factor' % len(rows))
PYEOF
rm -f "$J"
echo "test_comm_mpi: passed at -np 2 and 4"
