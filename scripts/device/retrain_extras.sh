#!/usr/bin/env bash
# Extra networks judged against the h200_route study: every ArchSpec YAML in FOLDER (the
# most-parameters control in docs/study/h200_route/params_max/, the route run again's picks in
# .../route2/) retrained with the study's recipe and seeds 0-2, side by side
# ($OUT/retrain_archs.json; judge them with scripts/extra_picks_report.py).
#   usage (device tool, carry .whl): bash scripts/device/retrain_extras.sh FOLDER [LIMIT_S=400]
folder=${1:?usage: scripts/device/retrain_extras.sh FOLDER [LIMIT_S]}
source scripts/device/setup.sh
study_corpus h200_route
timeout -k 20 "${2:-400}" python3 scripts/device/retrain_archs.py h200_route "/tmp/$(basename "$folder")" \
  "$folder"/*.yaml --parallel 6 2>&1 | grep -v "^INFO\|warn" | tail -12
