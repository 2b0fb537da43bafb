"""The free pick a search must beat: at each budget, the path with the most parameters among
uniform draws within the select's band (``--floor`` x budget to budget, the study's latency table).
Why: over the study's retrained networks the parameter count ranks stand-alone CER better than the
supernet (tau 0.43 against 0.13, ``docs/study/h200_route/study.md``), so a NAS tool should show its
pick beats this count at the same latency, not only random paths.

    python scripts/params_max_pick.py docs/study/h200_route --draws 200000 --out docs/study/h200_route/params_max

Writes ``params-max-LABEL.yaml`` per budget (retrain them with ``scripts/device/retrain_archs.py``)
and ``params_max.json`` (each pick's path, parameters and predicted latency).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from tqdm import tqdm

from supernet.latency.costs import param_costs
from supernet.latency.table import LatencyTable
from supernet.select.feasible import FeasibleSampler
from supernet.select.problem import key_of
from supernet.space import SearchSpace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a study folder: space.yaml, latency.json, study.json")
    parser.add_argument("--draws", type=int, default=200_000)
    parser.add_argument("--floor", type=float, default=0.8)
    parser.add_argument(
        "--vocab", type=int, default=38, help="the tokenizer's size (the study's: 38 characters)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    space = SearchSpace.load(args.study / "space.yaml")
    latency = LatencyTable.load(args.study / "latency.json").costs(space)
    params = param_costs(space, args.vocab)
    budgets = json.loads((args.study / "study.json").read_text())["budgets"]
    args.out.mkdir(parents=True, exist_ok=True)
    picks = {}
    for budget in budgets:
        label, ms = budget["budget"], budget["ms"]
        sampler, rng = FeasibleSampler(latency, ms, floor=args.floor * ms), random.Random(args.seed)
        best, seen = None, set()
        for _ in tqdm(range(args.draws), desc=f"draws within {label}", leave=False, mininterval=2):
            path = sampler(rng)
            if path is None or key_of(path) in seen:
                continue
            seen.add(key_of(path))
            candidate = (params.at(path), -latency.at(path), key_of(path))
            best = max(best or candidate, candidate)
        count, minus_ms, key = best
        path = dict(zip(space.edges, map(int, key.split("-"))))
        spec = space.derive(path, name=f"params-max-{label}")
        spec.to_yaml(args.out / f"params-max-{label}.yaml")
        picks[label] = {"path": key, "params": count, "latency_ms": -minus_ms, "budget_ms": ms,
                        "distinct_draws": len(seen), "layers": list(spec.layers)}  # fmt: skip
        print(f"{label} ({ms:.3f} ms): {count / 1e6:.2f} M parameters at {-minus_ms:.3f} ms "
              f"(best of {len(seen)} distinct paths in the band): {' '.join(spec.layers)}")  # fmt: skip
    (args.out / "params_max.json").write_text(json.dumps(picks, indent=1))


if __name__ == "__main__":
    main()
