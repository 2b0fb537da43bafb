# Sourced at the start of a device call: installs the wheels carried in .whl (what the device
# image lacks: jsonargparse, jiwer, soundfile, espeakng-loader, wordfreq, optuna and their needs;
# scripts/device/wheels.sh fills .whl),
# once per machine (flock: two scripts started side by side in one call install them once).
(
  flock 9
  if [ ! -f /tmp/site/.installed ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 \
      | grep -v "Running pip as the 'root'"
    touch /tmp/site/.installed
  fi
) 9>/tmp/site.lock
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 WANDB_MODE=offline
# study_corpus CONFIG: the study's corpus, built once before runs started side by side race to
# build it. python3 -c, not a script on stdin: the spawned render workers cannot import '<stdin>'.
study_corpus() {
  python3 -c "import sys; sys.path.insert(0, 'scripts/device'); from study_pieces import study_with; \
from supernet.study import plan; plan.prepare_corpus(study_with(sys.argv[1], []))" "$1" 2>&1 | tail -1
}
python3 -c "import jsonargparse, docstring_parser, typeshed_client, jiwer, soundfile, espeakng_loader, wordfreq, optuna" || exit 1
# deadline LIMIT_S NAME: from now, `left` prints the seconds left of LIMIT_S, and `enough` ends the
# script (status 0, saying so as NAME) when 30 s or fewer are left: call again on the warm machine.
deadline() { deadline_limit=$1; deadline_name=$2; deadline_start=$(date +%s); }
left() { echo $(( deadline_limit - ($(date +%s) - deadline_start) )); }
enough() { [ "$(left)" -gt 30 ] || { echo "$deadline_name: $(left) s left, too little (call again)"; exit 0; }; }
# all_done JSON SEEDS: every network of retrain_archs.py's JSON has SEEDS finished seeds
all_done() { [ -f "$1" ] && python3 -c "import json, sys; sys.exit(any(r['retrain_seeds'] != int(sys.argv[2]) for r in json.load(open(sys.argv[1]))['rows']))" "$1" "$2"; }
# pack_out: the device brings back at most 8 files of $OUT; when more are there (two seeds' picks
# side by side: up to 10), pack them all into $OUT/out.tar, which comes back whole (tar -xf here).
pack_out() {
  [ "$(find "$OUT" -type f | wc -l)" -le 8 ] && return 0
  tar -C "$OUT" -cf /tmp/out.tar . && rm -rf "${OUT:?}"/* && mv /tmp/out.tar "$OUT/"
}
