"""What a search method is: a ``Relaxation`` turns the alphas into one ``EdgePlan`` per edge.

The edges and the network never know which method runs (NNI's injected softmax): a method is one
class in one file, registered by name like the ops are (``ops/registry.py``). A new method is
``@register`` on a subclass; ``SearchModule(method="name", method_options={...})`` then builds it.

What a method may own besides its plans: state that a checkpoint keeps (``state_dict``), a
schedule over the search stage (``schedule``: Gumbel's temperature), a host-side read of the
alphas shared by a step's two passes (``host_probs``: ST's sampler), and work after each arch
update (``after_arch_update``: ST starts copying the new alphas to the host).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from supernet.registry import Registry, constructor_options
from supernet.search.arch_params import ArchParams
from supernet.search.mixed_op import EdgePlan

PHASES = ("weight", "arch")  # weight: alphas frozen; arch: alphas get a gradient

Plans = dict[str, EdgePlan]
HostProbs = dict[str, torch.Tensor] | None


class Relaxation:
    """One search method. Subclasses set ``name`` and implement ``plan``."""

    name: ClassVar[str] = ""
    # False for single-path one-shot training (``uniform``): the alphas never learn, so the search
    # picks no architecture; a discrete strategy picks one from the trained supernet instead.
    picks_architecture: ClassVar[bool] = True

    def plan(self, arch: ArchParams, phase: str, step: int, host_probs: HostProbs = None) -> Plans:
        """Every edge's plan for one pass of ``phase`` at ``step`` (the generator stream's index)."""
        raise NotImplementedError

    def host_probs(self, arch: ArchParams) -> HostProbs:
        """Probabilities read on the host once per step and handed to both passes' ``plan``."""
        return None

    def after_arch_update(self, arch: ArchParams, alphas: torch.Tensor) -> None:
        """Called after every arch update with the new alphas (``ArchParams.flat`` order)."""

    def schedule(self, progress: float) -> dict[str, float]:
        """Set the method's schedule at a search epoch's start; ``progress`` runs from 0 (first
        search epoch) to 1 (last). Returns the values to log."""
        return {}

    def state_dict(self, arch: ArchParams) -> dict[str, Any]:
        """What a checkpoint must keep for an exact resume (beyond the alphas)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back ``state_dict`` after a checkpoint was loaded."""

    def options(self) -> dict[str, Any]:
        """The constructor's arguments, for the module's hyper-parameters."""
        return constructor_options(self)


RELAXATIONS = Registry("relaxation", "model.method", "model.method_options")
register = RELAXATIONS.register  # class decorator: a ``Relaxation`` buildable by its ``name``
build = RELAXATIONS.build  # the method called ``name`` with ``options``


def check_phase(phase: str) -> bool:
    """Whether the alphas learn in ``phase``; an unknown phase is a programming error."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; use 'weight' or 'arch'")
    return phase == "arch"
