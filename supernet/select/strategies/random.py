"""``random``: uniform paths within the budget, each scored once (random search, a strong NAS baseline)."""

from __future__ import annotations

import random as _random

from supernet.select.problem import Problem
from supernet.select.strategies.base import Strategy, register_strategy


@register_strategy
class RandomSearch(Strategy):
    """Draws uniform paths (seeded), skipping infeasible and repeated ones."""

    name = "random"

    def __init__(self, tries: int = 10_000):
        self.tries = tries

    def run(self, problem: Problem, evaluations: int, seed: int) -> None:
        rng = _random.Random(seed)
        while problem.evaluations < evaluations:
            path = problem.random_feasible(rng, self.tries)
            if path is None:
                return
            problem.evaluate(path)
