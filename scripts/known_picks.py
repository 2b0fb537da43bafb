"""Which of a select's finalists were retrained already, anywhere under a study's folder: each
budget's finalists (the select's pick marked) matched, by their whole ArchSpec but the name,
against every retrained row kept there (``retrain_archs.json``, ``study.json``). Why: supernets of
one recipe often pick the same network (session 31: six supernets, four distinct picks at
0.844 ms), so a pick already retrained needs no device time, and its supernet's verdict is that
retrain's. A row matches by its network alone: compare rows of one retrain recipe (all of
``h200_route``'s are 24 epochs; ``h200_three`` holds 12- and 24-epoch ones and shorter recipes).

    python scripts/known_picks.py docs/study/h200_route/size_prior/seed*/select.json \
        --space docs/study/h200_route/space.yaml --under docs/study/h200_route
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from size_repick import finalist_specs, labelled_spec  # scripts/, beside this file

from supernet.archspec import ArchSpec
from supernet.space import SearchSpace
from supernet.study.plan import arch_key


def retrained_rows(under: Path) -> dict[str, list[tuple[Path, dict]]]:
    """Every retrained row with its ArchSpec under ``under``, by ``arch_key``: ``(file, row)``.
    Rows without seeds finished (a cut call) are left out."""
    known: dict[str, list[tuple[Path, dict]]] = {}
    for path in sorted(under.rglob("*.json")):
        if path.name not in ("retrain_archs.json", "study.json"):
            continue
        for row in json.loads(path.read_text()).get("rows", []):
            if isinstance(row.get("arch"), dict) and row.get("retrain_seeds") and row.get("cer"):
                known.setdefault(arch_key(ArchSpec.from_dict(row["arch"])), []).append((path, row))
    return known


def known_finalists(select: dict, space: SearchSpace, known: dict) -> list[dict]:
    """Per budget with finalists: each finalist's place, whether the select picked it, and the
    retrained rows of the same network."""
    out = []
    for best in select["best"]:
        if not best.get("finalists"):
            continue
        own = arch_key(labelled_spec(best, space))
        finalists = [
            {"index": i, "picked": arch_key(spec) == own, "rows": known.get(arch_key(spec), [])}
            for i, spec in enumerate(finalist_specs(best, space))
        ]
        out.append({"budget": best["budget"], "finalists": finalists})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("selects", type=Path, nargs="+", help="select.json files with --finalists")
    parser.add_argument("--space", type=Path, required=True, help="the study's space.yaml")
    parser.add_argument("--under", type=Path, required=True, help="the folder whose retrains are searched")
    parser.add_argument("--split", nargs="+", default=["dev", "test"])
    args = parser.parse_args()
    space = SearchSpace.load(args.space)
    known = retrained_rows(args.under)
    for select_file in args.selects:
        for entry in known_finalists(json.loads(select_file.read_text()), space, known):
            print(f"{select_file}, budget {entry['budget']:g}:")
            for finalist in entry["finalists"]:
                mark = " <- select" if finalist["picked"] else ""
                if not finalist["rows"]:
                    print(f"  {finalist['index']}{mark}: never retrained")
                for path, row in finalist["rows"]:
                    cer = "  ".join(f"{s} {100 * row['cer'][s]:.2f}" for s in args.split if s in row["cer"])
                    print(
                        f"  {finalist['index']}{mark}: {path.relative_to(args.under)} {row['name']}"
                        f" ({row['retrain_seeds']} seeds): {cer}"
                    )


if __name__ == "__main__":
    main()
