"""``rl``: a REINFORCE controller, one categorical distribution per edge (after ENAS/MnasNet).

Each update draws ``batch`` paths from the policy, scores them (reward = -score) and takes an Adam
step on ``-(advantage * log p(path)) - entropy * H``; the advantage is the reward less a
moving-average baseline, scaled by a moving average of its spread (so a CER in fractions and one
in percent learn alike). An infeasible draw is skipped (it costs no evaluation) and drawn again;
after ``resample`` infeasible draws in a row the cheapest path by cost is proposed instead (not
learned from: the policy did not draw it), so a tight budget cannot loop forever; under a floor
(``Problem.floor``), where the cheapest path lies below the band, a random path of the band stands
in (``Problem.random_feasible``, seeded too). The run stops when ``problem.evaluations`` reaches
the target, when no such path is found (no path fits), or after ``patience`` proposals in a row
that bring no path new to this run (the policy has settled, or the feasible space is exhausted).
Every draw comes from one ``torch.Generator`` seeded by ``seed``: same seed, same history.
"""

from __future__ import annotations

import random

import torch

from supernet.errors import UserError
from supernet.select.predictor import one_thread
from supernet.select.problem import Path, Problem, key_of
from supernet.select.strategies.base import Strategy, register_strategy


def cheapest_path(problem: Problem) -> Path:
    """The path of least ``problem.cost_fn``, by coordinate descent from candidate 0 everywhere:
    exact for a cost that adds up over edges (latency tables, parameter counts), a local minimum
    otherwise; ties keep the lower candidate index."""
    path = {name: 0 for name in problem.edges}
    cost = problem.cost_fn(path)
    improved = True
    while improved:
        improved = False
        for name, n in problem.edges.items():
            for index in range(n):
                trial = {**path, name: index}
                trial_cost = problem.cost_fn(trial)
                if trial_cost < cost:
                    path, cost, improved = trial, trial_cost, True
    return path


class _Policy:
    """One categorical distribution per edge; logits trained by Adam."""

    def __init__(self, edges: dict[str, int], lr: float) -> None:
        self.names = list(edges)
        self.logits = [torch.zeros(n, requires_grad=True) for n in edges.values()]
        self.optimizer = torch.optim.Adam(self.logits, lr=lr)

    def sample(self, generator: torch.Generator) -> Path:
        with torch.no_grad():
            return {
                name: int(torch.multinomial(torch.softmax(logits, 0), 1, generator=generator))
                for name, logits in zip(self.names, self.logits)
            }

    def log_prob(self, path: Path) -> torch.Tensor:
        return sum(torch.log_softmax(lg, 0)[path[n]] for n, lg in zip(self.names, self.logits))

    def entropy(self) -> torch.Tensor:
        return sum(-(torch.softmax(lg, 0) * torch.log_softmax(lg, 0)).sum() for lg in self.logits)

    def step(self, paths: list[Path], advantages: list[float], entropy: float) -> None:
        loss = -sum(a * self.log_prob(p) for p, a in zip(paths, advantages)) / len(paths)
        if entropy:
            loss = loss - entropy * self.entropy()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


@register_strategy
class Reinforce(Strategy):
    name = "rl"

    def __init__(
        self,
        lr: float = 0.2,
        baseline_decay: float = 0.8,
        entropy: float = 0.0,
        batch: int = 8,
        resample: int = 100,
        patience: int = 200,
    ) -> None:
        if lr <= 0 or not 0 <= baseline_decay < 1 or entropy < 0:
            raise UserError("strategy 'rl': needs lr > 0, 0 <= baseline_decay < 1, entropy >= 0")
        if batch < 1 or resample < 1 or patience < 1:
            raise UserError("strategy 'rl': batch, resample and patience must be at least 1")
        self.lr, self.baseline_decay, self.entropy = lr, baseline_decay, entropy
        self.batch, self.resample, self.patience = batch, resample, patience

    def run(self, problem: Problem, evaluations: int, seed: int) -> None:
        with one_thread():
            self._run(problem, evaluations, seed)

    def _run(self, problem: Problem, evaluations: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)  # the band's stand-ins under a floor
        policy = _Policy(problem.edges, self.lr)
        baseline: float | None = None
        spread = 0.0
        # whether a proposal is new is judged by this run's own proposals, not by the cache, so a run
        # resumed from an earlier one's scores (``stored``, or a cache) makes the same choices
        seen: set[str] = set()
        stalled = 0
        while problem.evaluations < evaluations and stalled < self.patience:
            paths, rewards = [], []
            while len(paths) < self.batch and problem.evaluations < evaluations and stalled < self.patience:
                path = self._draw(problem, policy, generator)
                if path is None:  # fell back to the cheapest path
                    fallback = cheapest_path(problem)
                    if not problem.feasible(fallback) and problem.floor is not None:  # below the band
                        fallback = problem.random_feasible(rng, self.resample, new=False)
                    if fallback is None or not problem.feasible(fallback):
                        return  # no path fits the budget (or its band)
                    problem.evaluate(fallback)
                    key = key_of(fallback)
                else:
                    paths.append(path)
                    rewards.append(-problem.evaluate(path))
                    key = key_of(path)
                stalled = 0 if key not in seen else stalled + 1
                seen.add(key)
            if not paths:
                continue
            mean = sum(rewards) / len(rewards)
            if baseline is None:
                baseline = mean
                spread = sum(abs(r - mean) for r in rewards) / len(rewards)
            scale = spread if spread > 1e-12 else 1.0
            policy.step(paths, [(r - baseline) / scale for r in rewards], self.entropy)
            deviation = sum(abs(r - baseline) for r in rewards) / len(rewards)
            baseline = self.baseline_decay * baseline + (1 - self.baseline_decay) * mean
            spread = self.baseline_decay * spread + (1 - self.baseline_decay) * deviation

    def _draw(self, problem: Problem, policy: _Policy, generator: torch.Generator) -> Path | None:
        """A feasible path from the policy, or None after ``resample`` infeasible draws in a row."""
        for _ in range(self.resample):
            path = policy.sample(generator)
            if problem.feasible(path):
                return path
        return None
