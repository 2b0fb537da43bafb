#!/usr/bin/env bash
# The DDP commands of docs/benchmarks.md and docs/interfaces.md, run as a user types them, on two
# GPUs of one host: an ST search (CUDA graphs, sample_ahead), a uniform supernet, select scoring
# across both GPUs, and a retrain of the ST pick. tests/test_ddp_cli.py covers the same on two CPU
# processes; this is the check that the GPUs (NCCL, graphs) agree.
#   usage (device tool, kind nvidia-h100-x2, carry .whl): bash scripts/device/ddp_cli.sh [MINUTES=20]
minutes=${1:-20}
source scripts/device/setup.sh
out=${OUT:-/tmp/out}
work=/tmp/ddp_cli
mkdir -p "$out" "$work"
nvidia-smi --query-gpu=name --format=csv,noheader
# python3 -c, not a script on stdin: the corpus's spawned render workers cannot import '<stdin>'
python3 -c "from supernet.data.corpus import build_corpus; build_corpus('$work/corpus', langs=('en',), minutes=$minutes, seed=0)" 2>&1 | tail -1
supernet() { python3 -m supernet "$@" 2>&1 | grep -v -i warn >>"$out/ddp_cli.log"; echo "supernet $1: exit ${PIPESTATUS[0]}"; }
two=(--trainer.devices 2 --trainer.strategy ddp --trainer.enable_progress_bar false --data "$work/corpus")
supernet search "${two[@]}" --out "$work/st" --model.cuda_graphs true --data.pad_frames 32 \
    --model.method_options '{sample_ahead: true}' --trainer.max_epochs 3 --model.warmup_epochs 1
supernet search "${two[@]}" --out "$work/uniform" --model.method uniform --trainer.max_epochs 2
ckpt=$(find "$work/uniform" -name "*.ckpt" | head -1)
supernet select "$ckpt" --data "$work/corpus" --strategy random --target params --budget 1e9 \
    --evaluations 8 --devices 2 --out "$work/select"
supernet retrain "${two[@]}" --arch "$work/st/arch.yaml" --out "$work/retrain" --model.cuda_graphs true \
    --trainer.max_epochs 2
for run in st uniform retrain; do cp "$work/$run/run.json" "$out/run_$run.json" 2>/dev/null; done
cp "$work/select/select.json" "$out/" 2>/dev/null
grep -E "batches/epoch|rank|picked|dev_cer|Error" "$out/ddp_cli.log" | tail -20
