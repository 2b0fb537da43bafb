"""How long must a network train before its rank shows? Kendall tau between each network's dev CER
after epoch e of its stand-alone retrain and its final dev CER, for every e, from retrains kept
apart from a study (a study's own `study.md` has the same section).

Any cheap score of a path (the supernet's inherited loss, a fine-tune of a few steps, the first
rung of successive halving) is a short training in disguise; this measures how well short
training can rank at all on the corpus and recipe at hand (``supernet.study.rank.rank_by_epoch``).

Reads ``retrain_archs.py`` JSONs (rows with ``dev_cer_by_epoch``: each seed's dev CER after every
epoch, then the final pass). A seed's curve counts only when it holds every epoch: a run resumed
before the CSV logger kept its earlier rows logged only the epochs after its resume. A network
named in several files is taken from the first file that holds a complete curve of it.

    python scripts/rank_by_epoch.py docs/study/h200_three/retrain_length/retrain_side.json \
        docs/study/h200_three/finalists/retrain_archs.json --out docs/study/h200_three/rank_by_epoch
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from supernet.loggers import can_plot, pyplot
from supernet.outputs import atomic_write_json
from supernet.study import rank, report


def from_files(files: list[Path]) -> dict:
    """``rank.rank_by_epoch`` of the files' rows, with the networks left out (no complete curve)."""
    rows = [r for f in files for r in json.loads(f.read_text())["rows"]]
    curves = rank.complete_curves(rows)
    return {
        "files": [str(f) for f in files],
        "left_out": sorted({r["name"] for r in rows} - set(curves)),
        **rank.rank_by_epoch(curves),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", type=Path, nargs="+", help="retrain_archs.py JSONs")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = from_files(args.files)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "rank_by_epoch.json", result)
    left = (
        f"\nLeft out ({len(result['left_out'])}: no seed logged every epoch, or the same runs as another row): "
        + ", ".join(result["left_out"]) + ".\n"
        if result["left_out"] else ""
    )  # fmt: skip
    text = "\n".join(report.rank_by_epoch_lines(result, every=True)[1:]).replace("## ", "# ", 1) + "\n" + left
    (args.out / "rank_by_epoch.md").write_text(text)
    if can_plot("rank_by_epoch.png"):
        report.save_figure(report.rank_by_epoch_figure(pyplot(), result), args.out / "rank_by_epoch.png")
    print(text)


if __name__ == "__main__":
    main()
