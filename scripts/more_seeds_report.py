"""A study's verdicts again with more retrain seeds of some of its networks: does a verdict read
off 3 seeds hold with 6? (issue 16: the 5% margins are near the seeds' spread)

The extra seeds are ``scripts/device/retrain_archs.py`` files, run with the study's recipe and other
``--seeds`` on the study's arch YAMLs (their names are the study's row names). Their rows are pooled
with the study's by name (``finalists_report.pooled_rows``: the mean and sample std over every
seed, the per-seed CER kept for the permutation tests) and every verdict of ``supernet.study.verdict``
is judged again; the rows without extra seeds stay as the study measured them.

    python scripts/more_seeds_report.py docs/study/h200_route/study.json \
        docs/study/h200_route/more_seeds.json --out docs/study/h200_route/more_seeds.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finalists_report import pooled_rows, with_reruns  # scripts/, beside this file

from supernet.study import verdict
from supernet.study.report import cer_cell


def rejudged(study: dict, more: list[dict]) -> dict:
    """The study with each network of ``more`` carrying its pooled seeds, in every budget it sits."""
    first = {}
    for row in study["rows"]:  # a baseline is a row of each budget it fits: one network, one set of seeds
        first.setdefault(row["name"], row)
    own = {"retrain": study["config"]["retrain"], "rows": list(first.values())}
    unknown = {r["name"] for doc in more for r in doc["rows"]} - set(first)
    if unknown:
        raise ValueError(f"not rows of the study: {sorted(unknown)} (name the study's arch YAMLs)")
    pooled = pooled_rows([own, *more])
    return with_reruns(study, {r["name"]: pooled[r["name"]] for doc in more for r in doc["rows"]})


def markdown(study: dict, more: list[dict]) -> str:
    """The pooled rows and the verdicts judged on them."""
    summary = rejudged(study, more)
    names = {r["name"] for doc in more for r in doc["rows"]}
    sets = [s for s in next(iter(summary["rows"]))["cer"] if s != "dev"]
    lines = [
        "| budget | name | kind | retrain seeds | dev CER % | "
        + " | ".join(f"{s} CER %" for s in sets)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(sets),
    ]
    for row in (r for r in summary["rows"] if r["name"] in names):
        cells = [cer_cell(row, s) for s in ["dev", *sets]]
        lines.append(
            f"| {row['budget']} | `{row['name']}` | {row['kind']} | {row['retrain_seeds']} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines + [""] + verdict.markdown(verdict.judge(summary))) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="the study's study.json")
    parser.add_argument("more", type=Path, nargs="+", help="retrain_archs.py files of other seeds")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    text = markdown(json.loads(args.study.read_text()), [json.loads(p.read_text()) for p in args.more])
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
