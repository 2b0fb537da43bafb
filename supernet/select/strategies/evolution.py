"""``evolution``: regularised (aging) evolution, Real et al. 2019 ("Regularized Evolution for Image
Classifier Architecture Search", Algorithm 1).

A population of ``population`` feasible paths starts uniform. Each cycle samples ``sample`` members
at random (a tournament), copies the best-scoring one with one edge changed to another candidate
(a mutation that keeps the path within the budget: infeasible children are never scored), scores
it, adds it and removes the oldest member (not the worst: aging keeps the search from sticking to a
lucky early score). Seeded by ``random.Random(seed)``: same seed, same picks.
"""

from __future__ import annotations

import random as _random
from collections import deque

from supernet.errors import UserError
from supernet.select.problem import Path, Problem
from supernet.select.strategies.base import Strategy, register_strategy


@register_strategy
class AgingEvolution(Strategy):
    name = "evolution"

    def __init__(self, population: int = 16, sample: int = 4, tries: int = 1000):
        if population < 2 or not 1 <= sample <= population:
            raise UserError(
                f"strategy evolution: needs population >= 2 and 1 <= sample <= population, got {population}, {sample}"
            )
        self.population, self.sample, self.tries = population, sample, tries

    def mutate(self, problem: Problem, parent: Path, rng: _random.Random) -> Path | None:
        """``parent`` with one edge (of more than one candidate) moved to another candidate, within the budget."""
        edges = [name for name, n in problem.edges.items() if n > 1]
        for _ in range(self.tries):
            if not edges:
                return None
            edge = rng.choice(edges)
            child = dict(parent)
            child[edge] = rng.choice([k for k in range(problem.edges[edge]) if k != parent[edge]])
            if problem.feasible(child):
                return child
        return None

    def run(self, problem: Problem, evaluations: int, seed: int) -> None:
        rng = _random.Random(seed)
        population: deque[tuple[Path, float]] = deque()
        while len(population) < self.population and problem.evaluations < evaluations:
            path = problem.random_feasible(rng, self.tries)
            if path is None:
                break
            population.append((path, problem.evaluate(path)))
        stale = 0  # cycles in a row that scored nothing new: the budget's paths are exhausted
        while population and problem.evaluations < evaluations and stale < self.tries:
            contenders = rng.sample(list(population), min(self.sample, len(population)))
            parent = min(contenders, key=lambda member: member[1])[0]
            child = self.mutate(problem, parent, rng)
            if child is None:
                return
            before = problem.evaluations
            population.append((child, problem.evaluate(child)))
            stale = 0 if problem.evaluations > before else stale + 1
            if len(population) > self.population:
                population.popleft()
