#!/usr/bin/env bash
# eval_adherence.sh — prompt adherence of a shapes-world run over several seeds: samples the 8
# held-out prompts (`osp data heldout`) once per seed with `osp sample` and totals what the
# automatic probe reports (colour, direction of motion). One seed gives 8 samples, too few to
# tell two runs apart (chance for the direction is 1 in 4); 4 seeds give 32.
#
#   scripts/eval_adherence.sh [--seeds N] [--config FILE] [--osp BIN] RUN_DIR [-- sample options...]
#
# Defaults: 4 seeds, configs/tiny.yaml, ./build/osp. Samples go to RUN_DIR/adherence/seed_K/.
# Example: scripts/eval_adherence.sh runs/demo -- --set device=cpu --cfg 3
set -euo pipefail
seeds=4 cfg=configs/tiny.yaml osp=./build/osp run=""
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --seeds) seeds=$2; shift 2 ;;
    --config) cfg=$2; shift 2 ;;
    --osp) osp=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "eval_adherence: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) run=$1; shift ;;
    esac
done
[ -n "$run" ] || { echo "eval_adherence: RUN_DIR is required (see --help)" >&2; exit 2; }
[ -d "$run" ] || { echo "eval_adherence: $run: no such run directory" >&2; exit 2; }
[ -x "$osp" ] || { echo "eval_adherence: $osp: not an executable (build first, or --osp BIN)" >&2; exit 2; }
case $seeds in '' | *[!0-9]* | 0) echo "eval_adherence: --seeds must be a positive integer" >&2; exit 2 ;; esac
mapfile -t prompts < <("$osp" data heldout | head -n 8)
args=()
for p in "${prompts[@]}"; do args+=(--prompt "$p"); done
c=0 d=0 n=0
for ((s = 1; s <= seeds; s++)); do
    out="$run/adherence/seed_$s"
    line=$("$osp" sample "$cfg" --set run_dir="$run" --seed "$s" --out "$out" "${args[@]}" "$@" |
        grep '^prompt adherence') || { echo "eval_adherence: osp sample failed for seed $s" >&2; exit 1; }
    cc=$(sed -E 's/.*\(color ([0-9]+)\/.*/\1/' <<<"$line")
    dd=$(sed -E 's/.*direction ([0-9]+)\/[0-9]+\)$/\1/' <<<"$line")
    printf "seed %d: colour %d/8, direction %d/8\n" "$s" "$cc" "$dd"
    c=$((c + cc)) d=$((d + dd)) n=$((n + 8))
done
echo "total over $seeds seed(s): colour $c/$n, direction $d/$n (chance: colour 1/7, direction 1/4)"
