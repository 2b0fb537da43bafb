#!/usr/bin/env bash
# Issue-3 acceptance on a GPU: build a few hours of the synthetic corpus, train the conformer_s
# baseline for a fixed wall-clock budget, and print its metrics.json.
#   usage: scripts/gpu_conformer.sh OUT_DIR [MINUTES_OF_AUDIO=180] [TRAIN_TIME=00:00:05:00]
set -euo pipefail
out=${1:?usage: scripts/gpu_conformer.sh OUT_DIR [MINUTES] [TRAIN_TIME]}
minutes=${2:-180}
train_time=${3:-00:00:05:00}
workers=$(nproc)
corpus=${CORPUS_DIR:-/tmp/corpus_${minutes}m}
start=$(date +%s)
python3 -m supernet corpus --out "$corpus" --minutes "$minutes" --workers "$workers"
echo "corpus: $(( $(date +%s) - start )) s for $minutes minutes of audio"
python3 -m supernet retrain --arch conformer_s --data "$corpus" --out "$out/conformer_s" \
  --logger csv --trainer.max_epochs 400 --trainer.max_time "$train_time" --trainer.enable_progress_bar false \
  --trainer.log_every_n_steps 20 --data.max_frames 60000 --data.num_workers $(( workers > 12 ? 12 : workers )) \
  --model.lr 2e-3 --model.warmup_steps 300 --early_stopping.patience 1000
python3 - "$out/conformer_s/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"dev WER {m['dev_wer']:.3f}  dev CER {m['dev_cer']:.3f}  epochs {m['epochs']}  train {m['train_seconds']:.0f} s  params {m['params']:,}")
for name in m["cer"]:
    print(f"  {name:<10} WER {m['wer'][name]:.3f}  CER {m['cer'][name]:.3f}")
PY
