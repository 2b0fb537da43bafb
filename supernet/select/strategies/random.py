"""``random``: uniform paths within the budget, each scored once (random search, a strong NAS baseline)."""

from __future__ import annotations

import random as _random

from supernet.select.problem import Path, Problem, key_of
from supernet.select.strategies.base import Strategy, register_strategy


def new_feasible_path(problem: Problem, rng: _random.Random, tries: int) -> Path | None:
    """A uniform feasible path not proposed before (rejection sampling: infeasible draws are never
    scored), or None after ``tries`` draws found none (the budget's paths are exhausted or rare)."""
    for _ in range(tries):
        path = problem.random_path(rng)
        if key_of(path) not in problem.cache and problem.feasible(path):
            return path
    return None


@register_strategy
class RandomSearch(Strategy):
    """Draws uniform paths (seeded), skipping infeasible and repeated ones."""

    name = "random"

    def __init__(self, tries: int = 10_000):
        self.tries = tries

    def options(self):
        return {"tries": self.tries}

    def run(self, problem: Problem, evaluations: int, seed: int) -> None:
        rng = _random.Random(seed)
        while problem.evaluations < evaluations:
            path = new_feasible_path(problem, rng, self.tries)
            if path is None:
                return
            problem.evaluate(path)
