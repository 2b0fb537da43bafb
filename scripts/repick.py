"""Pick a finished search's architecture again, from its ``search.json`` (the final probabilities),
under another rule or budget: for searches whose checkpoints stayed on another machine (a study
copied back without them). ``supernet extract CKPT --pick RULE`` is the same pick from a checkpoint.

    python scripts/repick.py docs/study/h200_three/search_st-s0-budget_tdnn_d.json \
        --space docs/study/h200_three/space.yaml --table docs/study/h200_three/latency.json \
        --budget 0.2287 --pick depth -o docs/study/h200_three/depth/st-s0-budget_tdnn_d-depth.yaml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from supernet.latency.costs import PICK_RULES, choose_path
from supernet.latency.table import LatencyTable
from supernet.search.extract import drop_for
from supernet.space import SearchSpace


def repick(search: dict, space: SearchSpace, table: Path | None, budget: float | None, pick: str):
    """``(choices, cost)``: the path the search's final probabilities pick under ``pick``, within
    ``budget`` on ``table``'s costs (cost None without a table)."""
    probs = search["probs"]
    missing = sorted(set(space.edges) - set(probs))
    if missing:
        raise SystemExit(
            f"the search's probabilities lack edge(s) {', '.join(missing)} of space {space.name!r}"
        )
    alphas = {name: torch.tensor(probs[name], dtype=torch.float64).log() for name in space.edges}
    costs = LatencyTable.load(table).costs(space) if table else None
    choices = choose_path(alphas, costs, budget, drop_for(space, pick))
    return choices, (costs.at(choices) if costs else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("search_json", help="a search's search.json (its 'probs')")
    parser.add_argument("--space", required=True, help="the space the search ran on (a study's space.yaml)")
    parser.add_argument("--table", default=None, help="the latency table the budget is on")
    parser.add_argument("--budget", type=float, default=None, help="ms; needs --table")
    parser.add_argument("--pick", choices=PICK_RULES, default="depth")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--name", default=None, help="default: the output file's stem")
    args = parser.parse_args()
    if args.budget is not None and not args.table:
        parser.error("--budget needs --table")
    space = SearchSpace.load(args.space)
    search = json.loads(Path(args.search_json).read_text())
    choices, cost = repick(search, space, args.table, args.budget, args.pick)
    spec = space.derive(choices, name=args.name or Path(args.output).stem)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    spec.to_yaml(args.output)
    for name, k in choices.items():
        print(f"{name}: {space.edges[name][k]}  (p={search['probs'][name][k]:.2f})")
    print(f"{args.pick} pick{'' if cost is None else f': {cost:.3f} ms'}; written {args.output}")


if __name__ == "__main__":
    main()
