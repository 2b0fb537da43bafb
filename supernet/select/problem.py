"""What a selection strategy searches: paths of a space, a score to lower, a cost under a budget.

A path is ``{edge: candidate index}``. ``evaluate`` scores a path once (the cache keeps every
score, so a strategy that proposes a path twice pays once, and an interrupted selection resumes
from the cache to the same result); ``cost`` is the path's predicted latency or parameter count
(the same costs ``supernet extract`` uses); a path over ``budget``, or under ``floor`` (the least
cost a path may have, ``supernet select --floor``), is infeasible and is never scored. With
``reward_lambda`` the strategies minimise MnasNet's soft objective instead of the score alone:
``score + lambda * ln(cost)`` (the reward ``-CER - lambda * log(latency)``), so a path may trade
accuracy for cost without a hard limit (a ``budget`` still caps it when given).
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


def path_of(key: str, edges) -> Path:
    """The path a cache key names (``key_of``'s inverse), over ``edges`` in their order."""
    return dict(zip(edges, map(int, key.split("-"))))


def outside(cost: float, budget: float | None, floor: float | None = None) -> float:
    """How far ``cost`` lies outside [``floor``, ``budget``] (0: within; None: no such bound)."""
    over = 0.0 if budget is None else max(0.0, cost - budget)
    return over + (0.0 if floor is None else max(0.0, floor - cost))


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
    reward_lambda: float | None = None  # minimise score + lambda * ln(cost) (None: the score)
    # per edge, the probabilities random draws follow (a differentiable search's softmax(alpha):
    # ``supernet select --prior alphas``); None: uniform
    prior: dict[str, list[float]] | None = None
    # draws paths within the budget directly (``feasible.FeasibleSampler``, by the same prior); None:
    # rejection from the whole space, which at a tight budget needs thousands of draws per path
    sampler: Callable[[Any], Path | None] | None = None
    # the least cost a path may have (``supernet select --floor``: a band under the budget); None: any
    floor: float | None = None

    def objective(self, score: float, cost: float) -> float:
        """What the strategies minimise: the score, or with ``reward_lambda`` the soft reward's
        negative ``score + lambda * ln(cost)``."""
        if self.reward_lambda is None or not math.isfinite(score):
            return score
        return score + self.reward_lambda * math.log(max(cost, 1e-12))

    def feasible(self, path: Path) -> bool:
        return self.outside(self.cost_fn(path)) == 0.0

    def outside(self, cost: float) -> float:
        """How far ``cost`` lies outside this problem's band (0: within): an Optuna constraint."""
        return outside(cost, self.budget, self.floor)

    def evaluate(self, path: Path) -> float:
        """The path's objective (its score cached); an infeasible path scores ``inf`` unrun."""
        path = {name: int(path[name]) for name in self.edges}
        key = key_of(path)
        if key not in self.cache:
            if not self.feasible(path):
                self.cache[key] = math.inf
            elif key in self.stored:
                self.cache[key] = float(self.stored[key])
            else:
                self.cache[key] = float(self.score_fn(path))
        score, cost = self.cache[key], self.cost_fn(path)
        entry = {"path": path, "score": score, "cost": cost, "objective": self.objective(score, cost)}
        self.history.append(entry)
        if self.on_evaluate is not None:
            self.on_evaluate(entry)
        return entry["objective"]

    @property
    def evaluations(self) -> int:
        """Distinct feasible paths scored so far (what a strategy's budget of evaluations counts)."""
        return sum(1 for score in self.cache.values() if math.isfinite(score))

    def best(self) -> tuple[Path, float] | None:
        """The best feasible path scored so far, or None."""
        scored = [h for h in self.history if math.isfinite(h["score"])]
        if not scored:
            return None
        top = min(scored, key=lambda h: (h["objective"], h["cost"]))
        return top["path"], top["objective"]

    @property
    def size(self) -> int:
        """How many paths the space holds (feasible or not)."""
        return math.prod(self.edges.values())

    def random_path(self, rng) -> Path:
        """A path of the space (``rng``: a ``random.Random``): uniform, or drawn from ``prior``, so
        the random draws of every strategy (evolution's first population, random search, the
        surrogate's pool) start where a differentiable search's alphas point."""
        if self.prior is None:
            return {name: rng.randrange(n) for name, n in self.edges.items()}
        return {name: rng.choices(range(n), weights=self.prior[name])[0] for name, n in self.edges.items()}

    def random_feasible(self, rng, tries: int, new: bool = True) -> Path | None:
        """A uniform (or prior) path within the budget, drawn by ``sampler`` or else by rejection
        (infeasible draws are never scored), one not proposed before when ``new``; None after
        ``tries`` draws found none (the budget's paths are exhausted, or rare for rejection)."""
        for _ in range(tries):
            path = self.random_path(rng) if self.sampler is None else self.sampler(rng)
            if path is None:  # the sampler drew none (none fits, or its redraws ran out): a miss
                continue
            path = {name: int(path[name]) for name in self.edges}
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
