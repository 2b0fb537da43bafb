#!/usr/bin/env bash
# A/B of the Lightning search and retrain steps (bench.py's busy_at_batch at batch 32, CUDA
# graphs, bf16) between an older checkout and this tree, in one device call, interleaved
# base, new, new, base so that the host's drift falls on both arms alike. One line per run.
#
#   mkdir -p ab/base && git archive <commit> supernet ops losses callbacks | tar -x -C ab/base
#   cp -r scripts ab/base/            # the same bench in both arms
#   echo /ab/ >> .git/info/exclude    # then, on the device (carry ab):
#   OUT=$OUT bash scripts/ab_lightning.sh ab/base [more bench.py arguments]
set -u
base=${1:?usage: scripts/ab_lightning.sh BASE_DIR [bench.py arguments]}
shift
export PYTHONUNBUFFERED=1
args="single --candidates 4 --no_steps --no_compile --no_lightning --busy_batches 32 --cuda_graphs"
args="$args --epoch_steps ${EPOCH_STEPS:-100} $*"
for arm in ${ARMS:-base new new base}; do
  if [ "$arm" = base ]; then dir=$base; else dir=.; fi
  (cd "$dir" && PYTHONPATH=. python3 scripts/bench.py $args --out "${OUT:-.}/ab_${arm}_$RANDOM.json" 2>&1 |
    grep -E "^  batch|Error|error" | sed "s/^/$arm /")
done
