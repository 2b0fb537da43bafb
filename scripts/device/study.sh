#!/usr/bin/env bash
# A study in one device call: `supernet study CONFIG` with N runs side by side on the GPU, then
# what comes back under $OUT (at most 8 files): study.log, study.json, study.md, plots.tar.gz and
# runs.tar.gz (every run folder without checkpoints: logs, metrics.json, arch YAMLs, alphas).
#   usage (device tool, carry .whl): bash scripts/device/study.sh CONFIG [PARALLEL=24] [LIMIT_S=480]
# On the limit the study terminates its runs (SIGTERM; killed 70 s later): keep LIMIT_S + 70 + the
# copying under the call's limit, and start the next call while the machine is warm to resume.
# A study cut off by the end of a session resumes on a fresh machine from its runs.tar.gz: keep it
# in an ignored folder, carry it too and set STUDY_FROM=that/runs.tar.gz (it is unpacked into the
# study folder when that folder is not there yet; the searches and selects stay done, without
# checkpoints, and the scores and latencies the study kept stand). STUDY_DIR names the study folder
# (default /tmp/study_CONFIG); a resumed study needs the folder it ran in, since its runs name it.
# ALONE_RETRAIN=1 passes --alone-retrain: one more retrain timed alone at the end, against which the
# study judges a search that ran alone in its stage (the <= 2x target) although its retrains shared.
# ALONE_ROUTE=1 passes --alone-route: the first uniform supernet that has a select, its select and
# the retrain of the study's first pick of it timed again, one after another on this machine (the
# 2x target is then judged on them; a resumed study's own stages may have run on another machine).
# BEFORE_RETRAINS=1 passes --before-retrains: the call stops once the searches, selects, supernet
# scores and latencies are kept (what needs the checkpoints and this card); the retrains then run
# in a later call, on a fresh machine too (STUDY_FROM), when device time is short.
set -o pipefail
config=${1:?usage: scripts/device/study.sh CONFIG [PARALLEL] [LIMIT_S]}
parallel=${2:-24}
limit=${3:-480}
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
work=${STUDY_DIR:-/tmp/study_$(basename "$config" .yaml)}
if [ -n "${STUDY_FROM:-}" ]; then
  if [ -d "$work" ]; then
    echo "study: $work is there already: STUDY_FROM=$STUDY_FROM ignored"
  else  # unpacked beside it, then moved: a failed unpack leaves no half folder to resume from
    [ -f "$STUDY_FROM" ] || { echo "study: STUDY_FROM=$STUDY_FROM: no such file"; exit 1; }
    rm -rf "$work.unpack" && mkdir -p "$work.unpack" && tar -xzf "$STUDY_FROM" -C "$work.unpack" \
      && mv "$work.unpack" "$work" || { echo "study: could not unpack $STUDY_FROM"; rm -rf "$work.unpack"; exit 1; }
    echo "study: resumed from $STUDY_FROM into $work"
  fi
fi
start=$(date +%s)
timeout -k 70 "$limit" python3 -m supernet study "$config" --out "$work" --parallel "$parallel" ${ALONE_RETRAIN:+--alone-retrain} ${ALONE_ROUTE:+--alone-route} ${BEFORE_RETRAINS:+--before-retrains} >"$out/study.log" 2>&1
rc=$?  # 124: stopped at the limit (run the same call again while the machine is warm to resume)
echo "study: $(( $(date +%s) - start )) s, exit $rc" >>"$out/study.log"
# study.json, study.md and the plots only from a study that ran to its end: one cut short (or stopped
# before its retrains) may hold an earlier run's (a study grown by more seeds), which would pass for
# this one's (they stay in runs.tar.gz, the folder as it is)
if [ "$rc" = 0 ] && [ -z "${BEFORE_RETRAINS:-}" ]; then
  cp "$work"/study.json "$work"/study.md "$out"/ 2>/dev/null
  [ -d "$work/plots" ] && tar -czf "$out/plots.tar.gz" -C "$work" plots
fi
tar -czf "$out/runs.tar.gz" --exclude='*.ckpt' --exclude='checkpoints' -C "$work" . 2>/dev/null
tail -4 "$out/study.log"
