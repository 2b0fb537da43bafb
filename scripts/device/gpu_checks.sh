#!/usr/bin/env bash
# The redesign's GPU checks (issue 15) in one device call: every GPU test, then the bench's
# per-step ratios (interleaved rounds, CUDA graphs). Logs under $OUT.
#   usage (device tool, carry .whl): bash scripts/device/gpu_checks.sh
set -o pipefail
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv
timeout 260 python3 -m pytest -q -m gpu tests -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log" | tail -25
timeout 120 python3 scripts/bench.py single --candidates 4 --no_steps --no_compile --no_lightning --cuda_graphs \
  --interleave 5 --out "$out/bench_interleave.json" 2>&1 | tee "$out/bench_interleave.log" | tail -30
timeout 150 python3 scripts/bench.py single --candidates 4 8 --no_compile --no_lightning --cuda_graphs \
  --relaxations "darts arch" "st weight" "st arch" --out "$out/bench_steps.json" 2>&1 | tee "$out/bench_steps.log" | tail -40
