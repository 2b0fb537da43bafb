#!/usr/bin/env bash
# The h200_route study's route run a second time (`supernet study --alone-route`, session 20: the same
# config and seed, another supernet by the GPU's nondeterminism, so another pick at each budget):
# its two picks retrained with the study's recipe and seeds 0-2, side by side
# ($OUT/retrain_archs.json). Does a second run of the route also beat the study's baselines and
# random paths, or was the first pick lucky?
#   usage (device tool, carry .whl): bash scripts/device/route2.sh [LIMIT_S=400]
source scripts/device/setup.sh
study_corpus h200_route
timeout -k 20 "${1:-400}" python3 scripts/device/retrain_archs.py h200_route /tmp/route2 \
  docs/study/h200_route/route2/route2-*.yaml --parallel 6 2>&1 | grep -v "^INFO\|warn" | tail -12
