"""`supernet space info SPACE [--lut TABLE]`: how big a search space is, before any search runs;
with a latency table, the cheapest and dearest path's latency, the range a budget can take."""

from __future__ import annotations

import argparse

from supernet.latency import param_costs
from supernet.space import SearchSpace


def space_summary(space: SearchSpace, vocab_size: int) -> dict:
    """Number of paths, the smallest and largest path's params, the candidates of each edge."""
    costs = param_costs(space, vocab_size)
    low, high = costs.cheapest(), costs.dearest()  # the same walk as a latency table's range below
    edges = {name: dict(zip(space.edges[name], map(int, c))) for name, c in costs.edges.items()}
    return {
        "name": space.name,
        "paths": space.num_paths,
        "params_min": int(low),
        "params_max": int(high),
        "edges": edges,
    }


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="space_command", required=True)
    info = sub.add_parser("info", help="paths, params range and candidates of a space")
    info.add_argument("space", help="a space YAML or a shipped name (st_nas, conformer, mixed)")
    info.add_argument("--vocab", type=int, default=64, help="vocabulary size for the head's params")
    info.add_argument("--lut", help="a latency table (`supernet profile`): the range of path latencies")


def run(args: argparse.Namespace) -> int:
    space = SearchSpace.from_yaml(args.space)
    s = space_summary(space, args.vocab)
    print(f"space: {s['name']} ({space.source})")
    print(f"paths: {s['paths']:,}")
    print(f"params: {s['params_min']:,} .. {s['params_max']:,} (vocabulary {args.vocab})")
    if args.lut:
        from supernet.latency import LatencyTable

        costs = LatencyTable.load(args.lut).costs(space)
        print(
            f"latency: {costs.cheapest():g} .. {costs.dearest():g} {costs.metric} ({args.lut}): a budget lies in this range"
        )
    for layer in space.layers:
        if isinstance(layer, str):
            print(f"  fixed   {layer}")
            continue
        cands = ", ".join(f"{c} ({n / 1e3:.0f}k)" for c, n in s["edges"][layer.name].items())
        print(f"  {layer.name:<7} {cands}")
    return 0
