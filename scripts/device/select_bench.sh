#!/usr/bin/env bash
# Issue 17's strategy benchmark in the background of a study call: waits for the study's own
# select (so the uniform supernet is trained and the budgets resolved), then runs
# scripts/select_strategies.py at the first budget on that supernet. The cache (scores.json) stays
# in /tmp/select_bench, so a call stopped by its limit resumes on the warm machine.
#   usage: bash scripts/device/select_bench.sh STUDY_DIR [EVALUATIONS=64] [LIMIT_S=480]
study=${1:?usage: scripts/device/select_bench.sh STUDY_DIR [EVALUATIONS] [LIMIT_S]}
evaluations=${2:-64}
limit=${3:-480}
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
bench=/tmp/select_bench
start=$(date +%s)
select_json=$(ls "$study"/select/*/select.json 2>/dev/null | head -1)
until [ -n "$select_json" ]; do
  [ $(( $(date +%s) - start )) -ge "$limit" ] && { echo "select_bench: no select.json yet" >"$out/select_bench.log"; exit 0; }
  sleep 10
  select_json=$(ls "$study"/select/*/select.json 2>/dev/null | head -1)
done
IFS=$'\t' read -r budget ckpt data lut < <(python3 -c "import json,sys; s = json.load(open(sys.argv[1]))
print(s['best'][0]['budget'], s['ckpt'], s['data'], s['lut'] or '', sep='\t')" "$select_json")
left=$(( limit - ($(date +%s) - start) ))
[ "$left" -ge 30 ] || { echo "select_bench: ${left} s left, too little" >"$out/select_bench.log"; exit 0; }
echo "select_bench: $ckpt budget $budget, ${left} s left" >"$out/select_bench.log"
timeout -k 20 "$left" python3 scripts/select_strategies.py "$ckpt" --data "$data" \
  ${lut:+--lut "$lut"} --budget "$budget" --evaluations "$evaluations" \
  --strategies random evolution nsga2 --seeds 0 1 2 --metric loss --out "$bench" >>"$out/select_bench.log" 2>&1
echo "select_bench: exit $?" >>"$out/select_bench.log"
mkdir -p "$out/select_bench" && cp "$bench"/*.json "$bench"/*.png "$out/select_bench/" 2>/dev/null
