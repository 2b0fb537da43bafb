#!/usr/bin/env bash
# Issue-5 acceptance on one GPU: latency-budgeted ST searches of the `conformer` space (6 layers,
# each a conformer variant or skip), one per budget, side by side on the one GPU (one run keeps it
# only partly busy: docs/benchmarks.md); each derived model retrained, side by side,
# with the same recipe; then, the GPU idle, each derived model's latency measured with the table's
# settings (latency-check), the Pareto plots and a table.
#   usage: scripts/gpu_budget_sweep.sh OUT [MINUTES_OF_AUDIO=180] [BUDGET_MS ...=1.3 2.0 2.8]
# OUT gets only a few files (the device tool returns at most 8): summary.txt, summary.json,
# pareto_cer.png, pareto_wer.png and runs.tar.gz (every run folder without checkpoints: logs,
# arch.yaml, search.json, alpha_history.jsonl, metrics.json, csv metrics); runs.tar.gz is written
# even when a step fails. The defaults size one H200 (16 cores) to about 7.5 minutes.
# Environment:
#   LUT              latency table: the search penalty, predictions and what latency-check measures
#                    with: a path or a shipped name (default conformer_h200_graph_bf16_b16)
#   SEARCH_EPOCHS=15 WARMUP_EPOCHS=6 SEARCH_TIME=00:00:02:45   (max_time: a safety cap)
#   RETRAIN_EPOCHS=30 RETRAIN_TIME=00:00:02:45
#   MAX_FRAMES=60000 LR=2e-3 LR_WARMUP_STEPS=150 ARCH_LR=3e-2 LAMBDA=5 SPACE=conformer
#   WORKERS          data-loader workers per run (default: the cores shared among the runs)
#   CORPUS_DIR (/tmp/corpus_<M>m)  WORK (/tmp/gpu_budget_sweep: the run folders)  PYTHON (python3)
#   SEARCH_ARGS, RETRAIN_ARGS      more options for every search / retrain (word-split)
# A CPU dry run at tiny scale (the CPU table; its settings are this repository's 2-core machine):
#   PYTHON=.venv/bin/python LUT=conformer_cpu SEARCH_EPOCHS=3 WARMUP_EPOCHS=1 \
#     RETRAIN_EPOCHS=2 MAX_FRAMES=4000 WORKERS=0 scripts/gpu_budget_sweep.sh /tmp/sweep_out 3 12 15.5 19
set -euo pipefail
out=${1:?usage: scripts/gpu_budget_sweep.sh OUT [MINUTES_OF_AUDIO=180] [BUDGET_MS ...]}
minutes=${2:-180}
shift $(($# < 2 ? $# : 2))
budgets=("$@")
((${#budgets[@]})) || budgets=(1.3 2.0 2.8)
lut=${LUT:-conformer_h200_graph_bf16_b16}
py=${PYTHON:-python3}
corpus=${CORPUS_DIR:-/tmp/corpus_${minutes}m}
work=${WORK:-/tmp/gpu_budget_sweep}
n=${#budgets[@]}
share=$((($(nproc) - n) / n))
workers=${WORKERS:-$((share < 1 ? 1 : share > 12 ? 12 : share))}
export PYTHONUNBUFFERED=1
mkdir -p "$out" "$work"
for budget in "${budgets[@]}"; do rm -rf "$work/budget_$budget"; done
start=$(date +%s)
stamp() { echo "[$(($(date +%s) - start)) s] $*"; }

finish() {  # also on failure: stop our own runs, bring back the logs (no checkpoints)
  local pid
  for pid in $(jobs -p); do
    pkill -TERM -P "$pid" 2>/dev/null || true  # the job's python, then the job itself
    kill "$pid" 2>/dev/null || true
  done
  tar -C "$work" --exclude='*.ckpt' -czf "$out/runs.tar.gz" . 2>/dev/null || true
}
trap finish EXIT

# Fail before any training when the table does not belong to this machine (device name, torch).
"$py" - "$lut" <<'PY'
import argparse, sys
from supernet.latency import LatencyTable, LatencyTableError
from supernet.commands.latency_check import OVERRIDES, run_settings
try:
    table = LatencyTable.load(sys.argv[1])
    s = run_settings(table, argparse.Namespace(**dict.fromkeys(OVERRIDES)), force=False)
except (LatencyTableError, FileNotFoundError) as err:  # FileNotFoundError: no such table
    sys.exit(f"gpu_budget_sweep: {err}")
print(f"table {sys.argv[1]}: {s['device_name']}, {s['dtype']}, batch {s['batch']} x {s['seconds']} s, vocab {s['vocab']}")
PY

"$py" -m supernet corpus --out "$corpus" --minutes "$minutes" --workers "$(nproc)"
stamp "corpus: $minutes minutes of audio in $corpus"

# Start one command per budget in the background (log: $work/budget_B/NAME.log); wait for all.
run_all() {
  local name=$1 budget pids=() failed=0 i
  shift
  for budget in "${budgets[@]}"; do
    mkdir -p "$work/budget_$budget"
    "$@" "$budget" >"$work/budget_$budget/$name.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      echo "$name for budget ${budgets[$i]} failed; the end of $work/budget_${budgets[$i]}/$name.log:"
      tail -n 25 "$work/budget_${budgets[$i]}/$name.log"
      failed=1
    fi
  done
  return $failed
}

search_one() {
  local run="$work/budget_$1"
  # shellcheck disable=SC2086
  "$py" -m supernet search --data "$corpus" --out "$run/search" --logger csv \
    --model.space "${SPACE:-conformer}" --model.latency_table "$lut" --model.penalty hinge \
    --model.budget "$1" --model.penalty_lambda "${LAMBDA:-5}" --model.arch_lr "${ARCH_LR:-3e-2}" \
    --model.lr "${LR:-2e-3}" --model.warmup_steps "${LR_WARMUP_STEPS:-150}" \
    --trainer.max_epochs "${SEARCH_EPOCHS:-15}" --model.warmup_epochs "${WARMUP_EPOCHS:-6}" \
    --trainer.max_time "${SEARCH_TIME:-00:00:02:45}" --trainer.enable_progress_bar false \
    --trainer.log_every_n_steps 10 --data.max_frames "${MAX_FRAMES:-60000}" --data.num_workers "$workers" \
    --checkpoint.save_last false --alpha_logger.heatmap false ${SEARCH_ARGS:-}
  # the budget in the architecture's name: latency-check rows and pareto labels tell them apart
  sed "s/^name: .*/name: conformer_b$1/" "$run/search/arch.yaml" >"$run/arch.yaml"
}

retrain_one() {
  local run="$work/budget_$1"
  # shellcheck disable=SC2086
  "$py" -m supernet retrain --arch "$run/arch.yaml" --data "$corpus" --out "$run/retrain" --logger csv \
    --trainer.max_epochs "${RETRAIN_EPOCHS:-30}" --trainer.max_time "${RETRAIN_TIME:-00:00:02:45}" \
    --trainer.enable_progress_bar false --trainer.log_every_n_steps 20 \
    --data.max_frames "${MAX_FRAMES:-60000}" --data.num_workers "$workers" \
    --model.lr "${LR:-2e-3}" --model.warmup_steps "${LR_WARMUP_STEPS:-150}" \
    --early_stopping.patience 1000 --checkpoint.save_last false ${RETRAIN_ARGS:-}
}

stamp "searching budgets ${budgets[*]} ms side by side ($workers loader workers each)"
run_all search search_one
stamp "searches done"
run_all retrain retrain_one
stamp "retrains done"

archs=() runs=()
for budget in "${budgets[@]}"; do
  archs+=(--arch "$work/budget_$budget/arch.yaml")
  runs+=("$work/budget_$budget/retrain")
done
# The GPU is idle now: every network measured with the table's settings, cycled together.
"$py" -m supernet latency-check --lut "$lut" "${archs[@]}" --n 0 | tee "$work/latency_check.txt"
stamp "latency measured"
{
  "$py" -m supernet pareto "${runs[@]}" --lut "$lut" --metric cer -o "$out/pareto_cer.png"
  "$py" -m supernet pareto "${runs[@]}" --lut "$lut" --metric wer -o "$out/pareto_wer.png"
} | tee "$work/pareto.txt"

"$py" - "$lut" "${SPACE:-conformer}" "$work" "$out" "${budgets[@]}" <<'PY' | tee "$out/summary.txt"
"""One row per budget: what the search chose, what it costs (predicted and measured), how good."""
import json, re, sys
from pathlib import Path
import torch
from supernet.archspec import ArchSpec
from supernet.latency import LatencyTable
from supernet.search.space import SearchSpace

lut, space, work, out, budgets = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5:]
table = LatencyTable.load(lut)
costs = table.costs(SearchSpace.load(space))
measured = {
    m[1]: float(m[2])
    for m in re.finditer(r"^\s+(\S+)\s+predicted\s+\S+ ms\s+measured\s+(\S+) ms", (work / "latency_check.txt").read_text(), re.M)
}
short = {"skip": "-"}
rows = []
for budget in budgets:
    run = work / f"budget_{budget}"
    spec = ArchSpec.from_yaml(run / "arch.yaml")
    search = json.loads((run / "search" / "search.json").read_text())
    metrics = json.loads((run / "retrain" / "metrics.json").read_text())
    probs = {k: torch.tensor(v) for k, v in search["probs"].items()}
    rows.append({
        "budget_ms": float(budget),
        "layers": [short.get(s, s.removeprefix("conformer-")) for s in spec.layers],
        "conformer_layers": sum(s != "skip" for s in spec.layers),
        "predicted_ms": table.predict(spec),
        "expected_ms_at_end": float(costs.expected(probs)),
        "entropy": search["entropy"],
        "measured_ms": measured.get(spec.name),
        "params": metrics["params"],
        "dev_cer": metrics["dev_cer"],
        "test_cer": metrics["cer"]["test"],
        "test_wer": metrics["wer"]["test"],
        "search_epochs": search["epochs"], "search_s": search["search_seconds"],
        "retrain_epochs": metrics["epochs"], "retrain_s": metrics["train_seconds"],
    })
(out / "summary.json").write_text(json.dumps({"lut": lut, "settings": table.settings, "rows": rows}, indent=2) + "\n")
s = table.settings
print(f"latency: {s['device_name']} ({s['dtype']}, batch {s['batch']} x {s['seconds']} s{', CUDA graphs' if s.get('cuda_graph') else ''})")
print(f"{'budget':>6} {'layers (- = skip)':<58} {'pred ms':>7} {'E[ms]':>6} {'meas ms':>7} {'params':>10} "
      f"{'dev CER':>7} {'test CER':>8} {'test WER':>8} {'epochs s/r':>10}")
for r in rows:
    meas = "-" if r["measured_ms"] is None else f"{r['measured_ms']:.3f}"
    print(f"{r['budget_ms']:6.2f} {' '.join(r['layers']):<58} {r['predicted_ms']:7.3f} {r['expected_ms_at_end']:6.3f} "
          f"{meas:>7} {r['params']:10,d} {100 * r['dev_cer']:6.1f}% {100 * r['test_cer']:7.1f}% "
          f"{100 * r['test_wer']:7.1f}% {r['search_epochs']:>4}/{r['retrain_epochs']:<5}")
PY
stamp "done: $out"
