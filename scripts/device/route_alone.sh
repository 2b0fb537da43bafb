#!/usr/bin/env bash
# Issue 16's <= 2x target for h200_route in one call, on one machine: the study's 0.844 ms pick
# retrained alone (seed 0, the study's recipe), then the study's 20-epoch uniform supernet alone,
# then its select for both budgets alone ($OUT/alone_costs.json). A study's own --alone-retrain
# may time its retrain on another machine than its supernet (a later call); this does not.
#   usage (device tool, carry .whl): bash scripts/device/route_alone.sh [LIMIT_S=560]
source scripts/device/setup.sh
study_corpus h200_route
timeout -k 20 "${1:-560}" python3 scripts/device/alone_costs.py h200_route /tmp/route_alone \
  --table docs/study/h200_route/latency.json --report docs/study/h200_route/study.json --no-scoring \
  --archs docs/study/h200_route/arch/uniform-s0-any-predictor-budget_conformer_s.yaml 2>&1 \
  | grep -v "^INFO\|warn" | tail -40
