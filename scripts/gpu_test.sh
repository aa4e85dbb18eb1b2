#!/usr/bin/env bash
# gpu_test.sh — everything osp does on the GPU machine in ONE call, from the repository root:
#   1. install the carried .debs (.deps/*.deb: libyaml/jansson are missing there) and Python
#      wheels (.whl/*.whl, e.g. diffusers, into /tmp/site on PYTHONPATH);
#   2. configure and build osp with CUDA (Release, sm_90) into build-gpu/;
#   3. run the GPU-labelled tests (ctest -L gpu -V: test_ops_gpu, test_attn_gpu, test_hif8_gpu,
#      test_wan_gpu, test_act16_gpu, test_train_gpu, test_attn_cudnn_gpu, test_ref_diffusers_gpu),
#      then test_train_resume
#      with OSP_TEST_DEVICE=cuda (bit-exact resume on the GPU);
#   4. `osp bench --device cuda --json $OUT/bench_osp.json` (a failure is logged, not fatal);
#   5. scripts/bench_torch.py --json $OUT/bench_torch.json (PyTorch SDPA backends and the
#      diffusers Wan2.1-1.3B DiT on the same card, for ratios);
#   6. a summary (also $OUT/summary.txt).
# Every step is time-limited so the whole call ends within OSP_GPU_TOTAL_S (default 570 s);
# a step that would start too late is skipped with a note. Files in $OUT (at most 8):
#   gpu_test.log (everything below except the full build output), build.log, ctest.log,
#   bench.log, bench_osp.json, bench_torch.json, summary.txt
# Options (environment):
#   OSP_CUDNN_LIB=path      the libcudnn.so.9 osp loads (default here: PyTorch's, see below)
#   OSP_BUILD_DIR=dir       build directory (default build-gpu)
#   OSP_JOBS=n              build parallelism (default 16)
#   OSP_GPU_TOTAL_S=s       time budget of the whole call (default 570)
#   OSP_CTEST_ARGS="..."    extra ctest arguments (e.g. "-R wan_gpu" to run one test)
#   OSP_BENCH_ARGS="..."    extra `osp bench` arguments (e.g. "--quick" or "--only attn,dit")
#   OSP_TORCH_ARGS="..."    extra bench_torch.py arguments (e.g. "--quick")
#   OSP_SKIP_TESTS=1 / OSP_SKIP_BENCH=1 / OSP_SKIP_TORCH=1   leave a step out
# (The older OSP_SDPA_BASELINE switch is gone: bench_torch.py always times the SDPA backends.)
set -o pipefail
OUT=${OUT:-/tmp/osp-gpu-out}
mkdir -p "$OUT"
LOG="$OUT/gpu_test.log"
BUILD=${OSP_BUILD_DIR:-build-gpu}
JOBS=${OSP_JOBS:-16}
TOTAL=${OSP_GPU_TOTAL_S:-570}
T_START=$(date +%s)
: >"$LOG"
log() { echo "== [$(($(date +%s) - T_START)) s] $*" | tee -a "$LOG"; }
# seconds left of the whole budget
left() { echo $((TOTAL - ($(date +%s) - T_START))); }
# step_limit CAP RESERVE: seconds a step may use = min(CAP, left - RESERVE), at least 0;
# RESERVE keeps time for the steps after it
step_limit() {
    local l=$(($(left) - $2))
    [ "$l" -gt "$1" ] && l=$1
    [ "$l" -lt 0 ] && l=0
    echo "$l"
}
# status words for the summary
S_BUILD=skipped S_TESTS=skipped S_BENCH=skipped S_TORCH=skipped

log "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)

