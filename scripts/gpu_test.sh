#!/usr/bin/env bash
# gpu_test.sh — one call on the GPU machine, from the repository root: install the carried
# .debs (libyaml/jansson are missing there), configure and build osp with CUDA into build-gpu/,
# run the GPU-labelled tests (ctest -L gpu, verbose so timings print), and log everything to
# $OUT/gpu_test.log.
# Options (environment):
#   OSP_SDPA_BASELINE=1   also time PyTorch SDPA (flash, cuDNN, efficient) at 12 x 128 for the
#                         same sequence lengths as tests/test_ops_gpu.c, for ratios on the same card
#   OSP_GPU_BENCH="args"  afterwards run ./build-gpu/osp bench <args> if the binary exists
#   OSP_BUILD_DIR=dir     build directory (default build-gpu)
set -o pipefail
OUT=${OUT:-/tmp/osp-gpu-out}
mkdir -p "$OUT"
LOG="$OUT/gpu_test.log"
BUILD=${OSP_BUILD_DIR:-build-gpu}
JOBS=${OSP_JOBS:-16}
: >"$LOG"
log() { echo "== $*" | tee -a "$LOG"; }

log "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"

if ls .deps/*.deb >/dev/null 2>&1; then
    log "installing carried packages"
    dpkg -i --force-depends .deps/*.deb >>"$LOG" 2>&1 || log "warning: dpkg returned non-zero"
fi

# HDF5 ships as the Debian "serial" flavour there: make its headers/libs findable either way
export CPATH="/usr/include/hdf5/serial${CPATH:+:$CPATH}"
export LIBRARY_PATH="/usr/lib/x86_64-linux-gnu/hdf5/serial${LIBRARY_PATH:+:$LIBRARY_PATH}"

log "configure"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 2>&1 | tail -n 15 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || { log "FAILED: cmake configure"; exit 1; }

# -k: keep building the other targets when one fails, so the GPU tests still run when an
# unrelated target is broken; the failure is still reported (and makes the script fail)
log "build (-j$JOBS)"
cmake --build "$BUILD" -j"$JOBS" -- -k >>"$LOG" 2>&1
build_rc=$?
if [ $build_rc -ne 0 ]; then
    grep -n -B2 -A3 -E "error|Error [0-9]" "$LOG" | head -n 60
    log "WARNING: build failed (rc=$build_rc); running the tests that were built"
fi

log "ctest -L gpu"
(cd "$BUILD" && ctest -L gpu -V --output-on-failure --timeout 900) 2>&1 | tee -a "$LOG"
rc=$?

if [ -n "$OSP_SDPA_BASELINE" ]; then
    log "PyTorch SDPA baseline (bf16, 12 heads x 128)"
    PYTHONUNBUFFERED=1 python3 - <<'PY' 2>&1 | tee -a "$LOG"
import torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
print("torch", torch.__version__, torch.cuda.get_device_name())
def bench(fn, reps=10):
    for _ in range(2): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b))
    ts.sort(); return ts[len(ts) // 2]
for N in (8192, 32760):
    q, k, v = (torch.randn(1, 12, N, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    g = torch.randn_like(q)
    fl = 4.0 * N * N * 128 * 12
    for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                     ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        try:
            with sdpa_kernel(be):
                tf = bench(lambda: F.scaled_dot_product_attention(q, k, v))
                tb = bench(lambda: F.scaled_dot_product_attention(q, k, v).backward(g))
            print(f"sdpa {name:9s} N{N}: fwd {tf:.2f} ms ({fl/tf/1e9:.0f} TFLOP/s)  fwd+bwd {tb:.2f} ms "
                  f"({3.5*fl/tb/1e9:.0f} TFLOP/s)")
        except Exception as e:
            print(f"sdpa {name} N{N}: unavailable ({type(e).__name__}: {str(e)[:80]})")
PY
fi

if [ -n "$OSP_GPU_BENCH" ] && [ -x "$BUILD/osp" ]; then
    log "osp bench $OSP_GPU_BENCH"
    # shellcheck disable=SC2086
    "$BUILD/osp" bench $OSP_GPU_BENCH 2>&1 | tee -a "$LOG"
fi

log "done (build rc=$build_rc, ctest rc=$rc)"
[ $build_rc -eq 0 ] || exit 1
exit $rc
