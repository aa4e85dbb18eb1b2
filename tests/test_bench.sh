#!/usr/bin/env bash
# test_bench.sh — `osp bench` runs end to end on the CPU (quick shapes), writes a JSON file
# with every section it was asked for, and rejects a bad section with one error line.
# Timings are printed, never asserted (machines are noisy).
# Env: OSP (binary), PY (python3), TMPROOT (scratch root).
set -euo pipefail
: "${OSP:?set OSP to the osp binary}" "${PY:=python3}" "${TMPROOT:=/tmp}"
mkdir -p "$TMPROOT"
W=$(mktemp -d "$TMPROOT/bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
"$OSP" bench --device cpu --quick --repeat 1 --only gemm,attn,skiparse,hif8 --json "$W/b.json"
"$PY" - "$W/b.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
secs = d["sections"]
for s in ("gemm", "attn", "skiparse", "hif8"):
    assert s in secs and secs[s], f"section {s} missing from the JSON"
print("bench JSON has sections:", ", ".join(sorted(secs)))
PY
set +e
"$OSP" bench --only nosuchsection 2>"$W/err"
rc=$?
set -e
[ "$rc" = 1 ] || { echo "bad section: exit $rc, expected 1"; exit 1; }
[ "$(wc -l <"$W/err")" = 1 ] && grep -q "^osp: error:.*nosuchsection" "$W/err" || { echo "bad section: stderr was:"; cat "$W/err"; exit 1; }
echo "test_bench: ok"
