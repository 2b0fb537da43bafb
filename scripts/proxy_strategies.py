"""Run the select strategies on a proxy of a supernet's score: a Gaussian process fit on the paths
a GPU benchmark scored (``select_strategies.py``'s ``scores.json``), so that strategy settings can
be compared here before device time is spent on them. A simulation, not a measurement: a GP proxy
is smooth and favours model-based strategies; only a GPU run says which strategy wins.

    python scripts/proxy_strategies.py docs/study/h200_three/select_bench_gpu/scores.json \
        --space docs/study/h200_three/space.yaml --table docs/study/h200_three/latency.json \
        --budget 0.2287 --evaluations 48 --strategies random evolution nsga2 predictor
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from tqdm import tqdm

from supernet.latency.table import LatencyTable
from supernet.select.feasible import FeasibleSampler
from supernet.select.predictor import build_predictor
from supernet.select.problem import Problem, key_of, path_of
from supernet.select.strategies.base import build_strategy
from supernet.space import SearchSpace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores", type=Path, help="a scores.json cache of GPU-scored paths")
    parser.add_argument("--space", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--budget", type=float, required=True)
    parser.add_argument("--evaluations", type=int, default=48)
    parser.add_argument("--strategies", nargs="+", default=["random", "evolution", "nsga2", "predictor"])
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    space = SearchSpace.load(args.space)
    costs = LatencyTable.load(args.table).costs(space)
    edges = {name: len(cands) for name, cands in space.edges.items()}
    cached = json.loads(args.scores.read_text())["scores"]
    known = [(path_of(k, edges), v) for k, v in cached.items() if math.isfinite(v)]
    proxy = build_predictor("gp", edges, lambda path: [costs.at(path)], seed=0)
    proxy.fit([path for path, _ in known], [score for _, score in known])
    memo: dict[str, float] = {}

    def score(path):
        key = key_of(path)
        if key not in memo:
            memo[key] = float(proxy.predict([path])[0])
        return memo[key]

    print(f"proxy: a GP on {len(known)} scored paths; budget {args.budget}, {args.evaluations} evaluations")
    for name in args.strategies:
        ends = []
        for seed in tqdm(range(args.seeds), desc=name, leave=False):
            problem = Problem(
                edges, score, costs.at, args.budget, sampler=FeasibleSampler(costs, args.budget)
            )
            build_strategy(name, {}).run(problem, args.evaluations, seed)
            best = problem.best()
            ends.append(best[1] if best else math.inf)
        print(
            f"{name:<10} best proxy score: {statistics.mean(ends):.4f} ± {statistics.pstdev(ends):.4f} ({args.seeds} seeds)"
        )


if __name__ == "__main__":
    main()
