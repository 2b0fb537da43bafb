#!/usr/bin/env bash
# A study's route (h200_route unless STUDY names another) with search seed SEED (route_seed.py: its
# supernet and its select for every budget), then its picks retrained with the study's recipe and
# retrain seeds, side by side ($OUT/retrain_archs.json, the picks in $OUT/arch/). Judge them with
# scripts/extra_picks_report.py against the study's baselines and random paths.
# BUDGET=LABEL retrains that budget's pick only (a shorter call; the select still runs for every
# budget, as the study's does: a budget's pick can come from another budget's candidates).
# STUDY=NAME runs another study's route (default h200_route; h200_open for the budget_open space):
# its table must be kept as docs/study/NAME/latency.json (the study's own, from its run folder).
# OPTION=KEY=VALUE sets one search option (the route with another supernet recipe; h200_route's
# even draws of before session 27: OPTION='model.method_options={}'); EPOCHS=N trains the supernet
# N epochs instead of the study's 20 (a heavier recipe held to the 2x target: scripts/draw_cost.py
# estimates the epochs that would; session 34); SCORE=REPORT also scores
# that study.json's networks with the supernet (route_seed.py --score). ALONE=1 times the route
# instead of retraining every pick side by side (issue 16's 2x target; run it with nothing else on
# the GPU, BUDGET set): BUDGET's pick retrained once, seed 0, alone, then route_cost.py writes
# $OUT/route_cost.json: (the supernet's training + its select for every budget) / that retrain.
# SIZE=1 also picks each budget's finalists again by objective rank + parameter rank
# (scripts/size_repick.py; $OUT/size_repick.txt) and retrains that pick beside the route's where it
# differs: a paired test of a size prior, one supernet for both picks (session 29).
# PICKS_ONLY=1 stops once the picks are in $OUT (arch/, arch_size/, select.json): a short call when
# machines are scarce; retrain the kept picks of several seeds in a call of their own with
# retrain_archs.py, and read them with paired_picks.py --retrained (session 30).
# Its own work folder, so that no supernet or select trained beside other runs is reused.
#   usage (device tool, carry .whl): bash scripts/device/route_seed.sh SEED [LIMIT_S=400]
source scripts/device/setup.sh
seed=${1:?usage: scripts/device/route_seed.sh SEED [LIMIT_S]}
deadline "${2:-400}" route_seed
study=${STUDY:-h200_route}
[ -f "docs/study/$study/latency.json" ] || { echo "route_seed: no docs/study/$study/latency.json"; exit 1; }
study_corpus "$study"
out=${OUT:-/tmp/out}
work=/tmp/route_s$seed
if [ -n "$ALONE" ]; then
  [ -n "$BUDGET" ] || { echo "route_seed: ALONE=1 needs BUDGET (the pick whose retrain is timed)"; exit 1; }
  work=/tmp/route_alone_s$seed
fi
timeout -k 20 "$(left)" python3 scripts/device/route_seed.py "$study" "$work" "$seed" \
  --table "docs/study/$study/latency.json" ${BUDGET:+--budget "$BUDGET"} \
  ${OPTION:+--option "$OPTION"} ${EPOCHS:+--option "trainer.max_epochs=$EPOCHS"} ${SCORE:+--score "$SCORE"} 2>&1 | grep -v "^INFO\|warn\|it/s" > "$work.log"
tail -4 "$work.log"; [ -z "$SCORE" ] || grep "^scored" "$work.log"
mkdir -p "$out/arch" && cp "$work"/arch/*.yaml "$out/arch/" 2>/dev/null
[ -z "$SCORE" ] || cp "$work/scores.json" "$out/scores.json" 2>/dev/null
cp "$work"/select/*/select.json "$out/" 2>/dev/null  # the finalists and their finetuned scores, to read why a pick won
if [ -n "$SIZE" ] && [ -z "$ALONE" ]; then  # each budget's size pick of the same finalists, retrained beside
  python3 scripts/size_repick.py "$work"/select/*/select.json --space "docs/study/$study/space.yaml" \
    --picks "$work"/arch/*.yaml --out "$work/arch_size" > "$out/size_repick.txt" 2>&1
  grep "written\|size pick" "$out/size_repick.txt" || tail -2 "$out/size_repick.txt"  # its error, if it failed
  mkdir -p "$out/arch_size" && cp "$work"/arch_size/*.yaml "$out/arch_size/" 2>/dev/null
fi
ls "$work"/arch/*.yaml >/dev/null 2>&1 || { echo "route_seed: no pick yet (call again)"; exit 0; }
[ -z "$PICKS_ONLY" ] || { echo "route_seed: picks kept in $out, not retrained (PICKS_ONLY)"; exit 0; }
enough
if [ -n "$ALONE" ]; then
  pick="$work/arch/uniform-s$seed-any-predictor-$BUDGET.yaml"
  OUT="$out/alone" timeout -k 20 "$(left)" python3 scripts/device/retrain_archs.py "$study" \
    "$work/alone" "$pick" --seeds 0 --parallel 1 2>&1 | grep -v "^INFO\|warn" | tail -2
  all_done "$out/alone/retrain_archs.json" 1 || { echo "route_seed: the retrain alone is not done (call again)"; exit 0; }
  python3 scripts/device/route_cost.py "$out/alone/retrain_archs.json" \
    "$work/search/uniform-s$seed-any/checkpoints/last.ckpt" "$work/select/uniform-s$seed-any-predictor/select.json" \
    "$out/route_cost.json" 24
  exit 0
fi
timeout -k 20 "$(left)" python3 scripts/device/retrain_archs.py "$study" "$work" "$work"/arch/*.yaml \
  ${SIZE:+$(ls "$work"/arch_size/*.yaml 2>/dev/null)} --parallel 6 2>&1 | grep -v "^INFO\|warn" | tail -8
