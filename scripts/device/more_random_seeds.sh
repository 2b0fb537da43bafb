#!/usr/bin/env bash
# Seeds 3-5 of the 8 random paths of h200_route's 0.422 ms budget, in two halves of 4 networks (12
# retrains side by side each), so that a call cut short still brings the first half back:
# $OUT/random_0to3.json and $OUT/random_4to7.json (retrain_archs.py's rows). Then
#   python scripts/more_seeds_report.py ... re-judges the top quartile with 6 seeds of everyone.
#   usage (device tool, carry .whl): bash scripts/device/more_random_seeds.sh [LIMIT_S=470]
source scripts/device/setup.sh
deadline "${1:-470}" more_random_seeds
study_corpus h200_route
arch=docs/study/h200_route/arch/random-0.5xbudget_conformer_s
for half in "0 1 2 3" "4 5 6 7"; do
  enough
  name=random_${half:0:1}to${half: -1}
  timeout -k 20 "$(left)" python3 scripts/device/retrain_archs.py h200_route /tmp/$name \
    $(for i in $half; do echo "$arch-$i.yaml"; done) --parallel 12 --seeds 3 4 5 2>&1 | grep -v "^INFO\|warn" | tail -12
  [ -f "$OUT/retrain_archs.json" ] && mv "$OUT/retrain_archs.json" "$OUT/$name.json"
done
echo "more_random_seeds: $(( $(left) )) s of the limit left"
