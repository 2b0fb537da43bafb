#!/usr/bin/env bash
# The bench's ST/derived step-time ratios (weight and arch steps, fp32 and bf16, CUDA graphs) from
# interleaved rounds, with the GPU to itself: the figures the redesign had to keep (issue 15).
#   usage (device tool, carry .whl): bash scripts/device/bench_ratios.sh
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
timeout 150 python3 scripts/bench.py single --candidates 4 --no_steps --no_compile --no_lightning --cuda_graphs \
  --interleave 5 --out "$out/bench_interleave.json" >"$out/bench.log" 2>&1
grep -E "interleaved|Error|error" "$out/bench.log"
