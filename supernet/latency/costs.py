"""Costs of a search space (``SpaceCosts``): a fixed part and each edge's per-candidate cost.

``expected(probs)`` is the cost expected under the architecture distribution,
``sum_edges sum_k p_k * cost_k + fixed``: differentiable in the probabilities, the quantity a
resource penalty pushes on (ProxylessNAS, FBNet). ``at(choices)`` is one path's cost, and
``choose_path`` the path a search picks when a budget binds (a multiple-choice knapsack).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

import ops
from supernet.space import SearchSpace


@dataclass
class SpaceCosts:
    """One metric of a space: the fixed part and each edge's per-candidate cost."""

    metric: str
    fixed: float
    edges: dict[str, list[float]]
    # per (device, dtype): the edges' cost vectors, made once; making them anew at every search
    # step would be one blocking host-to-device copy per edge
    _vectors: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """``{metric, fixed, edges}``: what a checkpoint keeps of them (``from_dict`` reads it)."""
        return {
            "metric": self.metric,
            "fixed": self.fixed,
            "edges": {n: list(c) for n, c in self.edges.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceCosts:
        return cls(data["metric"], data["fixed"], data["edges"])

    def vectors(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        key = (like.device, like.dtype)
        if key not in self._vectors:
            self._vectors[key] = {
                name: torch.tensor(cost, dtype=like.dtype, device=like.device)
                for name, cost in self.edges.items()
            }
        return self._vectors[key]

    def expected(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``fixed + sum_edges sum_k p_k * cost_k``; carries the probabilities' graph."""
        missing = sorted(set(self.edges) - set(probs))
        if missing:
            raise KeyError(f"no probabilities for edge(s) {missing}")
        total = None
        vectors = self.vectors(next(iter(probs.values())))
        for name, cost in self.edges.items():
            p = probs[name]
            if p.shape != (len(cost),):
                raise ValueError(
                    f"edge {name!r}: {len(cost)} candidates, probabilities of shape {tuple(p.shape)}"
                )
            term = (p * vectors[name]).sum()
            total = term if total is None else total + term
        return total + self.fixed

    def at(self, choices: dict[str, int]) -> float:
        """The cost of one architecture (candidate index per edge)."""
        return self.fixed + sum(cost[int(choices[name])] for name, cost in self.edges.items())

    def most_probable_within(
        self, log_probs: dict[str, list[float]], budget: float, max_states: int = 100_000
    ) -> dict[str, int] | None:
        """The path of highest total log-probability whose cost (``at``) is at most ``budget``; None
        if even the cheapest path is over it.

        Why: a penalty on the *expected* cost holds the expectation at the budget, but the argmax
        of every edge can still be over it (several edges each slightly prefer a slow candidate).
        This is a multiple-choice knapsack, solved exactly edge by edge on the Pareto front of
        (cost so far, log-probability so far): a partial path that costs more and is less probable
        than another can never end better. Costs add up in the order ``at`` adds them, so "within"
        means what ``at`` says. Past ``max_states`` partial paths the front is thinned (evenly in
        cost), and the answer is then only near the best; spaces of a few dozen edges stay far below.
        """
        states = [(0.0, 0.0, ())]  # (cost so far, log-probability so far, choices so far)
        for name, costs in self.edges.items():
            scores = log_probs[name]
            grown = [
                (cost + c, score + lp, picks + (k,))
                for cost, score, picks in states
                for k, (c, lp) in enumerate(zip(costs, scores))
                if self.fixed + (cost + c) <= budget  # costs are >= 0: a partial path over stays over
            ]
            grown.sort(key=lambda state: (state[0], -state[1]))
            states, best = [], -math.inf
            for state in grown:  # keep the Pareto front: each kept state beats every cheaper one
                if state[1] > best:
                    states.append(state)
                    best = state[1]
            if len(states) > max_states:
                states = states[:: math.ceil(len(states) / max_states)] + [states[-1]]
            if not states:
                return None
        return dict(zip(self.edges, max(states, key=lambda state: state[1])[2]))


def over_budget(choices: dict[str, int], costs: SpaceCosts | None, budget: float | None) -> bool:
    """Whether a path costs more than a budget (never, without a budget or its costs)."""
    return budget is not None and costs is not None and costs.at(choices) > budget


def choose_path(
    alphas: dict[str, torch.Tensor], costs: SpaceCosts | None, budget: float | None
) -> dict[str, int]:
    """Every edge's argmax; with a budget, the most probable path within it when the argmax is over
    (a warning, and the argmax, when no path fits)."""
    indices = torch.stack([alpha.detach().argmax() for alpha in alphas.values()]).tolist()  # one copy
    choices = dict(zip(alphas, indices))
    if not over_budget(choices, costs, budget):
        return choices
    log_probs = {n: torch.log_softmax(a.detach().double().cpu(), -1).tolist() for n, a in alphas.items()}
    within = costs.most_probable_within(log_probs, budget)
    if within is None:
        warnings.warn(
            f"no path of the space costs at most the budget {budget:g} {costs.metric} (the cheapest costs "
            f"more); keeping the argmax path ({costs.at(choices):g})",
            stacklevel=2,
        )
        return choices
    return within


def param_costs(space: SearchSpace, vocab: int) -> SpaceCosts:
    """Trainable parameters per candidate, from the ops themselves (no table needed)."""

    def count(spec: str, in_dim: int, out_dim: int) -> float:
        return float(sum(p.numel() for p in ops.build(spec, in_dim, out_dim).parameters() if p.requires_grad))

    f, dim = space.fields, space.fields["dim"]
    fixed = count(f["input"], f["feature_dim"], dim) + count(f["head"], dim, vocab)
    edges = {}
    for layer in space.layers:
        if isinstance(layer, str):
            fixed += count(layer, dim, dim)
        else:
            edges[layer.name] = [count(c, dim, dim) for c in layer.candidates]
    return SpaceCosts("params", fixed, edges)
