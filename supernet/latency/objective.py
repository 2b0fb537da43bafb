"""HardwareObjective: what an architecture search optimises besides CTC.

The costs of a space (a table's latencies, the ops' parameter counts: ``SpaceCosts``), the target
a penalty pushes on (``latency`` | ``params``) and the penalty itself (``losses.latency``: none,
additive, multiplicative or hinge, with lambda, beta, reference and budget). It gives the search's
loss (``loss`` every step, ``loss_and_logs`` when logging) and the path the search picks
(``choose_path``: under a hinge budget, the most probable path within it). ``state_dict`` is what a
checkpoint keeps of it, so that ``supernet extract`` rebuilds it without the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from losses.latency import TARGETS, ResourcePenalty
from supernet.errors import UserError
from supernet.latency.costs import SpaceCosts, choose_path, over_budget, param_costs, unmeetable
from supernet.latency.table import LatencyTable
from supernet.space import SearchSpace


class BudgetError(UserError, ValueError):
    """A hinge budget no path of the space meets: refused before training, not warned about at
    every epoch's pick."""


# how each target's costs are named in the logs
LOG_NAMES = {"params": "params", "latency": "latency_ms"}


@dataclass
class HardwareObjective:
    """What the search optimises besides CTC: a table, a target, a penalty kind, lambda, beta,
    budget, reference."""

    # The SearchModule arguments that configure it, with their defaults: declared here once
    # (SearchModule's signature reads them from here, for the command line).
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "latency_table": None,
        "penalty": "none",
        "penalty_target": "latency",
        "penalty_lambda": 0.1,
        "penalty_beta": 0.6,
        "budget": None,
        "reference": None,
    }
    OPTIONS: ClassVar[tuple[str, ...]] = tuple(DEFAULTS)

    penalty: ResourcePenalty
    latency: SpaceCosts | None  # None without a table
    params: SpaceCosts
    target: str  # latency | params

    @classmethod
    def from_options(
        cls, space: SearchSpace, vocab_size: int, *, target_costs: SpaceCosts | None = None, **options: Any
    ) -> HardwareObjective:
        """The objective a ``SearchModule`` logs and penalises, from ``OPTIONS`` (the rest default).
        ``reference`` defaults to the expected cost under uniform alphas (the search's starting
        point). ``target_costs``: the target's costs as a checkpoint older than ``state_dict``
        saved them, in place of the table."""
        unknown = sorted(set(options) - set(cls.DEFAULTS))
        if unknown:
            raise TypeError(f"HardwareObjective.from_options: unknown option(s) {', '.join(unknown)}")
        o = {**cls.DEFAULTS, **options}
        latency_table, penalty, target = o["latency_table"], o["penalty"], o["penalty_target"]
        reference, budget = o["reference"], o["budget"]
        if target not in TARGETS:
            raise ValueError(f"penalty_target: unknown {target!r}; choose one of {', '.join(TARGETS)}")
        if target_costs is None:
            if penalty != "none" and target == "latency" and latency_table is None:
                raise ValueError(
                    f"penalty {penalty!r} on latency needs a latency_table (make one with `supernet profile`)"
                )
            latency = LatencyTable.load(latency_table).costs(space) if latency_table else None
            params = param_costs(space, vocab_size)
        else:
            latency = target_costs if target == "latency" else None
            params = target_costs if target == "params" else param_costs(space, vocab_size)
        costs = {"latency": latency, "params": params}[target]
        # checked when a search starts from its table; an older checkpoint's saved costs load as they were
        if penalty == "hinge" and costs is not None and target_costs is None:
            cheapest = unmeetable(costs, budget)
            if cheapest is not None:
                where = f" in {latency_table}" if target == "latency" else ""
                raise BudgetError(
                    f"model.budget {budget:g} {costs.metric}: the cheapest path of space {space.name!r} "
                    f"costs {cheapest:g} {costs.metric}{where}; give a budget of at least that"
                    + (
                        " (latency tables are per machine: `supernet profile` makes this one's)"
                        if where
                        else ""
                    )
                )
        if reference is None and costs is not None:
            uniform = {name: torch.full((n,), 1.0 / n) for name, n in costs.sizes.items()}
            reference = float(costs.expected(uniform))
        return cls(
            ResourcePenalty(penalty, o["penalty_lambda"], o["penalty_beta"], reference, budget),
            latency,
            params,
            target,
        )

    # --- checkpoints ---
    def state_dict(self) -> dict[str, Any]:
        """The penalty (``reference`` as resolved) and the costs: all ``from_state_dict`` needs, no table."""
        costs = {"params": self.params.to_dict()}
        if self.latency is not None:
            costs["latency"] = self.latency.to_dict()
        return {"penalty": self.penalty.to_dict(), "target": self.target, "costs": costs}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> HardwareObjective:
        costs = {name: SpaceCosts.from_dict(c) for name, c in state["costs"].items()}
        return cls(
            ResourcePenalty(**state["penalty"]), costs.get("latency"), costs["params"], state["target"]
        )

    # --- the loss ---
    @property
    def target_costs(self) -> SpaceCosts | None:
        return self.params if self.target == "params" else self.latency

    @property
    def active(self) -> bool:
        """Whether the loss has a penalty (its kind is not ``none``)."""
        return self.penalty.kind != "none"

    def loss(self, ce: torch.Tensor, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The penalised loss, on the device (no host sync); ``ce`` itself when not ``active``."""
        if not self.active:
            return ce
        return self.penalty(ce, self.target_costs.expected(probs))

    def loss_and_logs(
        self, ce: torch.Tensor, probs: dict[str, torch.Tensor], choices: dict[str, int]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """``(loss, logs)``: the penalised loss, and the numbers to log every step: each cost expected
        under ``probs`` and at the path ``choices`` (the argmax), and the CTC loss."""
        expected, logs = {}, {}
        for target, costs in (("params", self.params), ("latency", self.latency)):
            if costs is not None:
                expected[target] = costs.expected(probs)
                logs[f"arch/expected_{LOG_NAMES[target]}"] = expected[target].detach()
                logs[f"arch/argmax_{LOG_NAMES[target]}"] = costs.at(choices)
        logs["arch/ctc"] = ce.detach()
        if not self.active:
            return ce, logs
        return self.penalty(ce, expected[self.target]), logs

    # --- the path a search picks ---
    @property
    def path_budget(self) -> float | None:
        """The budget a chosen path must meet: the hinge penalty's; other penalties set none."""
        return self.penalty.budget if self.penalty.kind == "hinge" else None

    def choose_path(
        self, alphas: dict[str, torch.Tensor], drop: dict[str, int] | None = None
    ) -> dict[str, int]:
        """Every edge's argmax; under a budget (``path_budget``), the most probable path within it
        when the argmax is over it (``SpaceCosts.most_probable_within``). ``drop`` decides depth
        first (``costs.depth_first_path``)."""
        return choose_path(alphas, self.target_costs, self.path_budget, drop)

    def over_budget(self, choices: dict[str, int]) -> bool:
        """Whether the path ``choices`` costs more than ``path_budget`` (never without one)."""
        return over_budget(choices, self.target_costs, self.path_budget)
