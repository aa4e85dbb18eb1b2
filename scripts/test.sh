#!/usr/bin/env bash
# The test command: installs what is missing, builds osp (CPU backend, plus the CUDA
# backend wherever nvcc is found), runs the whole CPU test suite with ctest, then
# rebuilds with AddressSanitizer + UBSan and runs the suite again.
# GPU tests (ctest label `gpu`) run on a GPU machine through scripts/gpu_test.sh.
# Set OSP_TEST_NO_SANITIZE=1 to skip the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
OSP_WITH_PYTHON=1 scripts/install_deps.sh
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -LE gpu -j"$jobs" --timeout 900)
if [ "${OSP_TEST_NO_SANITIZE:-0}" != 1 ]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DOSP_SANITIZE=ON -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -LE "gpu|slow" -j"$jobs" --timeout 1800)
fi
echo "osp: all tests passed"
