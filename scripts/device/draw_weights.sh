#!/usr/bin/env bash
# Does drawing attention blocks more often (uniform's draw_weights) stop a 20-epoch uniform
# supernet under-rating them (docs/results.md, session 11)? Two weightings side by side on the one
# GPU, each a 20-epoch supernet of h200_three's recipe scored on the study's retrained networks by
# average_ranking.py (decay 0.995: the average is kept, both columns printed). Compare their taus,
# and scripts/ranking_breakdown.py on what comes back, with recipe A of average_recipes.sh.
# (Session 11's run of this drew evenly: the module dropped draw_weights until session 24. Session
# 24 measured the weights on h200_route with supernet_recipes.py --round 3: no better ranking.)
#   usage (device tool, carry .whl): [WEIGHTS=trained] bash scripts/device/draw_weights.sh ["former: 2, down: 0.5" ...]
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name --format=csv,noheader
study_corpus h200_three
common=(--table docs/study/h200_three/latency.json --report docs/study/h200_three/study.json --decay 0.995
        --weights ${WEIGHTS:-trained average}
        --search-option trainer.max_epochs=20 --search-option model.warmup_epochs=10)
[ $# -gt 0 ] || set -- "former: 2, down: 0.5" "former: 4, down: 0.25"
for weights in "$@"; do
    name=$(echo "$weights" | tr -dc '0-9a-z.')
    python3 scripts/device/average_ranking.py h200_three "/tmp/draw_$name" --out "$out/$name" "${common[@]}" \
        --search-option "model.method_options={draw_weights: {$weights}}" >"$out/$name.log" 2>&1 &
done
wait
for log in "$out"/*.log; do echo "== $log"; grep -E "^decay|^ +0|Error" "$log" | tail -6; done
