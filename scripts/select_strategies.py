"""Do the discrete strategies beat random selection at the same number of scored candidates?

Runs several `supernet select` strategies, each with several seeds, over ONE trained supernet and
one budget, and compares the best score each has found after n evaluations (issue 17's target,
"evolution and NSGA-II beat random selection at the same number of scored candidates, on the
supernet score"). A path's score depends only on the checkpoint and the scoring batches, so every
run reads and fills one shared cache (``OUT/scores.json``): a path two runs propose is scored once,
and an interrupted benchmark resumes from it.

    python scripts/select_strategies.py CKPT --data D --budget 20 --evaluations 40 \
        --strategies random evolution nsga2 tpe --seeds 0 1 2 --out runs/strategies

``--replay SPACE`` runs the strategies again from a cache alone, with no checkpoint (one scored on
a machine that is gone): the same seeds propose the same paths, and a run that asks for a path the
cache lacks stops there and is left out (named in the output).

Prints, per strategy, the mean (and spread) over seeds of the best score after a quarter, half and
all of the evaluations, and how many seeds beat random's mean at the end; writes
``OUT/strategies.json`` and ``OUT/strategies.png`` (best score against evaluations).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from tqdm import tqdm

from supernet.latency.table import LatencyTable
from supernet.outputs import atomic_write_json
from supernet.select.feasible import FeasibleSampler
from supernet.select.problem import Problem, key_of
from supernet.select.score import SupernetScorer
from supernet.select.strategies.base import build_strategy
from supernet.space import SearchSpace


class NotCached(Exception):
    """A replay asked for a path its cache lacks."""


def best_curve(problem: Problem, evaluations: int) -> list[float]:
    """Best feasible objective after each of the first ``evaluations`` distinct scored paths."""
    curve, seen, best = [], set(), math.inf
    for h in problem.history:
        key = key_of(h["path"])
        if not math.isfinite(h["score"]) or key in seen:
            continue
        seen.add(key)
        best = min(best, h["objective"])
        curve.append(best)
    return (curve + [best] * evaluations)[:evaluations] if curve else [math.inf] * evaluations


def summarise(curves: dict[str, list[list[float]]], evaluations: int) -> dict[str, dict]:
    marks = sorted({max(1, evaluations // 4), max(1, evaluations // 2), evaluations})
    random_end = statistics.mean(c[-1] for c in curves["random"]) if "random" in curves else None
    table = {}
    for name, runs in curves.items():
        row = {}
        for n in marks:
            values = [c[n - 1] for c in runs]
            row[f"best@{n}"] = statistics.mean(values)
            row[f"std@{n}"] = statistics.pstdev(values)
        if random_end is not None and name != "random":
            row["beat_random"] = sum(c[-1] < random_end for c in runs)
        table[name] = row
    return table


def plot(out: Path, curves: dict[str, list[list[float]]]) -> None:
    from supernet.loggers import can_plot, pyplot

    if not can_plot("strategies.png"):
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, runs in curves.items():
        mean = [statistics.mean(step) for step in zip(*runs)]
        ax.plot(range(1, len(mean) + 1), mean, label=f"{name} (mean of {len(runs)} seeds)")
    ax.set_xlabel("distinct paths scored")
    ax.set_ylabel("best supernet score so far")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "strategies.png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt")
    parser.add_argument("--data", required=True)
    parser.add_argument("--budget", type=float, help="latency budget (ms) from the checkpoint's table")
    parser.add_argument("--lut", help="a latency table other than the checkpoint's")
    parser.add_argument("--evaluations", type=int, default=40)
    parser.add_argument("--strategies", nargs="+", default=["random", "evolution", "nsga2", "tpe"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=4, help="train batches that re-estimate BatchNorm")
    parser.add_argument("--metric", choices=["cer", "loss"], default="loss")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--replay", type=Path, metavar="SPACE",
        help="the supernet's space YAML: replay from OUT/scores.json alone (ckpt and --data are then "
        "only names; needs --lut)",
    )  # fmt: skip
    parser.add_argument(
        "--rejection", action="store_true",
        help="draw feasible paths by rejection from the whole space, as before FeasibleSampler (a "
        "replay follows the cache's own record, and a cache without one was drawn so)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cache_file = args.out / "scores.json"
    if args.replay:
        if not args.lut or not cache_file.is_file():
            parser.error(f"--replay needs --lut and a cache {cache_file}")
        space = SearchSpace.load(args.replay)
        costs = LatencyTable.load(args.lut).costs(space)
        cache = json.loads(cache_file.read_text())
        settings, scores = cache["settings"], cache["scores"]  # as they were scored
        args.rejection = args.rejection or cache.get("draws", "rejection") == "rejection"

        def score_fn(path):
            if key_of(path) not in scores:
                raise NotCached(key_of(path))
            return scores[key_of(path)]
    else:
        from supernet.commands.select import _costs

        space, _, costs = _costs(args.ckpt, "latency", args.lut)
        settings = {"ckpt": str(Path(args.ckpt).resolve()), "data": str(Path(args.data).resolve()),
                    "batches": args.batches, "metric": args.metric}  # fmt: skip
        scores: dict[str, float] = {}
        if cache_file.is_file():
            kept = json.loads(cache_file.read_text())
            if kept.get("settings") == settings:
                scores = kept["scores"]
        scorer = SupernetScorer(args.ckpt, args.data, args.batches, metric=args.metric)

        def score_fn(path):
            scores[key_of(path)] = scorer(path)
            atomic_write_json(cache_file, {"settings": settings, "draws": draws, "scores": scores})
            return scores[key_of(path)]

    draws = "rejection" if args.rejection else "feasible"  # how the runs drew their paths: a replay needs it
    edges = {name: len(cands) for name, cands in space.edges.items()}
    curves: dict[str, list[list[float]]] = {}
    picks, unfinished = [], []
    runs = [(name, seed) for name in args.strategies for seed in args.seeds]
    for name, seed in tqdm(runs, desc="strategy x seed"):
        sampler = (
            FeasibleSampler(costs, args.budget) if args.budget is not None and not args.rejection else None
        )
        problem = Problem(edges, score_fn, costs.at, args.budget, stored=scores, sampler=sampler)
        try:
            build_strategy(name, {}).run(problem, args.evaluations, seed)
        except NotCached:
            unfinished.append(f"{name} seed {seed}")
            continue
        curves.setdefault(name, []).append(best_curve(problem, args.evaluations))
        best = problem.best()
        picks.append({"strategy": name, "seed": seed, "path": key_of(best[0]) if best else None,
                      "score": best[1] if best else None})  # fmt: skip
    if unfinished:
        print(f"left out, their paths not all in the cache: {', '.join(unfinished)}")
    table = summarise(curves, args.evaluations)
    every = [s for s in scores.values() if math.isfinite(s)]
    print(f"\n{len(every)} distinct paths scored in all ({args.metric}); space {space.name}, "
          f"{space.num_paths:,} paths; budget {args.budget}")  # fmt: skip
    columns = list(dict.fromkeys(c for row in table.values() for c in row))
    print(f"{'strategy':<12}" + "".join(f"{c:>14}" for c in columns))
    for name, row in table.items():
        print(f"{name:<12}" + "".join(f"{row.get(c, float('nan')):>14.4f}" for c in columns))
    atomic_write_json(
        args.out / "strategies.json",
        {
            **settings,
            "budget": args.budget,
            "draws": draws,
            "evaluations": args.evaluations,
            "seeds": args.seeds,
            "table": table,
            "curves": curves,
            "picks": picks,
            "scored": len(every),
            "unfinished": unfinished,
        },  # fmt: skip
    )
    plot(args.out, curves)
    print(f"written: {args.out / 'strategies.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
