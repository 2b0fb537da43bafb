#!/usr/bin/env bash
# Is the study's 12-epoch retrain long enough, and does issue 16's 20-epoch route still win, and
# within "<= 2x one retrain", when every network is retrained for EPOCHS epochs?
#   1. side by side, 36 at a time (retrain_archs.py): both baselines, the 20-epoch route's eight
#      picks (session 10: evolution and predictor x search seeds 0, 1 at 0.841 and 0.420 ms), the
#      study's uniform + evolution picks and its 8 random paths per budget, each x the study's three
#      retrain seeds, for EPOCHS epochs; each seed's dev CER after every epoch comes back;
#   2. once all are done, with the GPU to itself: one pick retrained for EPOCHS (seed 0), the
#      20-epoch uniform supernet, and `supernet select` (predictor, 48 candidates, one budget):
#      the route's cost ratio, in $OUT/route_cost.json.
# Each step resumes on the warm machine (call again with the same arguments).
#   usage (device tool, carry .whl): bash scripts/device/retrain_length.sh [EPOCHS=24] [LIMIT_S=560]
epochs=${1:-24}
limit=${2:-560}
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
mkdir -p "$out"
deadline "$limit" retrain_length
work=/tmp/retrain_length_$epochs
table=docs/study/h200_three/latency.json
budget=0.8409086691601766
recipe=(--retrain-option "trainer.max_epochs=$epochs" --retrain-option trainer.max_time=00:01:00:00)
study_corpus h200_three
# the 20-epoch picks share names across budgets: renamed by budget, in a folder of their own
mkdir -p "$work/archs"
short=docs/study/h200_three/short_recipes/20_epochs_uniform
for b in 0.841 0.420; do
  for f in "$short/budget_$b"/picks/*.yaml; do
    name="short$b-$(basename "$f" .yaml)"
    sed "s/^name: .*/name: $name/" "$f" >"$work/archs/$name.yaml"
  done
done
arch=docs/study/h200_three/arch
archs=("$arch"/budget_conformer_s.yaml "$arch"/budget_tdnn_d.yaml "$work"/archs/*.yaml
       "$arch"/uniform-s0-any-evolution-budget_conformer_s.yaml "$arch"/uniform-s0-any-evolution-0.5xbudget_conformer_s.yaml
       "$arch"/random-budget_conformer_s-?.yaml "$arch"/random-0.5xbudget_conformer_s-?.yaml)
rm -f "$out/retrain_archs.json"  # a stale one must not pass for this call's
enough
timeout -k 70 "$(left)" python3 scripts/device/retrain_archs.py h200_three "$work/side" "${archs[@]}" \
  --parallel 36 "${recipe[@]}" >"$out/retrain.log" 2>&1
grep -E "seeds [0-9]" "$out/retrain.log" | tail -30
all_done "$out/retrain_archs.json" 3 || { echo "retrain_length: the retrains are not all done (call again)"; exit 0; }
mv "$out/retrain_archs.json" "$out/retrain_side.json"
# 2. the costs, one at a time
enough
timeout -k 15 "$(left)" python3 scripts/device/retrain_archs.py h200_three "$work/alone" \
  "$work/archs/short0.841-pick-evolution-s1.yaml" --parallel 1 --seeds 0 "${recipe[@]}" >"$out/alone.log" 2>&1
all_done "$out/retrain_archs.json" 1 || { echo "retrain_length: the retrain alone is not done (call again)"; exit 0; }
mv "$out/retrain_archs.json" "$out/retrain_alone.json"
enough
ckpt=$(timeout -k 15 "$(left)" python3 scripts/device/train_supernet.py "$work/supernet" "$table" \
  trainer.max_epochs=20 model.warmup_epochs=10 2>"$out/supernet.log" | tail -1)
[ -f "$ckpt" ] || { echo "retrain_length: the supernet is not trained yet (call again)"; exit 0; }
enough
timeout -k 15 "$(left)" python3 -m supernet select "$ckpt" --data "$PWD/data/study_h200" --lut "$table" \
  --budget "$budget" --strategy predictor --evaluations 48 --seed 0 --batches 4 --metric loss \
  --out "$work/select" >"$out/select.log" 2>&1 || { echo "retrain_length: select stopped (call again)"; tail -3 "$out/select.log"; exit 0; }
cp "$work/select/select.json" "$out/" 2>/dev/null
python3 scripts/device/route_cost.py "$out/retrain_alone.json" "$ckpt" "$work/select/select.json" "$out/route_cost.json" "$epochs"
