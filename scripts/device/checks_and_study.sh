#!/usr/bin/env bash
# Every GPU test (issue 15) beside a study, in one device call: the study starts first and
# measures its latency table with the GPU to itself; then the tests run beside its trainings
# (tests check results, not times; the study measures its networks' latency after them).
#   usage (device tool, carry .whl): bash scripts/device/checks_and_study.sh CONFIG [PARALLEL] [LIMIT_S]
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv,noheader
bash scripts/device/study.sh "$@" &
study=$!
for _ in $(seq 120); do grep -q "\[study\] budgets:" "$out/study.log" 2>/dev/null && break; sleep 2; done
timeout 300 python3 -m pytest -q -m gpu tests -p no:cacheprovider -o addopts="" --ignore=tests/test_export.py >"$out/gpu_tests.log" 2>&1
tail -6 "$out/gpu_tests.log"
wait $study