# ---- 1. carried packages ----
if ls .deps/*.deb >/dev/null 2>&1; then
    log "installing carried packages (.deps)"
    dpkg -i --force-depends .deps/*.deb >>"$LOG" 2>&1 || log "warning: dpkg returned non-zero"
fi
if ls .whl/*.whl >/dev/null 2>&1; then
    log "installing carried wheels (.whl) into /tmp/site"
    python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 ||
        log "warning: pip install of .whl/*.whl returned non-zero"
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__)' 2>&1 | tee -a "$LOG"

# cuDNN: the one PyTorch bundles (pip nvidia-cudnn) when OSP_CUDNN_LIB is not set. It is newer than
# the system's there (9.19 vs 9.14), and only the newer one takes per-row sequence lengths on its
# SDPA forward (padded Skiparse attention skips its padding); it also makes the PyTorch side and
# osp run the same cuDNN.
if [ -z "${OSP_CUDNN_LIB:-}" ]; then
    lib=$(python3 -c 'import os, nvidia.cudnn as c; print(os.path.join(list(c.__path__)[0], "lib", "libcudnn.so.9"))' \
        2>/dev/null)
    if [ -n "$lib" ] && [ -f "$lib" ]; then
        export OSP_CUDNN_LIB="$lib"
        log "cuDNN for osp: $lib (PyTorch's)"
    fi
fi

# HDF5 ships as the Debian "serial" flavour there: make its headers/libs findable either way
export CPATH="/usr/include/hdf5/serial${CPATH:+:$CPATH}"
export LIBRARY_PATH="/usr/lib/x86_64-linux-gnu/hdf5/serial${LIBRARY_PATH:+:$LIBRARY_PATH}"

# ---- 2. configure and build ----
log "configure"
# the script tests (tests/ref, test_train_gpu) need a Python with torch/h5py/numpy: use the
# python3 on PATH when it has them (ctest otherwise takes /usr/bin/python3)
pyopt=()
if python3 -c 'import torch, h5py, numpy' >/dev/null 2>&1; then
    pyopt=(-DOSP_PYTHON="$(command -v python3)")
else
    log "warning: python3 on PATH lacks torch/h5py/numpy; script tests use ctest's default Python"
fi
timeout 120 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 "${pyopt[@]}" 2>&1 |
    tail -n 15 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || { log "FAILED: cmake configure"; exit 1; }

# -k: keep building the other targets when one fails, so the GPU tests still run when an
# unrelated target is broken; the failure is still reported (and makes the script fail)
lim=$(step_limit 300 200)
log "build (-j$JOBS, limit ${lim} s; full output in build.log)"
timeout "$lim" cmake --build "$BUILD" -j"$JOBS" -- -k >"$OUT/build.log" 2>&1
build_rc=$?
if [ $build_rc -ne 0 ]; then
    grep -n -B2 -A3 -E "error|Error [0-9]" "$OUT/build.log" | head -n 60 | tee -a "$LOG"
    [ $build_rc -eq 124 ] && log "build timed out after ${lim} s"
    log "WARNING: build failed (rc=$build_rc); running the tests that were built"
    S_BUILD="FAILED (rc=$build_rc)"
else
    S_BUILD=ok
fi

# ---- 3. GPU tests ----
rc=0
if [ "${OSP_SKIP_TESTS:-0}" != 1 ]; then
    lim=$(step_limit 300 150)
    log "ctest -L gpu (limit ${lim} s)"
    # shellcheck disable=SC2086
    (cd "$BUILD" && timeout "$lim" ctest -L gpu -V --output-on-failure --timeout 240 ${OSP_CTEST_ARGS:-}) 2>&1 |
        tee "$OUT/ctest.log" >>"$LOG"
    rc=$?
    # the pass/fail lines and ctest's verdict, for the call's output tail
    grep -E "^ *[0-9]+/[0-9]+ Test +#|tests passed|tests failed|The following tests|Failed|\*\*\*" "$OUT/ctest.log" |
        grep -v "^[0-9]*: " | tee -a "$LOG" | tail -n 30
    [ $rc -eq 124 ] && log "ctest timed out after ${lim} s"
    # bit-exact resume on the GPU (train.deterministic: osp's attention backward)
    lim=$(step_limit 90 150)
    log "test_train_resume with OSP_TEST_DEVICE=cuda (limit ${lim} s)"
    (cd "$BUILD" && OSP_TEST_DEVICE=cuda timeout "$lim" ctest -R test_train_resume --output-on-failure) 2>&1 |
        tee -a "$OUT/ctest.log" | grep -E "tests passed|tests failed|Passed|Failed" | tee -a "$LOG"
    rrc=${PIPESTATUS[0]}
    [ $rc -eq 0 ] && rc=$rrc
    S_TESTS=$([ $rc -eq 0 ] && echo ok || echo "FAILED (rc=$rc)")
fi

# ---- 4. osp bench ----
: >"$OUT/bench.log"
if [ "${OSP_SKIP_BENCH:-0}" != 1 ]; then
    lim=$(step_limit 260 100)
    if [ ! -x "$BUILD/osp" ]; then
        log "osp bench skipped: $BUILD/osp was not built"
        S_BENCH="skipped (no binary)"
    elif [ "$lim" -lt 20 ]; then
        log "osp bench skipped: only ${lim} s left for it"
        S_BENCH="skipped (no time)"
    else
        log "osp bench --device cuda (limit ${lim} s)"
        # shellcheck disable=SC2086
        timeout "$lim" "$BUILD/osp" bench --device cuda --json "$OUT/bench_osp.json" ${OSP_BENCH_ARGS:-} 2>&1 |
            tee -a "$OUT/bench.log" | tee -a "$LOG"
        brc=$?
        # the bench command is new: its failure is reported, never fatal
        if [ $brc -eq 0 ]; then
            S_BENCH=ok
        else
            S_BENCH="FAILED (rc=$brc)"
            log "osp bench failed (rc=$brc), going on"
        fi
    fi
fi

# ---- 5. PyTorch baselines ----
if [ "${OSP_SKIP_TORCH:-0}" != 1 ]; then
    lim=$(step_limit 300 10)
    if [ "$lim" -lt 30 ]; then
        log "bench_torch.py skipped: only ${lim} s left"
        S_TORCH="skipped (no time)"
    else
        # its own budget stops starting new parts early enough to write the JSON in time
        tb=$((lim - 45))
        [ $tb -lt 20 ] && tb=20
        log "python3 scripts/bench_torch.py (limit ${lim} s, --budget ${tb})"
        # shellcheck disable=SC2086
        PYTHONUNBUFFERED=1 timeout "$lim" python3 scripts/bench_torch.py --json "$OUT/bench_torch.json" \
            --budget "$tb" ${OSP_TORCH_ARGS:-} 2>&1 | tee -a "$OUT/bench.log" | tee -a "$LOG"
        trc=$?
        if [ $trc -eq 0 ]; then
            S_TORCH=ok
        else
            S_TORCH="FAILED (rc=$trc)"
            log "bench_torch.py failed (rc=$trc)"
        fi
    fi
fi

# ---- 6. summary ----
{
    echo "== summary ($(($(date +%s) - T_START)) s, ${GPU_NAME:-unknown GPU}, $(date -Iseconds))"
    echo "build:       $S_BUILD"
    echo "gpu tests:   $S_TESTS"
    if [ -f "$OUT/ctest.log" ]; then
        grep -E "tests passed|tests failed" "$OUT/ctest.log" | tail -n 1
        grep -E "^ *[0-9]+/[0-9]+ Test +#" "$OUT/ctest.log" | sed 's/^ */  /'
        # the whole-model comparison table and the per-step loss agreement
        grep -E "^[0-9]+: \| " "$OUT/ctest.log" | sed 's/^[0-9]*: /  /'
        grep -E "worst per-step relative loss|all [0-9]+ parameter gradients together|sample on cuda:" "$OUT/ctest.log" |
            sed 's/^[0-9]*: /  /'
    fi
    echo "osp bench:   $S_BENCH$([ -s "$OUT/bench_osp.json" ] && echo " -> bench_osp.json")"
    echo "bench_torch: $S_TORCH$([ -s "$OUT/bench_torch.json" ] && echo " -> bench_torch.json")"
} | tee "$OUT/summary.txt" | tee -a "$LOG"

[ "$S_BUILD" = ok ] || exit 1
exit $rc
