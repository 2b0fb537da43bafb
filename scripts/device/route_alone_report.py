"""The figures of ``route_alone.sh``: each run's own seconds (``train_seconds``, ``search_seconds``,
``select.json``'s ``seconds``) and wall seconds (process start to exit), and the route's ratio to
the retrain: the supernet and its select for both budgets (the study's 2x verdict), and for each
budget alone the supernet, the select's start and that budget's own seconds (``budget_seconds``).

    python3 scripts/device/route_alone_report.py WORK OUT_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    work, out = Path(sys.argv[1]), Path(sys.argv[2])
    select = json.loads((work / "select" / "select.json").read_text())
    own = {
        "retrain": json.loads((work / "retrain" / "metrics.json").read_text())["train_seconds"],
        "supernet": json.loads((work / "supernet" / "search.json").read_text())["search_seconds"],
        "select": select["seconds"],
    }
    wall = {path.stem: float(path.read_text()) for path in sorted(work.glob("*.wall"))}
    start = select["seconds"] - sum(select["budget_seconds"].values())
    result = {
        "own_seconds": own,
        "wall_seconds": wall,
        "budget_seconds": select["budget_seconds"],
        "ratios": {},
    }
    for kind, seconds in (("own", own), ("wall", wall)):
        # the select's start in wall seconds: its own start plus the process's (imports, loading)
        select_start = start + seconds["select"] - own["select"]
        routes = {"both budgets": seconds["supernet"] + seconds["select"]}
        routes.update(
            {b: seconds["supernet"] + select_start + s for b, s in select["budget_seconds"].items()}
        )
        result["ratios"][kind] = {name: round(s / seconds["retrain"], 3) for name, s in routes.items()}
        print(f"{kind} seconds: retrain {seconds['retrain']:.1f}, supernet {seconds['supernet']:.1f}, "
              f"select {seconds['select']:.1f} (its start {select_start:.1f})")  # fmt: skip
        print(f"  route / retrain: {result['ratios'][kind]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
