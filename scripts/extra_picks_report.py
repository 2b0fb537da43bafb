"""Another search's picks judged against a kept study's baselines and random paths: was the study's
pick one lucky run of its route? (issue 16: the study ran its route once)

The picks are ``scripts/device/retrain_archs.py`` rows, retrained with the study's recipe and seeds
(``scripts/device/retrain_extras.sh``). Each is named ``...-LABEL`` after the study budget it was picked
for, and joins that budget's rows as a searched row; the verdicts of ``supernet.study.verdict``
are then judged for it against the study's own rows, as they were, beside the study's own picks,
and tallied per budget (``verdict.tally``). Its latency is the study's table's prediction.

    python scripts/extra_picks_report.py docs/study/h200_route/study.json \
        docs/study/h200_route/route2/retrain_archs.json --out docs/study/h200_route/route2/verdicts.md

Several pick files are judged together, and tallied as one (each pick named apart).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from supernet.archspec import ArchSpec
from supernet.latency.table import LatencyTable
from supernet.study import verdict
from supernet.study.report import cer_cell


def budget_of(name: str, labels: list[str]) -> str:
    """The study budget a pick's name ends with (the longest label that fits: ``0.5xbudget`` before
    ``budget``)."""
    found = sorted((label for label in labels if name.endswith(f"-{label}")), key=len, reverse=True)
    if not found:
        raise SystemExit(f"{name}: its name ends with none of the study's budgets {labels}")
    return found[0]


def judged(study: dict, picks: dict, table: LatencyTable, method: str) -> tuple[list[dict], list[dict]]:
    """The finished picks as searched rows of their budgets (``method`` names how they were picked),
    and the pick verdicts of every searched row, the study's own and these, against the study's
    other rows."""
    budgets = {b["budget"]: b["ms"] for b in study["budgets"]}
    others = study["rows"]
    names = [p["name"] for p in picks["rows"]]
    clash = ({r["name"] for r in others} & set(names)) | {n for n in names if names.count(n) > 1}
    if clash:
        raise SystemExit(
            f"{sorted(clash)}: rows of the study already, or twice among the picks; name them apart"
        )
    rows = []
    for pick in picks["rows"]:
        if not pick.get("retrain_seeds"):
            print(f"{pick['name']}: no retrain seed finished, left out")
            continue
        label = budget_of(pick["name"], list(budgets))
        spec = ArchSpec.from_dict(pick["arch"])
        rows.append({
            **pick, "kind": "searched", "method": method, "budget": label,
            "budget_ms": budgets[label], "predicted_ms": table.predict(spec),
        })  # fmt: skip
    summary = {**study, "rows": others + rows, "ranking": [], "costs": None}
    return rows, [v for v in verdict.judge(summary) if v.get("budget") is not None]


def markdown(rows: list[dict], verdicts: list[dict]) -> str:
    sets = [s for s in rows[0]["cer"] if s != "dev"]
    lines = [
        "| budget | name | params | predicted ms | retrain seeds | dev CER % | "
        + " | ".join(f"{s} CER %" for s in sets)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(sets),
        *(
            f"| {r['budget']} | `{r['name']}` | {r['params']:,} | {r['predicted_ms']:.3f} | {r['retrain_seeds']} | "
            + " | ".join(cer_cell(r, s) for s in ["dev", *sets])
            + " |"
            for r in rows
        ),
    ]
    return "\n".join(lines + [""] + verdict.markdown(verdicts)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="the study's study.json (its latency.json beside it)")
    parser.add_argument("picks", type=Path, nargs="+",
                        help="retrain_archs.py's JSON of the picks (several: one tally over them all)")  # fmt: skip
    parser.add_argument(
        "--method", default="uniform+predictor", help="how the picks were made (the rows' method)"
    )
    parser.add_argument("--prefix", default="", help="put before each pick's name: picks of another recipe "
                        "named as the study's own (uniform-s0-any-...) judged apart from them")  # fmt: skip
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    study = json.loads(args.study.read_text())
    table = LatencyTable.load(args.study.parent / "latency.json")
    picks = {"rows": [{**row, "name": args.prefix + row["name"]}
                      for path in args.picks for row in json.loads(path.read_text())["rows"]]}  # fmt: skip
    rows, verdicts = judged(study, picks, table, args.method)
    if not rows:
        raise SystemExit(f"{', '.join(map(str, args.picks))}: no pick has a finished retrain seed")
    text = markdown(rows, verdicts)
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
