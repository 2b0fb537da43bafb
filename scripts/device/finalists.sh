#!/usr/bin/env bash
# Does fine-tuning a few finalists alone (`supernet select --finalists`) pick better networks than
# the supernet's score alone (issue 16: at 0.841 ms no pick of the score beat Conformer-S by 5%
# after 24-epoch retrains, session 12)? In steps that each resume on the warm machine:
#   1. the 20-epoch uniform supernet (train_supernet.py; 1.63x one 24-epoch retrain with its select);
#   2. per seed of SEEDS, `supernet select` (predictor, 48 candidates) at BUDGET with --finalists
#      FINALISTS --finetune-steps STEPS: its select.json holds the score's own pick (the first
#      finalist) and the finalists' pick;
#   3. every finalist of every seed (the score's pick is the first, the finalists' pick is
#      select.json's best path) retrained for 24 epochs x the study's 3 seeds (retrain_archs.py),
#      side by side: does the fine-tuned score order them better than the inherited one? Compare
#      them with Conformer-S's 21.7% test CER at 24 epochs (docs/study/h200_three/retrain_length/).
#      Before them, the first seed's score pick retrained alone gives the cost ratio on this
#      machine, fine-tunes included ($OUT/route_cost.json).
#   usage (device tool, carry .whl): bash scripts/device/finalists.sh [BUDGET=0.841] [LIMIT_S=540]
#   SEEDS="0 1 2", FINALISTS=4, STEPS=48 (about one epoch of 20,000-frame batches) by default;
#   HALVING=1 spends the same steps by successive halving, FINALISTS=8 STEPS=12 by default (8 at
#   12, 4 at 24, 2 at 48), and retrains the score's pick and the last two of each seed. FLOOR=0.8
#   selects within a band: paths of at least 0.8 x the budget (--floor). Each variant (finalists,
#   steps, halving, floor, budget) selects in folders of its own from the one supernet. PICKS_ONLY=1
#   retrains only the score's pick and the finalists' pick of each seed (half the device time).
#   BASELINE=docs/study/h200_three/arch/budget_tdnn_d.yaml retrains a baseline beside the picks.
#   BATCHES=N re-estimates BatchNorm on N train batches before scoring (default 4; 0 keeps the
#   supernet's own statistics, which ranked 50 retrained networks better: docs/results.md, session 15).
#   COST=0 skips the cost measurement (the retrain alone, with the GPU to itself): for a variant
#   whose cost another variant's route_cost.json already approximates (the same supernet; the
#   select's and the pick's seconds change with the budget and floor).
budget=${1:-0.8409086691601766}
limit=${2:-540}
seeds=${SEEDS:-0 1 2}
halving=()
if [ "${HALVING:-0}" = 1 ]; then
  halving=(--halving); finalists=${FINALISTS:-8}; steps=${STEPS:-12}
else
  finalists=${FINALISTS:-4}; steps=${STEPS:-48}
fi
floor=()
[ -n "${FLOOR:-}" ] && floor=(--floor "$FLOOR")
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
mkdir -p "$out"
# a call brings back 8 files at most: the logs and the picks' YAMLs travel as one archive when the
# script ends, stops on an error or is stopped by a signal it can catch (a SIGTERM, too, exits)
trap 'cd "$out" && tar -czf logs.tgz --remove-files $(ls -d *.log picks 2>/dev/null) 2>/dev/null' EXIT
trap 'exit 143' TERM INT
deadline "$limit" finalists
work=/tmp/finalists
picks_only=0
[ "${PICKS_ONLY:-0}" = 1 ] && picks_only=1
variant=b$budget-k$finalists-n$steps${halving:+-halving}${FLOOR:+-floor$FLOOR}  # its selects, picks and cost: select-VARIANT-sS, ...
[ "$picks_only" = 1 ] && variant+=-picks
batches=${BATCHES:-4}
[ "$batches" = 4 ] || variant+=-bn$batches
table=docs/study/h200_three/latency.json
ckpt=$(timeout -k 15 "$(left)" python3 scripts/device/train_supernet.py "$work/supernet" "$table" \
  trainer.max_epochs=20 model.warmup_epochs=10 2>"$out/supernet.log" | tail -1)
