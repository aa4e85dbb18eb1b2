#!/usr/bin/env bash
# The demo: installs what is missing, builds osp, synthesizes the shapes world, trains the
# tiny hybrid-attention DiT on the CPU (configs/tiny.yaml), samples 8 held-out prompts into
# runs/demo/samples/<prompt>.gif and reports the final losses and prompt adherence.
# Environment: OSP_DEMO_STEPS overrides train.steps (e.g. 50 for a smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
scripts/install_deps.sh
jobs=$(nproc)
echo "== build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" --target osp >/dev/null
OSP=./build/osp
mkdir -p data runs
# always rewritten (about a second), so a file from an older version of the world is never reused
echo "== synthesize the shapes world"
$OSP data synth --out data/shapes_train.h5
extra=()
[ -n "${OSP_DEMO_STEPS:-}" ] && extra+=(--set "train.steps=$OSP_DEMO_STEPS")
echo "== train (configs/tiny.yaml, CPU)"
rm -rf runs/demo
$OSP train configs/tiny.yaml --set device=cpu "${extra[@]}" | tee runs/demo.train.log
echo "== sample 8 held-out prompts"
mapfile -t prompts < <($OSP data heldout | head -n 8)
args=()
for p in "${prompts[@]}"; do args+=(--prompt "$p"); done
$OSP sample configs/tiny.yaml --set device=cpu "${args[@]}" | tee runs/demo.sample.log
final=$(grep '^done:' runs/demo.train.log || true)
adh=$(grep '^prompt adherence' runs/demo.sample.log || true)
cat <<MSG

== demo finished in $(( $(date +%s) - t0 )) s
$final
$adh
  samples (GIF + PNG frames): runs/demo/samples/
  checkpoints:                runs/demo/checkpoints/  (Wan2.1-layout safetensors)
  metrics:                    runs/demo/metrics.jsonl (plot: /usr/bin/python3 scripts/plot_metrics.py runs/demo)
MSG
