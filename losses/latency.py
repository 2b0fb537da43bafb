"""Resource penalties for architecture search: expected latency (or parameters) in the loss.

``expected`` is the cost expected under the architecture distribution (``LatencyTable.expected``
or ``SpaceCosts.expected``), differentiable in the alphas. Three forms:

- additive: ``CE + lambda * E / reference``;
- multiplicative (ProxylessNAS, FBNet): ``CE * (log E / log reference) ** beta``. Note the power
  of the *ratio of logs*; ``log(E ** beta) = beta * log E`` is a common bug and a different loss;
- hinge (a budget): ``CE + lambda * max(0, E - budget) / budget``: no pressure inside the budget.

The same functions serve parameter counts (``E[params]``, a budget in parameters).
"""

from __future__ import annotations

import math
from typing import Any

import torch

PENALTIES = ("none", "additive", "multiplicative", "hinge")
TARGETS = ("latency", "params")


def additive(ce: torch.Tensor, expected: torch.Tensor, reference: float, lam: float) -> torch.Tensor:
    return ce + lam * expected / reference


def multiplicative(ce: torch.Tensor, expected: torch.Tensor, reference: float, beta: float) -> torch.Tensor:
    """``CE * (log E / log ref) ** beta``; ``E`` and ``ref`` must exceed 1 (ms or parameters) so
    that the logs are positive (below 1 ms the ratio would flip sign: use the additive form)."""
    if reference <= 1:
        raise ValueError(f"multiplicative penalty: reference must exceed 1 (log > 0), got {reference}")
    # E below 1 would make log E <= 0 and the power undefined; clamp_min keeps the gradient above it.
    return ce * (torch.log(expected.clamp_min(1.0 + 1e-6)) / math.log(reference)) ** beta


def hinge(ce: torch.Tensor, expected: torch.Tensor, budget: float, lam: float) -> torch.Tensor:
    return ce + lam * torch.relu(expected - budget) / budget


class ResourcePenalty:
    """One configured penalty: ``penalty(ce, expected) -> loss``.

    Args:
        kind: none | additive | multiplicative | hinge.
        lam: weight of the additive and hinge terms. beta: exponent of the multiplicative form.
        reference: the scale of additive/multiplicative (e.g. the expected cost at the start).
        budget: the hinge's limit, in the target's unit (ms or parameters).
    """

    def __init__(
        self,
        kind: str = "none",
        lam: float = 0.1,
        beta: float = 0.6,
        reference: float | None = None,
        budget: float | None = None,
    ):
        if kind not in PENALTIES:
            raise ValueError(f"penalty: unknown {kind!r}; choose one of {', '.join(PENALTIES)}")
        if kind in ("additive", "multiplicative") and (reference is None or reference <= 0):
            raise ValueError(f"penalty {kind!r} needs a positive reference, got {reference}")
        if kind == "multiplicative" and reference <= 1:
            raise ValueError(f"penalty 'multiplicative': reference must exceed 1 (log > 0), got {reference}")
        if kind == "hinge" and (budget is None or budget <= 0):
            raise ValueError(f"penalty 'hinge' needs a positive budget, got {budget}")
        self.kind, self.lam, self.beta, self.reference, self.budget = kind, lam, beta, reference, budget

    def __call__(self, ce: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        if self.kind == "additive":
            return additive(ce, expected, self.reference, self.lam)
        if self.kind == "multiplicative":
            return multiplicative(ce, expected, self.reference, self.beta)
        if self.kind == "hinge":
            return hinge(ce, expected, self.budget, self.lam)
        return ce

    def to_dict(self) -> dict[str, Any]:
        """The arguments that make it again: ``ResourcePenalty(**penalty.to_dict())``."""
        return {
            "kind": self.kind,
            "lam": self.lam,
            "beta": self.beta,
            "reference": self.reference,
            "budget": self.budget,
        }

    def __repr__(self) -> str:
        return (
            f"ResourcePenalty({self.kind}, lam={self.lam}, beta={self.beta}, "
            f"reference={self.reference}, budget={self.budget})"
        )
