#!/usr/bin/env bash
# test_ref_diffusers_gpu.sh -- `osp forward` (CPU backend) against diffusers' WanTransformer3DModel:
# output and every gradient of a random tiny model (tests/ref/check_diffusers.py, tol 5e-3, see
# there why). Carries the `gpu` label only because it needs torch >= 2.4 and diffusers, which the
# GPU machine has (scripts/gpu_test.sh installs the carried diffusers wheel); Debian's torch is 1.13.
set -euo pipefail
: "${OSP:?set OSP to the osp binary}"
PY=${PY:-python3}
TMPROOT=${TMPROOT:-/tmp}
mkdir -p "$TMPROOT"
WORK=$(mktemp -d "$TMPROOT/ref_diffusers.XXXXXX")
trap 'rc=$?; [ $rc -eq 0 ] && rm -rf "$WORK" || echo "test_ref_diffusers_gpu: FAILED (rc=$rc), files kept in $WORK"' EXIT
"$PY" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ref/check_diffusers.py" --osp "$OSP" --out "$WORK"
