"""Does the supernet's ranking improve along its training, and does a path's learning curve in the
supernet tell which networks train further alone? (issue 16: Kendall tau >= 0.5 is missed)

The 20-epoch uniform supernet ranks 50 retrained networks at tau 0.22 (dev loss, its own BatchNorm
statistics; session 15), and it under-rates the networks with full-rate attention blocks, which
learn slower and end better when trained alone for 24 epochs. This trains that supernet once more
with a checkpoint kept after every epoch and scores every retrained network of the given reports
from the checkpoints of EPOCHS (BatchNorm as the supernet kept it: 0 batches by default). It writes
each network's scores by epoch; ``scripts/score_by_epoch_report.py`` reads them on any machine
(tau by epoch, and of each path's curve extrapolated).

    bash -c 'source scripts/device/setup.sh && python3 scripts/device/score_by_epoch.py /tmp/by_epoch \
        docs/study/h200_three/latency.json docs/study/h200_three/retrain_length/report_24_epochs.json \
        docs/study/h200_three/finalists/retrain_archs.json \
        docs/study/h200_three/finalists_halving/retrain_archs.json \
        docs/study/h200_three/finalists_floor/retrain_archs.json'

Writes ``$OUT/score_by_epoch.json``. A script file (spawned corpus workers cannot import '<stdin>').
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from study_pieces import retrained, scorer_parser, write_result  # scripts/device, beside this file
from train_supernet import train

from supernet.study import rank

EPOCH_IN_NAME = re.compile(r"epoch=(\d+)")  # Lightning's default file name: epoch=E-step=S.ckpt (E from 0)


def checkpoints_by_epoch(folder: Path) -> dict[int, Path]:
    """The kept checkpoints of ``folder`` by the number of epochs trained (1 for ``epoch=0``)."""
    found = {}
    for path in sorted(
        folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime
    ):  # a rerun epoch's -v1: the newer
        match = EPOCH_IN_NAME.search(path.name)
        if match:
            found[int(match.group(1)) + 1] = path
    return found


def main() -> None:
    parser = scorer_parser(__doc__)
    parser.add_argument("--epochs", type=int, nargs="+", default=[4, 8, 12, 16, 20])
    parser.add_argument("--batches", type=int, default=0)
    args = parser.parse_args()
    options = [
        "trainer.max_epochs=20", "model.warmup_epochs=10",  # the 2x route's supernet
        "checkpoint.save_top_k=-1", "checkpoint.every_n_epochs=1",  # every epoch kept
    ]  # fmt: skip
    last, data = train(args.work, args.table, options)
    kept = checkpoints_by_epoch(last.parent)
    missing = [e for e in args.epochs if e not in kept]
    if missing:
        raise SystemExit(
            f"score_by_epoch: no checkpoint after epoch(s) {missing} in {last.parent}: {sorted(kept)}"
        )
    specs, cer, _ = retrained(*args.reports)
    by_epoch = []
    for epoch in args.epochs:
        began = time.perf_counter()
        scores = rank.supernet_scores(kept[epoch], data, specs, args.batches, weights="trained")
        scores = {n: s for n, s in scores.items() if n in cer}
        [quality], _, _ = rank.ranking_quality({epoch: scores}, cer, "loss")
        entry = {"epoch": epoch, "seconds": round(time.perf_counter() - began, 1), "scores": scores}
        entry |= {f"tau_{m}": quality["by_metric"].get(m) for m in ("loss", "cer")}
        by_epoch.append(entry)
        print(
            f"epoch {epoch:2d}: tau loss {entry['tau_loss']:.3f}, cer {entry['tau_cer']:.3f} over {len(scores)} "
            f"({entry['seconds']} s)",
            flush=True,
        )
    result = {"ckpt": str(last), "reports": [str(r) for r in args.reports], "batches": args.batches,
              "retrained_dev_cer": cer, "by_epoch": by_epoch}  # fmt: skip
    write_result("score_by_epoch.json", result)


if __name__ == "__main__":
    main()
