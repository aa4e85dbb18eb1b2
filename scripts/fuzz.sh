#!/usr/bin/env bash
# scripts/fuzz.sh TARGET [SECONDS] — fuzz one target (safetensors, config, hdf5, cli) or `all`
# (SECONDS each) for longer than CI does. With clang it builds build-fuzz/ with libFuzzer +
# ASan + UBSan (coverage-guided); without, build-fuzz-gcc/ with tests/fuzz/driver.c (random
# mutation of the corpus) under ASan + UBSan. New inputs go to BUILD/corpus/fuzz_TARGET (the
# committed seeds in tests/fuzz/corpus/ are only read), crashes to BUILD/crashes/. A crash
# found becomes a regression case: copy it (minimised if possible) into
# tests/fuzz/corpus/fuzz_TARGET/crash_<what> and fix the bug; one in a library goes to
# tests/fuzz/known/ (fuzz_hdf5 soon reaches libhdf5 1.10.8's own H5HG_read bugs: see there).
# An input that runs over 10 s is saved as a timeout-* artifact.
# Env: OSP_FUZZ_CC=gcc forces the driver build; OSP_FUZZ_JOBS (default nproc) build jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh safetensors|config|hdf5|cli|all [SECONDS]}
secs=${2:-600}
targets=(safetensors config hdf5 cli)
[ "$target" = all ] || targets=("$target")
for t in "${targets[@]}"; do
    [ -d "tests/fuzz/corpus/fuzz_$t" ] || { echo "osp: error: unknown fuzz target '$t'" >&2; exit 2; }
done
jobs=${OSP_FUZZ_JOBS:-$(nproc)}
cc=${OSP_FUZZ_CC:-$(command -v clang >/dev/null && echo clang || echo gcc)}
if [ "$cc" = clang ]; then
    dir=build-fuzz
    cmake -S . -B $dir -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_C_FLAGS_DEBUG="-O1 -g -fsanitize=fuzzer-no-link" -DOSP_SANITIZE=ON -DOSP_CUDA=OFF \
        -DOSP_FUZZ_LIBFUZZER=ON >/dev/null
else
    dir=build-fuzz-gcc
    cmake -S . -B $dir -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DOSP_SANITIZE=ON -DOSP_CUDA=OFF \
        >/dev/null
fi
cmake --build $dir -j"$jobs" --target "${targets[@]/#/fuzz_}"
mkdir -p $dir/crashes
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
status=0
for t in "${targets[@]}"; do
    mkdir -p $dir/corpus/fuzz_$t
    echo "== fuzz_$t for $secs s ($cc)"
    if [ "$cc" = clang ]; then
        # -close_fd_mask=2: osp's own one-line rejections would flood stderr (crash reports still
        # reach the log through libFuzzer); allocations past 2 GiB come back NULL (fuzz_util.h)
        $dir/tests/fuzz/fuzz_$t -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=4096 -close_fd_mask=2 \
            -artifact_prefix=$dir/crashes/ -print_final_stats=1 $dir/corpus/fuzz_$t tests/fuzz/corpus/fuzz_$t \
            2>&1 | tee $dir/fuzz_$t.log | grep -E "^#[0-9]+ +(DONE|INITED)|stat::number_of_executed_units|ERROR|SUMMARY|Test unit written" || true
    else
        $dir/tests/fuzz/fuzz_$t -max_total_time="$secs" -artifact_prefix=$dir/crashes/ tests/fuzz/corpus/fuzz_$t \
            2>$dir/fuzz_$t.log | tee -a $dir/fuzz_$t.log || true
    fi
    if grep -qE "ERROR: |crashing input|SUMMARY: " $dir/fuzz_$t.log; then
        echo "osp: error: fuzz_$t found a crash: see $dir/fuzz_$t.log and $dir/crashes/" >&2
        status=1
    fi
done
exit $status
