"""The free pick a search must beat: at each budget, the path with the most parameters among
uniform draws within the select's band (``--floor`` x budget to budget, the study's latency table).
Why: over the study's retrained networks the parameter count ranks stand-alone CER better than the
supernet (tau 0.43 against 0.13, ``docs/study/h200_route/study.md``), so a NAS tool should show its
pick beats this count at the same latency, not only random paths.

    python scripts/params_max_pick.py docs/study/h200_route --draws 200000 --out docs/study/h200_route/params_max

Writes ``params-max-LABEL.yaml`` per budget (retrain them with ``scripts/device/retrain_archs.py``)
and ``params_max.json`` (each pick's path, parameters and predicted latency). The pick is
``supernet.study.plan.most_parameters_path``, what a study's ``controls.params_max`` retrains.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from supernet.latency.costs import param_costs
from supernet.latency.table import LatencyTable
from supernet.space import SearchSpace
from supernet.study.plan import most_parameters_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a study folder: space.yaml, latency.json, study.json")
    parser.add_argument("--draws", type=int, default=200_000)
    parser.add_argument("--floor", type=float, help="the band's floor (default: the study's select.floor)")
    parser.add_argument(
        "--vocab", type=int, default=38, help="the tokenizer's size (the study's: 38 characters)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    space = SearchSpace.load(args.study / "space.yaml")
    latency = LatencyTable.load(args.study / "latency.json").costs(space)
    params = param_costs(space, args.vocab)
    kept = json.loads((args.study / "study.json").read_text())
    budgets = kept["budgets"]
    floor = args.floor if args.floor is not None else (kept["config"].get("select") or {}).get("floor")
    args.out.mkdir(parents=True, exist_ok=True)
    picks = {}
    for budget in budgets:
        label, ms = budget["budget"], budget["ms"]
        path, note = most_parameters_path(space, latency, ms, floor, args.draws, args.seed)
        if path is None:
            raise SystemExit(note)
        spec = space.derive(path, name=f"params-max-{label}")
        spec.to_yaml(args.out / f"params-max-{label}.yaml")
        picks[label] = {"path": "-".join(map(str, path.values())), "params": params.at(path),
                        "latency_ms": latency.at(path), "budget_ms": ms, "floor": floor, "draws": args.draws,
                        "layers": list(spec.layers)}  # fmt: skip
        print(f"{label} ({ms:.3f} ms): {picks[label]['params'] / 1e6:.2f} M parameters at "
              f"{picks[label]['latency_ms']:.3f} ms: {' '.join(spec.layers)}")  # fmt: skip
    (args.out / "params_max.json").write_text(json.dumps(picks, indent=1))


if __name__ == "__main__":
    main()
