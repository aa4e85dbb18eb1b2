#!/usr/bin/env bash
# test_version.sh — `osp --version` prints "osp X.Y.Z" and then exactly one line per optional
# part, in this order: cuda, cudnn, mpi, nccl, each "name: yes|no" with an optional
# "(detail)", exits 0 and writes nothing on stderr. MPI is always linked, so it must say yes;
# cuDNN cannot be in without CUDA. An argument after --version is an error ("osp: error:").
# Env: OSP (binary).
set -euo pipefail
: "${OSP:?set OSP to the osp binary}"
W=$(mktemp -d "${TMPROOT:-/tmp}/version.XXXXXX")
trap 'rm -rf "$W"' EXIT
nfail=0
fail() { echo "FAIL  $*" >&2; nfail=$((nfail + 1)); }

rc=0
"$OSP" --version >"$W/out" 2>"$W/err" || rc=$?
cat "$W/out"
[ "$rc" -eq 0 ] || fail "exit status $rc (expected 0)"
[ ! -s "$W/err" ] || fail "stderr not empty: $(head -n 1 "$W/err")"
mapfile -t lines <"$W/out"
[ "${#lines[@]}" -eq 5 ] || fail "${#lines[@]} lines (expected 5)"
[[ "${lines[0]:-}" =~ ^osp\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "first line '${lines[0]:-}' is not 'osp X.Y.Z'"
keys=(cuda cudnn mpi nccl)
for i in 0 1 2 3; do
    line=${lines[$((i + 1))]:-}
    [[ "$line" =~ ^${keys[$i]}:\ (yes|no)(\ \(.+\))?$ ]] || fail "line $((i + 2)) '$line' is not '${keys[$i]}: yes|no (...)'"
done
[[ "${lines[3]:-}" == "mpi: yes"* ]] || fail "mpi is always linked, got '${lines[3]:-}'"
if [[ "${lines[1]:-}" == "cuda: no"* && "${lines[2]:-}" == "cudnn: yes"* ]]; then
    fail "cudnn claimed without cuda"
fi

rc=0
"$OSP" --version extra >"$W/out2" 2>"$W/err2" || rc=$?
[ "$rc" -eq 1 ] || fail "--version extra: exit status $rc (expected 1)"
[[ "$(cat "$W/err2")" == "osp: error: "*"extra"* ]] || fail "--version extra: stderr '$(cat "$W/err2")'"
[ "$(awk 'END { print NR }' "$W/err2")" -eq 1 ] || fail "--version extra: expected exactly one stderr line"

# the usage text points at it
"$OSP" --help | grep -qF -- "--version" || fail "osp --help does not mention --version"

if [ "$nfail" -ne 0 ]; then
    echo "test_version: $nfail failures" >&2
    exit 1
fi
echo "test_version: all checks passed"
