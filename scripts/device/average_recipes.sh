#!/usr/bin/env bash
# Does the weight average (model.weight_average) raise the uniform supernet's ranking (issues 16
# and 17), and does it let a cheaper supernet rank as well (issue 16's 2x)? Two recipes of
# average_ranking.py side by side on the one GPU (their taus do not depend on sharing it; their
# search_seconds do, so time the chosen recipe alone afterwards):
#   A: the 20-epoch route of session 10 (20 epochs, 10 warm-up, batches of 20,000 frames);
#   B: the same epochs in batches of 60,000 frames, the retrain's batch size (a third of A's steps),
#      the retrain's lr 2e-3, and 150 warm-up steps (the supernet's 500 for a third of the steps).
# The corpus is built first, once, so the two do not race to build it.
#   usage (device tool, carry .whl): bash scripts/device/average_recipes.sh "A_DECAYS" "B_DECAYS"
decays_a=${1:-0.98 0.995}
decays_b=${2:-0.99 0.998}
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
mkdir -p "$out"
study_corpus h200_three
common=(--table docs/study/h200_three/latency.json --report docs/study/h200_three/study.json
        --search-option trainer.max_epochs=20 --search-option model.warmup_epochs=10)
# shellcheck disable=SC2086  # the decays are meant to split into words
python3 scripts/device/average_ranking.py h200_three /tmp/average_a --out "$out/A" "${common[@]}" \
    --decay $decays_a >"$out/A.log" 2>&1 &
# shellcheck disable=SC2086
python3 scripts/device/average_ranking.py h200_three /tmp/average_b --out "$out/B" "${common[@]}" \
    --search-option data.max_frames=60000 --search-option model.lr=0.002 \
    --search-option model.warmup_steps=150 --decay $decays_b >"$out/B.log" 2>&1 &
wait
for run in A B; do
    echo "== $run"
    grep -E "^decay|^ +[0-9.]+ +[0-9.]+|Error|error" "$out/$run.log" | tail -12
done
