"""An exponential moving average of a supernet's weights, for scoring paths after training.

Why: single-path one-shot training moves the shared weights towards whichever paths the last
steps drew, so the paths scored right after training are ranked partly by how recently they (or
their neighbours) were trained. Averaging the weights over the last few hundred steps spreads
that over many draws; BigNAS and OFA evaluate averaged weights too. On ``h200_three`` it did
not rank retrained networks better (tau within +-0.01 of the trained weights'; docs/results.md,
session 11): the cosine schedule already leaves the last weights nearly still.

The decay ramps up as TensorFlow's ``ExponentialMovingAverage(num_updates=n)`` does,
``min(decay, (1 + n) / (10 + n))`` after n updates, so the untrained start fades out within a
short run instead of weighing ``decay ** steps`` at the end. Written here rather than with
``torch.optim.swa_utils.AveragedModel``: that
reads its update counter (a device tensor) on the host twice per update, a synchronisation the
search steps are built to avoid; this one keeps a host copy, read once after a load. The
parameter lists are walked once and kept (updates and loads are in place, so storage stays).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from supernet.errors import UserError


def ramped_decay(decay: float, updates: int) -> float:
    """The EMA decay for the update that follows ``updates`` earlier ones."""
    return min(decay, (1 + updates) / (10 + updates))


class WeightAverage(nn.Module):
    """A frozen copy of ``net`` (``average``) whose parameters follow an EMA of ``net``'s: call
    ``update(net)`` after each weight step. Buffers (BatchNorm statistics) are copied as they
    were at the start and never averaged: a path's are re-estimated when it is scored. Saved with
    the module that holds it (the copy and the ``updates`` counter), so a resumed run goes on."""

    def __init__(self, net: nn.Module, decay: float):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.average = copy.deepcopy(net).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._host_updates: int | None = None
        self._lists: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self.register_load_state_dict_post_hook(WeightAverage._forget_host_count)  # named: it pickles

    @staticmethod
    def _forget_host_count(module: WeightAverage, incompatible_keys=None) -> None:
        module._host_updates = None

    def _apply(self, fn, recurse=True):  # .to() / .cuda() may give the parameters new storage
        self._lists = None
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        if self._host_updates is None:
            self._host_updates = int(self.updates)
        if self._lists is None:
            averaged, current = list(self.average.parameters()), list(net.parameters())
            if len(averaged) != len(current):
                raise ValueError(
                    f"the averaged copy has {len(averaged)} parameters, the network {len(current)}"
                )
            if any(p.dtype != torch.float32 for p in averaged):  # bf16-true: 1 - decay rounds away
                raise UserError(
                    "model.weight_average needs float32 weights: precision bf16-mixed, not bf16-true"
                )
            self._lists = (averaged, current)
        averaged, current = self._lists
        torch._foreach_lerp_(averaged, current, 1.0 - ramped_decay(self.decay, self._host_updates))
        self.updates += 1
        self._host_updates += 1

    @torch.no_grad()
    def copy_to(self, net: nn.Module) -> None:
        """Load the averaged parameters into ``net`` (its buffers stay): what a scorer measures."""
        for target, source in zip(net.parameters(), self.average.parameters(), strict=True):
            target.copy_(source)
