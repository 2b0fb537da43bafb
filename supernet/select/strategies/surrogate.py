"""``predictor``: surrogate-assisted search. After ``warmup`` random feasible paths are scored, each
round fits a predictor (``model``: ``mlp`` or ``gp``, see ``supernet/select/predictor.py``) on every
path scored so far, draws ``candidates`` random feasible paths not scored yet (all of them when
the space is that small) and scores the ``per_round`` with the best predicted score. With
``cost_feature`` the path's cost joins its encoding. A random draw is retried while it is over the
budget, at most ``resample`` times, and then the cheapest path by cost stands in (as in ``rl``);
the run stops at the target number of evaluations, or when no unscored feasible path is found
(the space is exhausted). Draws come from ``random.Random(seed)``, the predictor is seeded from it:
same seed, same history.
"""

from __future__ import annotations

import random

from supernet.errors import UserError
from supernet.select.predictor import PREDICTORS, build_predictor
from supernet.select.problem import Path, Problem, key_of
from supernet.select.strategies.base import Strategy, register_strategy
from supernet.select.strategies.reinforce import cheapest_path


def _random_feasible(problem: Problem, rng: random.Random, resample: int) -> Path | None:
    """A uniform random path under the budget (scored before or not), the cheapest path after
    ``resample`` misses, or None when even that one is over."""
    path = problem.random_feasible(rng, resample, new=False) or cheapest_path(problem)
    return path if problem.feasible(path) else None


def _every_path(edges: dict[str, int]) -> list[Path]:
    paths: list[Path] = [{}]
    for name, n in edges.items():
        paths = [{**p, name: i} for p in paths for i in range(n)]
    return paths


@register_strategy
class Surrogate(Strategy):
    name = "predictor"

    def __init__(
        self,
        warmup: int = 10,
        candidates: int = 200,
        per_round: int = 1,
        model: str = "mlp",
        cost_feature: bool = False,
        resample: int = 100,
    ) -> None:
        if model not in PREDICTORS:
            raise UserError(
                f"strategy 'predictor': model is one of {', '.join(sorted(PREDICTORS))}, not {model!r}"
            )
        if min(warmup, candidates, per_round, resample) < 1:
            raise UserError("strategy 'predictor': warmup, candidates, per_round and resample must be >= 1")
        self.warmup, self.candidates, self.per_round = warmup, candidates, per_round
        self.model, self.cost_feature, self.resample = model, cost_feature, resample

    def run(self, problem: Problem, evaluations: int, seed: int) -> None:
        rng = random.Random(seed)
        # the paths this run has scored: its choices depend on them alone, not on the cache, so a run
        # resumed from an earlier one's scores (``stored``, or a cache) proposes the same paths
        mine: dict[str, Path] = {}

        def score(path: Path) -> bool:
            """Score ``path``; whether it is new to this run."""
            path = {name: int(path[name]) for name in problem.edges}
            problem.evaluate(path)
            new = key_of(path) not in mine
            mine.setdefault(key_of(path), path)
            return new

        misses = 0
        while len(mine) < self.warmup and problem.evaluations < evaluations and misses < self.resample:
            path = _random_feasible(problem, rng, self.resample)
            if path is None:
                return  # no path fits the budget
            misses = 0 if score(path) else misses + 1
        features = (lambda p: [problem.cost_fn(p)]) if self.cost_feature else None
        while problem.evaluations < evaluations:
            pool = self._pool(problem, rng, mine)
            if not pool or not mine:
                return  # every feasible path found is scored already
            predictor = build_predictor(self.model, problem.edges, features, seed=rng.randrange(2**31))
            predictor.fit(
                list(mine.values()),
                [problem.objective(problem.cache[k], problem.cost_fn(p)) for k, p in mine.items()],
            )
            predicted = predictor.predict(pool)
            for i in sorted(range(len(pool)), key=lambda i: predicted[i])[: self.per_round]:
                if problem.evaluations >= evaluations:
                    break
                score(pool[i])

    def _pool(self, problem: Problem, rng: random.Random, scored: dict[str, Path]) -> list[Path]:
        """Up to ``candidates`` distinct feasible paths not in ``scored``."""
        if problem.size <= self.candidates:
            return [p for p in _every_path(problem.edges) if problem.feasible(p) and key_of(p) not in scored]
        pool: dict[str, Path] = {}
        for _ in range(self.candidates * 4):
            if len(pool) >= self.candidates:
                break
            path = _random_feasible(problem, rng, self.resample)
            if path is None:
                break
            if key_of(path) not in scored:
                pool.setdefault(key_of(path), path)
        return list(pool.values())
