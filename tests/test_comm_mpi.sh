#!/usr/bin/env bash
# test_comm_mpi.sh — runs the collectives unit test (tests/test_comm.c, checked against
# hand-computed results) under mpirun at 2 and 4 ranks; ctest also runs it as one process.
# Env: BUILD (build directory).
set -euo pipefail
: "${BUILD:?set BUILD to the build directory}"
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found (install openmpi-bin)"; exit 1; }
export OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
for np in 2 4; do
    out=$(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS -x OMPI_MCA_mpi_yield_when_idle -np $np \
          "$BUILD/tests/test_comm" 2>&1) || { echo "$out"; echo "FAIL: test_comm at -np $np"; exit 1; }
    echo "$out" | grep -E "^(FAIL|test_comm)" || true
    echo "$out" | grep -q "checks passed, 0 failed" || { echo "$out"; echo "FAIL: no summary at -np $np"; exit 1; }
done
echo "test_comm_mpi: passed at -np 2 and 4"
