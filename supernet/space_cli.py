"""`supernet space info SPACE`: how big a search space is, before any search runs."""

from __future__ import annotations

import argparse

import ops
from supernet.space import SearchSpace


def _params(spec: str, in_dim: int, out_dim: int) -> int:
    return sum(p.numel() for p in ops.build(spec, in_dim, out_dim).parameters())


def space_summary(space: SearchSpace, vocab_size: int) -> dict:
    """Number of paths, the smallest and largest path's params, the candidates of each edge."""
    f = space.fields
    dim = f["dim"]
    fixed = _params(f["input"], f["feature_dim"], dim) + _params(f["head"], dim, vocab_size)
    low = high = fixed
    edges = {}
    for layer in space.layers:
        if isinstance(layer, str):
            n = _params(layer, dim, dim)
            low, high = low + n, high + n
            continue
        counts = {c: _params(c, dim, dim) for c in layer.candidates}
        low, high = low + min(counts.values()), high + max(counts.values())
        edges[layer.name] = counts
    return {
        "name": space.name,
        "paths": space.num_paths,
        "params_min": low,
        "params_max": high,
        "edges": edges,
    }


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="space_command", required=True)
    info = sub.add_parser("info", help="paths, params range and candidates of a space")
    info.add_argument("space", help="a space YAML or a shipped name (st_nas, conformer, mixed)")
    info.add_argument("--vocab", type=int, default=64, help="vocabulary size for the head's params")


def run(args: argparse.Namespace) -> int:
    space = SearchSpace.from_yaml(args.space)
    s = space_summary(space, args.vocab)
    print(f"space: {s['name']} ({space.source})")
    print(f"paths: {s['paths']:,}")
    print(f"params: {s['params_min']:,} .. {s['params_max']:,} (vocabulary {args.vocab})")
    layer_no = 0
    for layer in space.layers:
        if isinstance(layer, str):
            print(f"  fixed   {layer}")
            continue
        cands = ", ".join(f"{c} ({n / 1e3:.0f}k)" for c, n in s["edges"][layer.name].items())
        print(f"  {layer.name:<7} {cands}")
        layer_no += 1
    return 0
