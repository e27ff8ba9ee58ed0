#!/usr/bin/env bash
# The evidence sweep behind results/ (see results/README.md): every task on the offline
# Digits benchmark, on whatever machine runs it. Each experiment resumes where it stopped
# when re-run with the same work directory. Usage: bash scripts/run_evidence.sh [WORKROOT]
set -euo pipefail
root="${1:-workdir/evidence}"
py="${PYTHON:-python}"
mkdir -p "$root"
run() {  # run TASK VARIANT
  local task="$1" variant="$2" out="$root/$1_$2"
  echo "== $task:$variant -> $out ($(date -u +%H:%M:%S))"
  "$py" -m "experiments.$task" --workdir="$out" \
    --config="experiments/configs/$task.py:$variant" | tail -n 1 > "$out.summary.json"
  mkdir -p "results/$task/$variant"
  cp "$out"/results.md "$out"/metrics.jsonl "$out"/config.json "$out.summary.json" \
    "results/$task/$variant/"
  cp "$out"/*.png "results/$task/$variant/" 2>/dev/null || true
}
for step in ${STEPS:-selective_labeling:sweep model_compression:sweep client_labeling:sweep \
    selective_labeling:fixmatch selective_labeling:curves}; do
  run "${step%%:*}" "${step##*:}"
done
