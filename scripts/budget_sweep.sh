#!/usr/bin/env bash
# Issue-5 acceptance: searches under three latency budgets, each derived model retrained, then
# the Pareto plot of error against predicted latency. The table must be this machine's
# (make one with: supernet profile --space st_nas --device cpu --threads 1 --clock cpu -o LUT).
#   usage: scripts/budget_sweep.sh LUT DATA OUT [BUDGET_MS ...]
set -euo pipefail
lut=${1:?usage: scripts/budget_sweep.sh LUT DATA OUT [BUDGET_MS ...]}
data=${2:?}; out=${3:?}; shift 3
budgets=("${@:-5.4 6.0 6.8}")
read -r -a budgets <<< "${budgets[*]}"
runs=()
for budget in "${budgets[@]}"; do
  run="$out/budget_${budget}"
  supernet search --data "$data" --out "$run/search" --logger csv --trainer.enable_progress_bar false \
    --model.latency_table "$lut" --model.penalty hinge --model.budget "$budget" --model.penalty_lambda 5
  supernet retrain --arch "$run/search/arch.yaml" --data "$data" --out "$run/retrain" --logger csv \
    --trainer.enable_progress_bar false
  supernet latency-check --lut "$lut" --arch "$run/search/arch.yaml" --n 0
  runs+=("$run/retrain")
done
supernet pareto "${runs[@]}" --lut "$lut" --metric cer -o "$out/pareto_cer.png"
supernet pareto "${runs[@]}" --lut "$lut" --metric wer -o "$out/pareto_wer.png"
