"""Costs of a search space (``SpaceCosts``): a fixed part and each edge's per-candidate cost.

``expected(probs)`` is the cost expected under the architecture distribution,
``sum_edges sum_k p_k * cost_k + fixed``: differentiable in the probabilities, the quantity a
resource penalty pushes on (ProxylessNAS, FBNet). ``at(choices)`` is one path's cost, and
``choose_path`` the path a search picks when a budget binds (a multiple-choice knapsack).

Stride edges (candidates that subsample differently, ``SearchSpace.stride_edges``) make the cost
of everything after them depend on the upstream choice. The costs then carry each stride edge's
candidate ``strides``, and an edge after one has a cost vector per *rate* (the product of the
strides chosen at the stride edges before it, ``SearchSpace.rates``): ``edges[name][rate][k]``.
A stride edge's cost holds the fixed layers after it (up to the next stride edge) at the rate its
candidate gives them, so that ``fixed`` stays the part no choice changes. Edges are independent,
so the expectation factorises over the distribution of the running rate (a forward pass over the
edges), and the knapsack keeps one Pareto front per rate: both stay exact.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

import ops
from supernet.space import SearchSpace

EdgeCost = list[float] | dict[int, list[float]]  # per candidate; per rate, then candidate


@dataclass
class SpaceCosts:
    """One metric of a space: the fixed part and each edge's per-candidate cost (per rate, after a
    stride edge), and each stride edge's candidate strides (none in most spaces)."""

    metric: str
    fixed: float
    edges: dict[str, EdgeCost]
    strides: dict[str, list[int]] = field(default_factory=dict)
    # per (device, dtype): the edges' cost vectors, made once; making them anew at every search
    # step would be one blocking host-to-device copy per edge
    _vectors: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    # each edge's number of candidates, made once: ``expected`` reads it at every arch step
    _sizes: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        unknown = sorted(set(self.strides) - set(self.edges))
        if unknown:
            raise ValueError(f"{self.metric} costs: stride edge(s) {unknown} have no costs")
        self.edges = {
            name: {int(r): list(c) for r, c in cost.items()} if isinstance(cost, dict) else list(cost)
            for name, cost in self.edges.items()
        }
        self.strides = {name: [int(s) for s in strides] for name, strides in self.strides.items()}
        self._sizes = {
            n: len(next(iter(c.values())) if isinstance(c, dict) else c) for n, c in self.edges.items()
        }
        for name, strides in self.strides.items():
            if len(strides) != self.sizes[name]:
                raise ValueError(
                    f"{self.metric} costs: edge {name!r} has {self.sizes[name]} candidates, {len(strides)} strides"
                )

    def to_dict(self) -> dict[str, Any]:
        """``{metric, fixed, edges}`` (and ``strides`` with stride edges; a rate's costs under
        its rate as a string key): what a checkpoint keeps of them (``from_dict`` reads it)."""
        data = {
            "metric": self.metric,
            "fixed": self.fixed,
            "edges": {
                n: {str(r): list(v) for r, v in c.items()} if isinstance(c, dict) else list(c)
                for n, c in self.edges.items()
            },
        }
        if self.strides:
            data["strides"] = {n: list(s) for n, s in self.strides.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceCosts:
        return cls(data["metric"], data["fixed"], data["edges"], data.get("strides", {}))

    @property
    def sizes(self) -> dict[str, int]:
        """Each edge's number of candidates."""
        return self._sizes

    def edge_cost(self, name: str, rate: int = 1) -> list[float]:
        """Edge ``name``'s candidate costs at ``rate`` (the same at every rate before a stride edge)."""
        cost = self.edges[name]
        if not isinstance(cost, dict):
            return cost
        if rate not in cost:
            raise KeyError(f"edge {name!r}: no costs at rate {rate} (reachable: {sorted(cost)})")
        return cost[rate]

    def next_rate(self, name: str, rate: int, k: int) -> int:
        """The rate after edge ``name`` takes candidate ``k`` at ``rate`` (its stride, if any)."""
        return rate * self.strides[name][k] if name in self.strides else rate

    def reachable_rates(self) -> list[set[int]]:
        """The rates a path can be at before each edge, and after the last: {1} throughout
        without stride edges."""
        rates = [{1}]
        for name in self.edges:
            rates.append({self.next_rate(name, r, k) for r in rates[-1] for k in range(self.sizes[name])})
        return rates

    def vectors(self, like: torch.Tensor) -> dict[str, torch.Tensor | dict[int, torch.Tensor]]:
        key = (like.device, like.dtype)
        if key not in self._vectors:

            def tensor(values):
                return torch.tensor(values, dtype=like.dtype, device=like.device)

            self._vectors[key] = {
                name: {r: tensor(c) for r, c in cost.items()} if isinstance(cost, dict) else tensor(cost)
                for name, cost in self.edges.items()
            }
        return self._vectors[key]

    def expected(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``fixed + sum_edges sum_k p_k * cost_k``; carries the probabilities' graph. After a stride
        edge, an edge's term is ``sum_rate P(rate) sum_k p_k * cost_k(rate)``, where ``P(rate)``, the
        distribution of the product of the strides chosen upstream, is carried edge by edge."""
        missing = sorted(set(self.edges) - set(probs))
        if missing:
            raise KeyError(f"no probabilities for edge(s) {missing}")
        total = None
        vectors = self.vectors(next(iter(probs.values())))
        rates: dict[int, torch.Tensor | float] = {1: 1.0}  # P(rate) before the edge
        for name in self.edges:
            p = probs[name]
            if p.shape != (self.sizes[name],):
                raise ValueError(
                    f"edge {name!r}: {self.sizes[name]} candidates, probabilities of shape {tuple(p.shape)}"
                )
            vector = vectors[name]
            if isinstance(vector, dict):
                term = sum(weight * (p * vector[r]).sum() for r, weight in rates.items())
            else:
                term = (p * vector).sum()
            total = term if total is None else total + term
            if name in self.strides:
                after: dict[int, torch.Tensor | float] = {}
                for r, weight in rates.items():
                    for k, stride in enumerate(self.strides[name]):
                        after[r * stride] = after.get(r * stride, 0.0) + weight * p[k]
                rates = after
        return total + self.fixed

    def at(self, choices: dict[str, int]) -> float:
        """The cost of one architecture (candidate index per edge)."""
        total, rate = 0.0, 1
        for name in self.edges:
            k = int(choices[name])
            total += self.edge_cost(name, rate)[k]
            rate = self.next_rate(name, rate, k)
        return self.fixed + total  # the knapsack's order of additions

    def cheapest(self) -> float:
        """The cost of the cheapest path (exact: the least cost so far at each rate)."""
        return self._extreme(min)

    def dearest(self) -> float:
        """The cost of the dearest path."""
        return self._extreme(max)

    def _extreme(self, pick) -> float:
        best = {1: 0.0}  # rate -> the extreme cost so far among partial paths reaching it
        for name in self.edges:
            grown: dict[int, float] = {}
            for rate, cost in best.items():
                for k, c in enumerate(self.edge_cost(name, rate)):
                    after = self.next_rate(name, rate, k)
                    grown[after] = pick(grown.get(after, cost + c), cost + c)
            best = grown
        return self.fixed + pick(best.values())

    def most_probable_within(
        self, log_probs: dict[str, list[float]], budget: float, max_states: int = 100_000
    ) -> dict[str, int] | None:
        """The path of highest total log-probability whose cost (``at``) is at most ``budget``; None
        if even the cheapest path is over it.

        Why: a penalty on the *expected* cost holds the expectation at the budget, but the argmax
        of every edge can still be over it (several edges each slightly prefer a slow candidate).
        This is a multiple-choice knapsack, solved exactly edge by edge on the Pareto front of
        (cost so far, log-probability so far): a partial path that costs more and is less probable
        than another can never end better. After a stride edge the rest of a path's costs depend on
        the rate it reached, so one front is kept per rate (partial paths of different rates are
        not comparable). Costs add up in the order ``at`` adds them, so "within" means what ``at``
        says. Past ``max_states`` partial paths at one rate the front is thinned (evenly in cost),
        and the answer is then only near the best; spaces of a few dozen edges stay far below.
        """
        fronts = {1: [(0.0, 0.0, ())]}  # rate -> [(cost so far, log-probability so far, choices so far)]
        for name in self.edges:
            scores = log_probs[name]
            grown: dict[int, list] = {}
            for rate, states in fronts.items():
                options = list(enumerate(zip(self.edge_cost(name, rate), scores)))
                for cost, score, picks in states:
                    for k, (c, lp) in options:
                        # costs are >= 0: a partial path over the budget stays over
                        if self.fixed + (cost + c) <= budget:
                            after = grown.setdefault(self.next_rate(name, rate, k), [])
                            after.append((cost + c, score + lp, picks + (k,)))
            fronts = {}
            for rate, states in grown.items():
                states.sort(key=lambda state: (state[0], -state[1]))
                front, best = [], -math.inf
                for state in states:  # keep the Pareto front: each kept state beats every cheaper one
                    if state[1] > best:
                        front.append(state)
                        best = state[1]
                if len(front) > max_states:
                    front = front[:: math.ceil(len(front) / max_states)] + [front[-1]]
                if front:  # empty when every way on is ruled out (log-probability -inf)
                    fronts[rate] = front
            if not fronts:
                return None
        best = max((state for front in fronts.values() for state in front), key=lambda state: state[1])
        return dict(zip(self.edges, best[2]))


def over_budget(choices: dict[str, int], costs: SpaceCosts | None, budget: float | None) -> bool:
    """Whether a path costs more than a budget (never, without a budget or its costs)."""
    return budget is not None and costs is not None and costs.at(choices) > budget


def unmeetable(costs: SpaceCosts, budget: float | None) -> float | None:
    """The cheapest path's cost when ``budget`` is below it (no path can meet it), else None. A
    budget taken from a path's own cost, summed in another order, still admits that path."""
    cheapest = costs.cheapest()
    return cheapest if budget is not None and budget < cheapest * (1 - 1e-9) else None


PICK_RULES = ("argmax", "depth")


def choose_path(
    alphas: dict[str, torch.Tensor],
    costs: SpaceCosts | None,
    budget: float | None,
    drop: dict[str, int] | None = None,
) -> dict[str, int]:
    """Every edge's argmax; with a budget, the most probable path within it when the argmax is over
    (a warning, and the argmax, when no path fits). With ``drop`` (edge -> the index of its
    candidate that drops the layer), depth is decided first (``depth_first_path``)."""
    if drop:
        return depth_first_path(alphas, costs, budget, drop)
    indices = torch.stack([alpha.detach().argmax() for alpha in alphas.values()]).tolist()  # one copy
    choices = dict(zip(alphas, indices))
    if not over_budget(choices, costs, budget):
        return choices
    log_probs = {n: torch.log_softmax(a.detach().double().cpu(), -1).tolist() for n, a in alphas.items()}
    within = costs.most_probable_within(log_probs, budget)
    if within is None:
        warnings.warn(
            f"no path of the space costs at most the budget {budget:g} {costs.metric} (the cheapest costs "
            f"{costs.cheapest():g}); keeping the argmax path ({costs.at(choices):g})",
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


def depth_first_path(
    alphas: dict[str, torch.Tensor], costs: SpaceCosts | None, budget: float | None, drop: dict[str, int]
) -> dict[str, int]:
    """Depth first, then ops: a layer that can be dropped (``drop[edge]``, its ``skip``) is kept when
    its other candidates together are more probable than dropping it, and then takes the most
    probable of them; under a budget, the most probable ops within it at that depth, and while no
    ops fit, the layer kept by the narrowest vote is dropped. Other edges take their argmax.

    Why: the argmax drops a layer when ``skip`` has a plurality but not a majority. With ten
    candidates, ``skip`` at 0.41 beats every op while the ops hold 0.59 together; a hinge search that
    held its *expected* latency at the budget then picked a path at 61% of it, three layers of nine
    (``h200_three``, TDNN-D's budget). Keeping a layer is one decision, its op another.
    """
    logs = {
        name: torch.log_softmax(alpha.detach().double().cpu(), -1).tolist() for name, alpha in alphas.items()
    }
    margin = {name: 1.0 - 2.0 * math.exp(logs[name][k]) for name, k in drop.items()}  # P(keep) - P(drop)
    order = {name: i for i, name in enumerate(alphas)}  # ties go by edge order, the same in every process
    kept = {name for name, m in margin.items() if m >= 0}  # a tie keeps the layer, as argmax keeps index 0
    while True:
        log_probs = {}
        for name, lp in logs.items():
            if name in drop:  # a kept layer: its ops only; a dropped one: its skip only
                lp = [x if (k != drop[name]) == (name in kept) else -math.inf for k, x in enumerate(lp)]
            log_probs[name] = lp
        path = {name: max(range(len(lp)), key=lp.__getitem__) for name, lp in log_probs.items()}
        if not over_budget(path, costs, budget):
            return path
        within = costs.most_probable_within(log_probs, budget)
        if within is not None:
            return within
        if not kept:  # even the argmax depth has no path within the budget: choose_path's answer
            return choose_path(alphas, costs, budget)
        kept.remove(min(kept, key=lambda name: (margin[name], order[name])))
