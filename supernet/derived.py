"""The derived network: an ArchSpec built as a plain ``nn.Module`` with no supernet code.

``Encoder`` is the layer loop (input op -> layers -> head -> log-softmax) over any modules with
the op interface ``(x (B,T,C), lengths) -> (y, out_lengths)``; the supernet reuses it with mixed
ops as layers. ``DerivedNet`` fills it with the ops an ``ArchSpec`` names. Every op runs through
the network's ``runner`` (``supernet.runner``): eager unless an acceleration hands it another.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

import torch
from torch import nn

import ops
from supernet.archspec import ArchSpec
from supernet.runner import EAGER, OpRunner


class Encoder(nn.Module):
    """input op, layers and head in sequence; returns float32 CTC log-probabilities.

    Regularisation lives in the ops (each takes the network's dropout when built), so the loop
    adds nothing between them and a skip layer is a true identity.
    """

    runner: OpRunner = EAGER  # set by ``set_runner``

    def __init__(self, input_op: nn.Module, layers: Iterable[nn.Module], head: nn.Module):
        super().__init__()
        self.input = input_op
        self.layers = nn.ModuleList(layers)
        self.head = head
        for module in [*self.layers, self.head]:
            _mark_input_masked(module)

    @property
    def total_stride(self) -> int:
        """Input frames per output frame: every op keeps ``ceil(lengths / stride)``, and nested
        ceilings compose, so output lengths are ``ceil(feature lengths / total_stride)``."""
        stride = 1
        for module in [self.input, *self.layers, self.head]:
            stride *= int(getattr(module, "stride", 1))
        return stride

    def host_out_lengths(self, feature_lengths: list[int]) -> torch.Tensor:
        """Output lengths computed on the host from the features' (no device tensor read)."""
        stride = self.total_stride
        return torch.tensor([-(-n // stride) for n in feature_lengths], dtype=torch.long)

    def set_runner(self, runner: OpRunner | None) -> None:
        """Run the ops through ``runner`` (eager when None), here and in every module that takes a
        runner (the search's edges); e.g. ``supernet.accel.cuda_graphs.use_cuda_graphs``."""
        runner = EAGER if runner is None else runner
        for module in self.modules():
            if hasattr(module, "runner"):
                module.runner = runner

    def input_grads_only(self) -> AbstractContextManager:
        """For passes whose backward wants no weight gradient (an architecture step): the runner
        may leave them out (CUDA graphs replay a backward graph of the input gradient alone)."""
        return self.runner.input_grads_only()

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths = self._run(self.input, features, lengths)
        for layer in self.layers:
            x, lengths = self._run(layer, x, lengths)
        logits, lengths = self._run(self.head, x, lengths)
        return logits.float().log_softmax(dim=-1), lengths

    def _run(self, op: nn.Module, x: torch.Tensor, lengths: torch.Tensor):
        return self.runner.run(op, x, lengths, op, getattr(op, "spec", "") or type(op).__name__)


def _mark_input_masked(module: nn.Module) -> None:
    """Tell the op at this position (or a mixed op's candidates) that its input is another op's
    output, whose padding is zero already (the ``ops.base.Op`` contract)."""
    for op in getattr(module, "candidates", [module]):
        if isinstance(op, ops.Op):
            op.input_masked = True


class DerivedNet(Encoder):
    """The fixed network an ``ArchSpec`` describes, with a head over ``vocab_size`` tokens."""

    def __init__(self, spec: ArchSpec, vocab_size: int):
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2 (blank and one token), got {vocab_size}")
        input_op, *layers, head = spec.build_ops(vocab_size)
        super().__init__(input_op, layers, head)
        self.spec = spec
        self.vocab_size = vocab_size
