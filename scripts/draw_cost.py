"""What a drawn path costs on average under uniform's ``draw_weights``, from a latency table: a
recipe that draws the heavy attention blocks more often makes every supernet step dearer, and
issue 16's "search + select <= 2x one retrain" left the shipped x3 recipe 2% (session 28). Per
recipe: the expected FLOPs of a drawn path (the training's compute at large batches) and the
table's expected ms (one utterance at inference), each against the first recipe's.
``--route-cost`` scales a measured ``route_cost.json`` (the first recipe's, ``ALONE=1``) by the
FLOPs ratio: an estimate of the other recipes' ratio to one retrain, holding the select and the
retrain as they were, and the supernet's epochs that would hold 2x (``--epochs``: the route's 20).
It is no measurement: even draws' route measured 1.76x (session 20, another machine and pick)
where this estimates 1.71x from x3's; a recipe is decided by its own ``ALONE=1`` call.

    python scripts/draw_cost.py docs/study/h200_route/space.yaml docs/study/h200_route/latency.json \
        x3='{former: 3, down: 0.3333}' even={} x8='{former: 8, down: 0.125, e96: 0.125}' \
        --route-cost docs/study/h200_route/fullrate_x3/alone/route_cost.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

from supernet.latency import LatencyTable
from supernet.search.relaxations.uniform import Uniform
from supernet.space import SearchSpace


def draw_probs(space: SearchSpace, draw_weights: dict[str, float]) -> dict[str, torch.Tensor]:
    """Each edge's draw probabilities: uniform's own weights (``Uniform.edge_probs``), normalised."""
    weights = Uniform(draw_weights=draw_weights).edge_probs(SimpleNamespace(labels=space.edges))
    return {edge: w / w.sum() for edge, w in weights.items()}


def recipe_costs(space: SearchSpace, table: LatencyTable, recipes: dict[str, dict]) -> dict[str, dict]:
    """Each recipe's expected FLOPs and ms of a drawn path, and both against the first recipe's."""
    costs = {
        name: {m: float(table.expected(space, draw_probs(space, w), m)) for m in ("flops", "ms")}
        for name, w in recipes.items()
    }
    first = next(iter(costs.values()))
    for cost in costs.values():
        cost.update({f"{m}_ratio": cost[m] / first[m] for m in ("flops", "ms")})
    return costs


def parse_recipe(text: str) -> tuple[str, dict[str, float]]:
    name, sep, weights = text.partition("=")
    parsed = yaml.safe_load(weights) if sep else None
    if not sep or not isinstance(parsed, dict):
        raise SystemExit(f"recipe {text!r}: write NAME=YAML_MAPPING, e.g. x3='{{former: 3, down: 0.3333}}'")
    return name, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("space", type=Path)
    parser.add_argument("table", type=Path, help="the study's latency.json (its FLOPs per op)")
    parser.add_argument("recipes", nargs="+", help="NAME=YAML draw weights; the first is the reference")
    parser.add_argument("--route-cost", type=Path, help="the first recipe's route_cost.json (ALONE=1)")
    parser.add_argument("--epochs", type=int, default=20, help="the supernet's epochs in that route")
    args = parser.parse_args()
    space, table = SearchSpace.load(args.space), LatencyTable.load(args.table)
    costs = recipe_costs(space, table, dict(parse_recipe(r) for r in args.recipes))
    measured = json.loads(args.route_cost.read_text()) if args.route_cost else None
    print("| recipe | GFLOPs of a drawn path | x first | table ms | x first |"
          + (" estimated route / retrain | supernet epochs for 2x |" if measured else ""))  # fmt: skip
    print("|---|---|---|---|---|" + ("---|---|" if measured else ""))
    for name, c in costs.items():
        row = f"| {name} | {c['flops'] / 1e9:.3f} | {c['flops_ratio']:.2f} | {c['ms']:.3f} | {c['ms_ratio']:.2f} |"
        if measured:
            supernet = measured["supernet_seconds"] * c["flops_ratio"]
            ratio = (supernet + measured["select_seconds"]) / measured["retrain_seconds"]
            epochs = args.epochs * (2 * measured["retrain_seconds"] - measured["select_seconds"]) / supernet
            row += f" {ratio:.2f}x | {epochs:.1f} |"
        print(row)


if __name__ == "__main__":
    main()
