"""A study's verdicts again with more retrain seeds of some of its networks: does a verdict read
off 3 seeds hold with 6? (issue 16: the 5% margins are near the seeds' spread)

The extra seeds are ``scripts/device/retrain_archs.py`` files, run with the study's recipe and other
``--seeds`` on the study's arch YAMLs (their names are the study's row names). Their rows are pooled
with the study's by network (``plan.arch_key``: every row of it, whatever its name and budget;
``finalists_report.pooled_rows``: the mean and sample std over every seed, the per-seed CER kept
for the permutation tests) and the searched picks' verdicts of
``supernet.study.verdict`` are judged again; the rows without extra seeds stay as the study
measured them.

    python scripts/more_seeds_report.py docs/study/h200_route/study.json \
        docs/study/h200_route/more_seeds.json --out docs/study/h200_route/more_seeds.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finalists_report import pooled_rows, with_reruns  # scripts/, beside this file

from supernet.archspec import ArchSpec
from supernet.study import verdict
from supernet.study.plan import arch_key
from supernet.study.report import cer_cell

STALE = ("dev_cer_by_epoch", "dev_cer_late_drop")  # one seed group's curve, not the pooled row's


def rejudged(study: dict, more: list[dict]) -> tuple[dict, set[str]]:
    """The study with every row of a network that got extra seeds carrying its pooled seeds (a
    baseline sits in each budget it fits, a random draw can equal another network: one retrain,
    several rows), its verdicts judged again; and the names of those rows."""
    key = {r["name"]: arch_key(ArchSpec.from_dict(r["arch"])) for r in study["rows"]}
    unknown = {r["name"] for doc in more for r in doc["rows"]} - set(key)
    if unknown:
        raise ValueError(f"not rows of the study: {sorted(unknown)} (name the study's arch YAMLs)")
    if not all((doc.get("retrain") or {}).get("seeds") for doc in [study["config"], *more]):
        raise ValueError(
            "every file needs its retrain seeds (retrain.seeds): a seed counted twice would go unseen"
        )
    first = {}  # one row a network, under the first name it has
    for row in study["rows"]:
        first.setdefault(key[row["name"]], row)
    own = {"retrain": study["config"]["retrain"], "rows": list(first.values())}
    as_first = [
        {**doc, "rows": [{**r, "name": first[key[r["name"]]]["name"]} for r in doc["rows"]]} for doc in more
    ]
    pooled = pooled_rows([own, *as_first])
    extended = {key[r["name"]] for doc in more for r in doc["rows"] if r.get("retrain_seeds")}
    reruns = {n: pooled[first[k]["name"]] for n, k in key.items() if k in extended}
    summary = with_reruns(study, reruns)
    for row in (r for r in summary["rows"] if r["name"] in reruns):
        for field in STALE:
            row.pop(field, None)
    summary["verdicts"] = verdict.judge(summary)
    return summary, set(reruns)


def markdown(study: dict, more: list[dict]) -> str:
    """The rows that got extra seeds, then the verdicts on the searched picks judged with them
    (the ranking and cost verdicts do not depend on retrain seeds)."""
    summary, extended = rejudged(study, more)
    sets = [s for s in next(iter(summary["rows"]))["cer"] if s != "dev"]
    lines = [
        "| budget | name | kind | retrain seeds | dev CER % | "
        + " | ".join(f"{s} CER %" for s in sets)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(sets),
    ]
    for row in (r for r in summary["rows"] if r["name"] in extended):
        cells = [cer_cell(row, s) for s in ["dev", *sets]]
        lines.append(
            f"| {row['budget']} | `{row['name']}` | {row['kind']} | {row['retrain_seeds']} | "
            + " | ".join(cells)
            + " |"
        )
    searched = {r["name"] for r in summary["rows"] if r["kind"] == "searched"}
    picks = [v for v in summary["verdicts"] if v["subject"] in searched]
    return "\n".join(lines + [""] + verdict.markdown(picks)) + "\n"


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
