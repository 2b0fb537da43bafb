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

from supernet.errors import UserError
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

    @property
    def single_path(self) -> bool:
        """Whether every plan of both phases runs one candidate per edge (``single``): only such a
        method runs a stride edge (candidates that subsample differently, whose outputs have
        different lengths and cannot be summed or scored against one output gradient)."""
        return False

    # True for a method that runs stride edges though it is not single-path (``st``)
    runs_stride_edges: ClassVar[bool] = False

    def use_stride_edges(self, names: list[str]) -> None:
        """Told once, before the first plan, the network's stride edges (candidates that subsample
        differently). A method that cannot run them refuses them here (``check_stride_edges``); one
        that runs them some other way (``st``: a score-function gradient) remembers them."""

    def use_space(self, space) -> None:
        """Told once, before the first plan, the ``SearchSpace`` the network was built from: its
        layer order, fixed layers included (``uniform``'s ``stage_depth`` needs the stages)."""

    def arch_loss(self, arch: ArchParams, loss: torch.Tensor) -> torch.Tensor:
        """The arch pass's CTC loss as the alphas should see it: ``loss`` itself, or with a term
        of value zero whose gradient estimates what the plans could not carry (``st``'s stride edges)."""
        return loss

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

    def describe(self, arch: ArchParams) -> str | None:
        """One line for the run's log on how the method draws on ``arch``'s edges, where its options
        make that worth seeing before the first step (None: nothing to say)."""
        return None

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


STRIDE_EDGE_METHODS = (
    "uniform (single-path one-shot; then `supernet select` picks paths from it), gumbel with "
    "hard: true (GDAS, --model.method_options '{hard: true}') or st (a score-function gradient on "
    "stride edges)"
)


def check_stride_edges(relaxation: Relaxation, edges, source: str = "the space") -> None:
    """Hand the network's stride edges (``MixedOp.subsamples_differently``) to the method; refuse
    one that combines candidate outputs (``sum`` plans) on them, naming the first such edge: those
    candidates' outputs differ in length, and no resampling is done to fake equal shapes."""
    strided = [edge for edge in edges if edge.subsamples_differently]
    if strided and not relaxation.single_path and not relaxation.runs_stride_edges:
        edge = strided[0]
        raise UserError(
            f"{source}: edge {edge.name!r} subsamples differently (candidates "
            f"{', '.join(f'{c} (stride {s})' for c, s in zip(edge.labels, edge.strides))}); method "
            f"{relaxation.name!r} combines every candidate's output of an edge, which needs one "
            f"output length: search this space with {STRIDE_EDGE_METHODS}"
        )
    relaxation.use_stride_edges([edge.name for edge in strided])
