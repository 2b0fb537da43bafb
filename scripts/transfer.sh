#!/usr/bin/env bash
# Cross-language transfer (issue 19): search on one language of the built-in corpus, retrain the
# pick on another beside TDNN-D with the same recipe (the demo's: ST on st_nas, 4 + 8 search
# epochs, 15 retrain epochs), and print both rows. CPU, about 10 minutes on 2 cores.
#   usage: scripts/transfer.sh CORPUS OUT [SEARCH_LANG=en] [RETRAIN_LANG=es]
set -euo pipefail
corpus=${1:?usage: scripts/transfer.sh CORPUS OUT [SEARCH_LANG] [RETRAIN_LANG]}
out=${2:?usage: scripts/transfer.sh CORPUS OUT [SEARCH_LANG] [RETRAIN_LANG]}
from=${3:-en}
to=${4:-es}
common=(--data "$corpus" --seed_everything 0 --logger csv --trainer.enable_progress_bar false)
supernet search "${common[@]}" --data.langs "[$from]" --model.space st_nas --model.method st \
    --trainer.max_epochs 12 --model.warmup_epochs 4 --out "$out/search_$from"
for arch in "$out/search_$from/arch.yaml" tdnn_d; do
    name=$(basename "$arch" .yaml)
    supernet retrain "${common[@]}" --data.langs "[$to]" --trainer.max_epochs 15 --arch "$arch" \
        --out "$out/${name}_on_$to"
done
python3 - "$out" "$from" "$to" <<'PY'
import json, sys
from pathlib import Path
out, src, dst = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
print(f"| model | searched on | retrained on | params | dev CER | test CER ({dst}) | test WER |")
print("|---|---|---|---|---|---|---|")
for name, label in (("arch", f"ST pick of st_nas"), ("tdnn_d", "tdnn_d")):
    m = json.loads((out / f"{name}_on_{dst}" / "metrics.json").read_text())
    test = [k for k in m["cer"] if k != "dev"]
    cer = m["cer"].get(f"test_{dst}", m["cer"].get("test"))
    wer = m["wer"].get(f"test_{dst}", m["wer"].get("test"))
    print(f"| {label} | {src if name == 'arch' else '-'} | {dst} | {m['params']:,} | {100 * m['dev_cer']:.1f}% "
          f"| {100 * cer:.1f}% | {100 * wer:.1f}% |")
PY
