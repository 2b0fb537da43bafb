"""The figures of ``route_alone.sh``: each run's own seconds (``train_seconds``, ``search_seconds``,
``select.json``'s ``seconds``) and wall seconds (process start to exit), and the route's ratio to
the retrain for each budget (the supernet and that budget's select) and for both (the supernet and
both selects, which counts the select's start twice: never flattered).

    python3 scripts/device/route_alone_report.py WORK OUT_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    work, out = Path(sys.argv[1]), Path(sys.argv[2])
    own = {
        "retrain": json.loads((work / "retrain" / "metrics.json").read_text())["train_seconds"],
        "supernet": json.loads((work / "supernet" / "search.json").read_text())["search_seconds"],
    }
    wall = {path.stem: float(path.read_text()) for path in sorted(work.glob("*.wall"))}
    selects = sorted(name for name in wall if name.startswith("select_"))
    for name in selects:
        own[name] = json.loads((work / name / "select.json").read_text())["seconds"]
    result = {"own_seconds": own, "wall_seconds": wall, "ratios": {}}
    for kind, seconds in (("own", own), ("wall", wall)):
        routes = {name.removeprefix("select_"): seconds["supernet"] + seconds[name] for name in selects}
        routes["both budgets"] = seconds["supernet"] + sum(seconds[name] for name in selects)
        result["ratios"][kind] = {budget: round(s / seconds["retrain"], 3) for budget, s in routes.items()}
        print(f"{kind} seconds: retrain {seconds['retrain']:.1f}, supernet {seconds['supernet']:.1f}, "
              + ", ".join(f"{n} {seconds[n]:.1f}" for n in selects))  # fmt: skip
        print(f"  route / retrain: {result['ratios'][kind]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
