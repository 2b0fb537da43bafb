#!/usr/bin/env bash
# Issue 17's "evolution and NSGA-II beat random at the same number of scored candidates, on the
# supernet score and after retraining", on the GPU, in steps that each resume on a warm machine:
#   1. the study's uniform supernet, alone (h200_three's recipe; skipped once it is trained);
#   2. scripts/select_strategies.py at BUDGET: STRATEGIES x SEEDS, EVALS candidates each
#      (one shared cache, so a stopped call loses nothing);
#   3. every strategy's pick (one per seed) retrained with the study's recipe x 3 seeds
#      (retrain_archs.py), then compared with random's (scripts/strategies_retrained.py).
# Each budget has its own folder (bench, picks, retrains) beside the one supernet, so a second
# budget on the warm machine reuses the supernet and nothing else.
# What comes back under $OUT: strategies.json/png, scores.json, retrain_archs.json,
# strategies_retrained.json/png, logs.
#   usage (device tool, carry .whl): bash scripts/device/strategies_gpu.sh [BUDGET=0.2287] [EVALS=48] [LIMIT_S=540]
#   STRATEGIES="random evolution nsga2 predictor" and SEEDS="0 1 2" by default (more seeds: a
#   permutation test over 3 seeds against 3 cannot go below p = 0.05). SEARCH_OPTIONS="KEY=VALUE
#   ..." changes the supernet's recipe (a shorter one: "trainer.max_epochs=20"), in a work folder
#   of its own; the supernet's search_seconds are printed for the cost ratios.
budget=${1:-0.22870199831546464}
evals=${2:-48}
limit=${3:-540}
strategies=${STRATEGIES:-random evolution nsga2 predictor}
seeds=${SEEDS:-0 1 2}
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
mkdir -p "$out"
work=/tmp/strategies_gpu${SEARCH_OPTIONS:+_$(echo "$SEARCH_OPTIONS" | md5sum | cut -c1-8)}
here=$work/budget_$budget
table=docs/study/h200_three/latency.json
deadline "$limit" strategies_gpu
ckpt=$(timeout -k 15 "$(left)" python3 scripts/device/train_supernet.py "$work" "$table" ${SEARCH_OPTIONS:-} \
  2>"$out/supernet.log" | tail -1)
[ -f "$ckpt" ] || { echo "strategies_gpu: the supernet is not trained yet (call again on the warm machine)"; tail -3 "$out/supernet.log"; exit 0; }
echo "strategies_gpu: supernet $ckpt ($(grep -o '"search_seconds": [0-9.]*' "$(dirname "$(dirname "$ckpt")")/search.json") ${SEARCH_OPTIONS:-h200_three recipe}), $(left) s left"
enough
timeout -k 15 "$(left)" python3 scripts/select_strategies.py "$ckpt" --data "$PWD/data/study_h200" --lut "$table" \
  --budget "$budget" --evaluations "$evals" --strategies $strategies --seeds $seeds --metric loss \
  --out "$here/bench" >"$out/select_strategies.log" 2>&1
cp "$here"/bench/*.json "$here"/bench/*.png "$out/" 2>/dev/null
[ -f "$here/bench/strategies.json" ] || { echo "strategies_gpu: the benchmark is not done (call again)"; exit 0; }
grep -A8 "distinct paths scored" "$out/select_strategies.log"
rm -rf "$here/picks"  # this benchmark's picks only
python3 - "$work" "$here" <<'EOF'
import json, sys
from pathlib import Path
from supernet.select.problem import path_of
from supernet.space import SearchSpace
sys.path.insert(0, "scripts")
from strategies_retrained import pick_name
space, here = SearchSpace.load(Path(sys.argv[1]) / "space.yaml"), Path(sys.argv[2])
(here / "picks").mkdir(exist_ok=True)
for pick in json.loads((here / "bench" / "strategies.json").read_text())["picks"]:
    if pick["path"]:
        name = pick_name(pick["strategy"], pick["seed"])
        space.derive(path_of(pick["path"], space.edges), name=name).to_yaml(here / "picks" / f"{name}.yaml")
EOF
enough
# the picks' retrains: RETRAIN_EPOCHS (12, as sessions 9-10 kept them; the shipped config has 24 since session 12)
timeout -k 15 "$(left)" python3 scripts/device/retrain_archs.py h200_three "$here/retrain" "$here"/picks/*.yaml \
  --parallel 36 --retrain-option "trainer.max_epochs=${RETRAIN_EPOCHS:-12}" >"$out/retrain.log" 2>&1
tail -13 "$out/retrain.log"
python3 scripts/strategies_retrained.py "$here/bench/strategies.json" "$out/retrain_archs.json" --out "$out"
