"""What a selection strategy searches: paths of a space, a score to lower, a cost under a budget.

A path is ``{edge: candidate index}``. ``evaluate`` scores a path once (the cache keeps every
score, so a strategy that proposes a path twice pays once, and an interrupted selection resumes
from the cache to the same result); ``cost`` is the path's predicted latency or parameter count
(the same costs ``supernet extract`` uses); a path over ``budget`` is infeasible and is never
scored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Path = dict[str, int]


def key_of(path: Path) -> str:
    """A path's cache key, in edge order: ``"2-0-1"``."""
    return "-".join(str(int(i)) for i in path.values())


@dataclass
class Problem:
    """The search space of a selection: ``edges`` maps each edge to its number of candidates."""

    edges: dict[str, int]
    score_fn: Callable[[Path], float]  # lower is better (a CER); called once per distinct path
    cost_fn: Callable[[Path], float]  # predicted latency (ms) or params
    budget: float | None = None
    cache: dict[str, float] = field(default_factory=dict)  # key_of(path) -> score
    history: list[dict[str, Any]] = field(default_factory=list)  # every evaluation, in order
    # scores kept from an earlier run (``supernet select``'s cache.json): a path found here is not
    # scored again, but counts as this run's evaluation when proposed (so a resumed run replays)
    stored: dict[str, float] = field(default_factory=dict)
    on_evaluate: Callable[[dict[str, Any]], None] | None = None  # told each history entry (a bar)

    def feasible(self, path: Path) -> bool:
        return self.budget is None or self.cost_fn(path) <= self.budget

    def evaluate(self, path: Path) -> float:
        """The path's score (cached); an infeasible path scores ``inf`` without being run."""
        path = {name: int(path[name]) for name in self.edges}
        key = key_of(path)
        if key not in self.cache:
            if not self.feasible(path):
                self.cache[key] = math.inf
            elif key in self.stored:
                self.cache[key] = float(self.stored[key])
            else:
                self.cache[key] = float(self.score_fn(path))
        score = self.cache[key]
        self.history.append({"path": path, "score": score, "cost": self.cost_fn(path)})
        if self.on_evaluate is not None:
            self.on_evaluate(self.history[-1])
        return score

    @property
    def evaluations(self) -> int:
        """Distinct feasible paths scored so far (what a strategy's budget of evaluations counts)."""
        return sum(1 for score in self.cache.values() if math.isfinite(score))

    def best(self) -> tuple[Path, float] | None:
        """The best feasible path scored so far, or None."""
        scored = [h for h in self.history if math.isfinite(h["score"])]
        if not scored:
            return None
        top = min(scored, key=lambda h: (h["score"], h["cost"]))
        return top["path"], top["score"]

    @property
    def size(self) -> int:
        """How many paths the space holds (feasible or not)."""
        return math.prod(self.edges.values())

    def random_path(self, rng) -> Path:
        """A uniform path of the space (``rng``: a ``random.Random``)."""
        return {name: rng.randrange(n) for name, n in self.edges.items()}

    def random_feasible(self, rng, tries: int, new: bool = True) -> Path | None:
        """A uniform path within the budget (rejection sampling: infeasible draws are never scored),
        one not proposed before when ``new``; None after ``tries`` draws found none (the budget's
        paths are exhausted or rare)."""
        for _ in range(tries):
            path = self.random_path(rng)
            if (not new or key_of(path) not in self.cache) and self.feasible(path):
                return path
        return None

    def front(self) -> list[dict[str, Any]]:
        """The Pareto front of (score, cost) over the distinct feasible paths scored so far, by cost."""
        seen: dict[str, dict[str, Any]] = {}
        for h in self.history:
            if math.isfinite(h["score"]):
                seen.setdefault(key_of(h["path"]), h)
        front, best = [], math.inf
        for h in sorted(seen.values(), key=lambda h: (h["cost"], h["score"])):
            if h["score"] < best:
                front.append(h)
                best = h["score"]
        return front
