"""One search step without Lightning: an arch step on a held-out batch, then a weight step.

This is the search's whole mathematics outside the plans (``supernet.search.relaxations``):
``SearchModule`` wraps it with the Trainer's engineering (precision, logging, checkpoints), and the
benchmark and the tests call it directly. Speed work plugs in from outside: the op runner of the
network (CUDA graphs), and ``sync`` (gradient all-reduce across processes, ``supernet.accel``).

- arch step: the plan of the ``arch`` phase, the CTC loss (plus the hardware objective's penalty),
  and ``torch.autograd.grad`` for the alphas only: the weight gradients it would throw away are
  never computed (graphed ops replay a backward of their input gradient alone);
- weight step: the plan of the ``weight`` phase (uniform paths in the warm-up), with the alphas
  frozen, and one optimizer step of the weights.

A step's paths depend on ``(seed, step)`` alone: weight and arch passes draw from the generator
streams ``2 * step`` and ``2 * step + 1``, the same on every DDP rank and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from supernet.latency import HardwareObjective
from supernet.search.arch_params import ArchParams
from supernet.search.network import Supernet
from supernet.search.relaxations import Relaxation, build, check_stride_edges

WARMUP = build("uniform")  # the warm-up of every method: uniform single paths, weights only


class GradientSync:
    """Averages gradients across processes: in one process, nothing to do. The all-reduce of
    several ranks plugs in here (``supernet.accel.grad_sync.AllReduceSync``)."""

    def average(self, tensors: list[torch.Tensor]) -> None:
        """Average the ``.grad`` of ``tensors`` (the alphas, after ``autograd.grad``)."""

    @contextmanager
    def around_backward(self):
        """Wraps the weight step's backward: the weight gradients are averaged when it exits."""
        yield


def _no_watch(kind: str, values: torch.Tensor, step: int, read_now: bool, segments=None) -> None:
    """Where the divergence check would record ``values`` (``CTCModule.watch_finite``)."""


@dataclass
class SearchStep:
    """The two updates of one search step over ``net`` and ``arch``.

    ``loss_fn(batch)`` is the CTC loss of a batch through ``net`` (the recipe's); ``backward`` and
    ``clip`` default to plain PyTorch (Lightning passes its precision-aware ones); ``watch``
    records values for the divergence check without reading them on the host.
    """

    net: Supernet
    arch: ArchParams
    relaxation: Relaxation
    objective: HardwareObjective
    loss_fn: Callable[[dict[str, Any]], torch.Tensor]
    grad_clip: float = 5.0
    sync: GradientSync = field(default_factory=GradientSync)
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward
    clip: Callable[[torch.optim.Optimizer], None] | None = None
    watch: Callable[..., None] = _no_watch

    def __post_init__(self):
        space = getattr(self.net, "space", None)
        check_stride_edges(self.relaxation, self.net.edges.values(), getattr(space, "source", "the space"))
        if space is not None:
            self.relaxation.use_space(space)

    def host_probs(self, warmup: bool = False) -> dict[str, torch.Tensor] | None:
        """The method's one host read of the alphas for this step's two passes (ST's sampler)."""
        return None if warmup else self.relaxation.host_probs(self.arch)

    def plan(self, phase: str, step: int, host_probs=None, warmup: bool = False) -> None:
        # a method that picks nothing (uniform) trains with its own sampling throughout: its options
        # (fair, draw_weights, stage_depth) are what it is; the others warm up on plain uniform paths
        method = WARMUP if warmup and self.relaxation.picks_architecture else self.relaxation
        self.net.apply_plan(method.plan(self.arch, phase, 2 * step + (phase == "arch"), host_probs))

    def arch_step(
        self, batch: dict[str, Any], step: int, optimizer, host_probs=None, log: bool = False
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """One update of the alphas on a held-out batch; the weights get no gradient. With ``log``,
        also the objective's numbers (expected and argmax costs: the argmax is read on the host)
        and the alphas' gradient norm."""
        self.plan("arch", step, host_probs)
        with self.net.input_grads_only():
            loss = self.relaxation.arch_loss(self.arch, self.loss_fn(batch))
        logs: dict[str, Any] = {}
        if log:
            loss, logs = self.objective.loss_and_logs(loss, self.arch.probs(), self.arch.argmax())
        elif self.objective.active:  # the same penalty every step, on the device
            loss = self.objective.loss(loss, self.arch.probs())
        self.watch("arch-step loss", loss, step, log)
        alphas = list(self.arch.alphas.values())
        grads = torch.autograd.grad(loss, alphas, allow_unused=True)
        for alpha, grad in zip(alphas, grads):
            alpha.grad = torch.zeros_like(alpha) if grad is None else grad
        self.sync.average(alphas)  # the same alphas on every rank
        optimizer.step()
        # the gradient and the updated alphas, for the divergence check, in one concatenation
        flat = torch.cat([*(a.grad.reshape(-1) for a in alphas), *(a.detach().reshape(-1) for a in alphas)])
        optimizer.zero_grad(set_to_none=True)
        gradient, updated = flat.float().chunk(2)
        self.watch("alpha gradient", gradient, step, False, self.arch.segments())
        self.watch("alpha", updated, step, False, self.arch.segments())
        if log:  # how strong the alphas' signal is (beside arch/entropy): weak in ST, see docs/study.md
            logs["arch/grad_norm"] = gradient.norm()
        self.relaxation.after_arch_update(self.arch, updated)
        return loss.detach(), logs

    def weight_step(
        self,
        batch: dict[str, Any],
        step: int,
        optimizer,
        host_probs=None,
        warmup: bool = False,
        log: bool = False,
    ) -> torch.Tensor:
        """One update of the network's weights with the alphas frozen."""
        self.plan("weight", step, host_probs, warmup)
        loss = self.loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        with self.sync.around_backward():  # averaged across ranks before clipping: every rank clips the same
            self.backward(loss)
        if self.clip is not None:
            self.clip(optimizer)
        else:
            torch.nn.utils.clip_grad_norm_(_with_grads(self.net.parameters()), self.grad_clip)
        optimizer.step()
        self.watch("weight-step loss", loss, step, log)
        return loss.detach()


def _with_grads(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    return [p for p in params if p.grad is not None]
