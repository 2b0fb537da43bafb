#!/usr/bin/env bash
# Issue 16's <= 2x target for h200_route, in one call on one machine, each run alone on the GPU:
# the study's 0.844 ms pick retrained (seed 0, the study's recipe), the study's 20-epoch uniform
# supernet, then its select for both budgets, as the study ran it (select.json's budget_seconds give
# each budget's own part, so also the route of a user who wants one network). A study's own
# --alone-retrain may run on another machine than its supernet did (a later call); this does not.
# $OUT/route_alone.json: each run's own seconds and wall seconds, and the ratios.
#   usage (device tool, carry .whl): bash scripts/device/route_alone.sh [LIMIT_S=560]
source scripts/device/setup.sh
deadline "${1:-560}" route_alone
study_corpus h200_route
work=/tmp/route_alone table=docs/study/h200_route/latency.json data=$PWD/data/study_h200
quiet() { grep -v "^INFO\|warn" | tail -3; }
timed() {  # NAME COMMAND...: runs it alone (skipped once done), its wall seconds in $work/NAME.wall
  local name=$1; shift
  [ -f "$work/$name.wall" ] && return 0
  enough
  local began=$(date +%s.%N)
  timeout -k 20 "$(left)" "$@" 2>&1 | quiet
  [ "${PIPESTATUS[0]}" = 0 ] || { echo "route_alone: $name stopped (call again)"; exit 0; }
  python3 -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 2))" "$began" >"$work/$name.wall"
}
mkdir -p "$work"
timed retrain python3 -m supernet retrain --arch docs/study/h200_route/arch/uniform-s0-any-predictor-budget_conformer_s.yaml \
  --data "$data" --seed_everything 0 --logger csv --trainer.max_epochs 24 --trainer.max_time 00:00:20:00 \
  --model.lr 0.002 --model.warmup_steps 60 --data.max_frames 60000 --data.num_workers 1 \
  --early_stopping.patience 100 --trainer.enable_progress_bar false --trainer.enable_model_summary false \
  --out "$work/retrain"
timed supernet python3 -m supernet search --data "$data" --model.space docs/study/h200_route/space.yaml \
  --model.method uniform --seed_everything 0 --model.latency_table "$table" --logger csv \
  --trainer.max_epochs 20 --trainer.max_time 00:00:06:00 --model.warmup_epochs 10 --model.lr 0.001 \
  --model.warmup_steps 500 --model.arch_lr 0.03 --model.penalty_lambda 5.0 --data.max_frames 20000 \
  --data.num_workers 1 --trainer.enable_progress_bar false --trainer.enable_model_summary false --out "$work/supernet"
timed select python3 -m supernet select "$work/supernet/checkpoints/last.ckpt" --data "$data" \
  --strategy predictor --budgets 0.84373401597716 0.42186700798858 --lut "$table" --evaluations 48 --seed 0 \
  --batches 4 --metric loss --finalists 4 --finetune-steps 48 --floor 0.8 --out "$work/select"
python3 scripts/device/route_alone_report.py "$work" "${OUT:-/tmp/out}/route_alone.json"
