"""How a network runs its ops: the seam between the model and the accelerations.

``supernet.derived.Encoder`` and the search's edges (``supernet.search.mixed_op.MixedOp``) call
every op through an ``OpRunner``. The default, ``EagerRunner``, calls the op. Accelerated runners
live in ``supernet.accel`` (``supernet.accel.cuda_graphs.OpGraphs`` replays graph-safe ops as CUDA
graphs) and are handed to the network from outside (``Encoder.set_runner``): the model code
imports none of them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import torch
from torch import nn


class OpRunner(Protocol):
    def run(
        self, op: nn.Module, x: torch.Tensor, lengths: torch.Tensor, group: object, name: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``op(x, lengths)``, however the runner runs it. ``group`` names the ops that never run
        in one pass (an edge, or the op itself for a fixed layer); ``name`` is for messages."""

    def input_grads_only(self) -> AbstractContextManager:
        """A block whose forward passes get a backward that wants no weight gradient (an
        architecture step's ``autograd.grad`` of the alphas)."""

    def edge_scores(
        self,
        edge: nn.Module,
        index: int,
        x: torch.Tensor,
        lengths: torch.Tensor,
        grad_out: torch.Tensor,
        sampled_out: torch.Tensor,
    ) -> torch.Tensor | None:
        """An ST edge's scores (``MixedOp.eager_scores``), run by the runner; None: the edge
        scores them itself."""


class EagerRunner:
    """Runs every op as it is: ``op(x, lengths)``."""

    def run(self, op: nn.Module, x: torch.Tensor, lengths: torch.Tensor, group: object, name: str):
        return op(x, lengths)

    def input_grads_only(self) -> AbstractContextManager:
        return nullcontext()

    def edge_scores(self, edge, index, x, lengths, grad_out, sampled_out) -> None:
        return None


EAGER = EagerRunner()
