#!/usr/bin/env bash
# The parameter-count control (scripts/params_max_pick.py): at each h200_route budget, the path with
# the most parameters within the select's band, retrained with the study's recipe and seeds 0-2,
# side by side ($OUT/retrain_archs.json). Does the supernet's pick beat a free count at equal latency?
#   usage (device tool, carry .whl): bash scripts/device/params_max.sh [LIMIT_S=400]
source scripts/device/setup.sh
study_corpus h200_route
timeout -k 20 "${1:-400}" python3 scripts/device/retrain_archs.py h200_route /tmp/params_max \
  docs/study/h200_route/params_max/params-max-*.yaml --parallel 6 2>&1 | grep -v "^INFO\|warn" | tail -12