[ -f "$ckpt" ] || { echo "finalists: the supernet is not trained yet (call again)"; exit 0; }
picks=$work/picks-$variant
mkdir -p "$picks"
for seed in $seeds; do
  select=$work/select-$variant-s$seed
  # a finished select whose picks are written is not run again (its select.json is read)
  if grep -q '"status": "done"' "$select/run.json" 2>/dev/null && [ -f "$picks/s$seed.done" ]; then
    cp "$select/select.json" "$out/select-s$seed.json"; continue
  fi
  enough
  timeout -k 15 "$(left)" python3 -m supernet select "$ckpt" --data "$PWD/data/study_h200" --lut "$table" \
    --budget "$budget" --strategy predictor --evaluations 48 --seed "$seed" --batches "$batches" --metric loss \
    --finalists "$finalists" --finetune-steps "$steps" "${halving[@]}" "${floor[@]}" --out "$select" >"$out/select-s$seed.log" 2>&1 \
    || { echo "finalists: select seed $seed stopped (call again)"; tail -3 "$out/select-s$seed.log"; exit 0; }
  cp "$select/select.json" "$out/select-s$seed.json"
  python3 -c "
import json, sys
from pathlib import Path
from supernet.space import SearchSpace
from supernet.select.problem import path_of
select, picks, seed = json.load(open(sys.argv[1])), Path(sys.argv[2]), sys.argv[3]
space, picks_only = SearchSpace.load(sys.argv[4]), sys.argv[5] == '1'
[best] = select['best']
# every finalist that reached the last rung (or, with PICKS_ONLY, the finalists' pick alone), and
# the score's pick (the first finalist), retrained once however many seeds chose it
# (finalist-KEY.yaml); the finalists' pick is best['path']
last = max(f['finetune_steps'] for f in best['finalists'])
kept = (lambda f: f['path'] == best['path']) if picks_only else (lambda f: f['finetune_steps'] == last)
for finalist in [f for i, f in enumerate(best['finalists']) if i == 0 or kept(f)]:
    key = finalist['path']
    spec = space.derive(path_of(key, space.edges), name=f'finalist-{key}')
    spec.to_yaml(picks / f'finalist-{key}.yaml')
print(f'seed {seed}: the score picks', best['finalists'][0]['path'], '; the finalists', best['path'],
      '; fine-tuned in', select['finetune_seconds'], 's')
" "$select/select.json" "$picks" "$seed" "$work/supernet/space.yaml" "$picks_only" \
    || { echo "finalists: seed $seed's picks were not written"; exit 1; }
  touch "$picks/s$seed.done"
done
mkdir -p "$out/picks" && cp "$picks"/*.yaml "$out/picks/"
recipe=(--retrain-option trainer.max_epochs=24 --retrain-option trainer.max_time=00:01:00:00)
# the cost: the first seed's score pick retrained once with the GPU to itself, against the
# supernet and that seed's select (its fine-tunes included), on this machine
if [ "${COST:-1}" = 0 ]; then
  echo "finalists: COST=0, no cost measured"
elif [ ! -f "$work/route_cost-$variant.json" ]; then
  enough
  select=$work/select-$variant-s${seeds%% *}
  first=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['best'][0]['finalists'][0]['path'])" "$select/select.json")
  rm -f "$out/retrain_archs.json"
  timeout -k 15 "$(left)" python3 scripts/device/retrain_archs.py h200_three "$work/alone" \
    "$picks/finalist-$first.yaml" --parallel 1 --seeds 0 "${recipe[@]}" >"$out/alone.log" 2>&1
  all_done "$out/retrain_archs.json" 1 || { echo "finalists: the retrain alone is not done (call again)"; exit 0; }
  mv "$out/retrain_archs.json" "$out/retrain_alone.json"
  python3 scripts/device/route_cost.py "$out/retrain_alone.json" "$ckpt" "$select/select.json" "$work/route_cost-$variant.json" 24
fi
[ -f "$work/route_cost-$variant.json" ] && cp "$work/route_cost-$variant.json" "$out/route_cost.json"
enough
# BASELINE=ARCH.yaml retrains that baseline beside the picks, on the same machine and seeds: pass
# the same retrain_archs.json to finalists_report.py as --baseline-again too
baseline=()
[ -n "${BASELINE:-}" ] && baseline=("$BASELINE")
timeout -k 70 "$(left)" python3 scripts/device/retrain_archs.py h200_three "$work/retrain" "$picks"/*.yaml \
  "${baseline[@]}" --parallel 36 "${recipe[@]}" >"$out/retrain.log" 2>&1
grep -E "seeds [0-9]" "$out/retrain.log"
