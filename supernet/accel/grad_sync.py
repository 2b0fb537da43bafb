"""Averaging gradients across DDP ranks without ``DistributedDataParallel``'s reducer.

A search step runs two passes and leaves the unsampled candidates without gradients, which DDP's
reducer cannot follow (see ``supernet.search.module``). Every rank runs the same path, so the set
of parameters with a gradient, and the order in which backward produces them, is the same on every
rank: flat buckets in that order line up across ranks without any bookkeeping.

- ``average_gradients``: after the fact, one flat all-reduce per bucket (the alphas).
- ``OverlappedGradientAverager``: during backward. Post-accumulate-grad hooks put each gradient
  in a bucket as soon as it is final; a full bucket is all-reduced asynchronously while backward
  goes on to the layers below, as DDP does. ``finish`` waits for the last buckets (on the device,
  not the host) and writes the averages back.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
import torch.distributed as dist

from supernet.search.step import GradientSync


def world_size() -> int:
    """Processes in the default group; 1 without ``torch.distributed``."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def average_gradients(params: Iterable[torch.Tensor], bucket_bytes: int = 64 * 2**20) -> None:
    """Average the existing ``.grad`` of ``params`` over all ranks (no-op on one process).

    Only parameters with a gradient take part, so an ST or uniform step sends the sampled path's
    gradients, not the whole supernet's. Every rank must hold the same set (the same path), which
    the shared sampler guarantees. Gradients go in flat buckets of one dtype: few, large calls.
    """
    world = world_size()
    if world == 1:
        return
    buckets: dict[torch.dtype, list[list[torch.Tensor]]] = {}
    for grad in (p.grad for p in params if p.grad is not None):
        rows = buckets.setdefault(grad.dtype, [[]])
        if rows[-1] and sum(g.numel() for g in rows[-1]) * grad.element_size() >= bucket_bytes:
            rows.append([])
        rows[-1].append(grad)
    for rows in buckets.values():
        for bucket in rows:
            flat = torch.cat([g.reshape(-1) for g in bucket]).div_(world)
            dist.all_reduce(flat)
            _write_back(bucket, flat)


class OverlappedGradientAverager:
    """Average ``params``' gradients across ranks while backward runs (see the module docstring).

    Use around one backward: ``start()``, ``loss.backward()``, ``finish()``. Outside that window
    the hooks do nothing (the arch step's ``autograd.grad`` never fires them anyway).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], bucket_bytes: int = 8 * 2**20):
        self.world = world_size()
        self.bucket_bytes = bucket_bytes
        self.active = False
        self.buckets: dict[torch.dtype, list[torch.Tensor]] = {}
        self.bucket_sizes: dict[torch.dtype, int] = {}  # bytes in each open bucket
        self.in_flight: list[tuple[dist.Work, torch.Tensor, list[torch.Tensor]]] = []
        self.handles = [p.register_post_accumulate_grad_hook(self._ready) for p in params if p.requires_grad]

    def start(self) -> None:
        if self.in_flight or any(self.buckets.values()):
            raise RuntimeError("OverlappedGradientAverager.start: the previous backward was not finished")
        self.active = True

    def _ready(self, param: torch.Tensor) -> None:
        if not self.active:
            return
        dtype = param.grad.dtype
        self.buckets.setdefault(dtype, []).append(param.grad)
        self.bucket_sizes[dtype] = (
            self.bucket_sizes.get(dtype, 0) + param.grad.numel() * param.grad.element_size()
        )
        if self.bucket_sizes[dtype] >= self.bucket_bytes:
            self._launch(dtype)

    def _launch(self, dtype: torch.dtype) -> None:
        bucket = self.buckets.pop(dtype, [])
        self.bucket_sizes.pop(dtype, None)
        if bucket:
            flat = torch.cat([g.reshape(-1) for g in bucket]).div_(self.world)
            self.in_flight.append((dist.all_reduce(flat, async_op=True), flat, bucket))

    def finish(self) -> None:
        """Send what is left, wait for every bucket and write the averages into ``.grad``."""
        for dtype in list(self.buckets):
            self._launch(dtype)
        for work, flat, bucket in self.in_flight:
            work.wait()
            _write_back(bucket, flat)
        self.in_flight, self.active = [], False

    def reset(self) -> None:
        """Forget a backward that failed half-way (its buckets and collectives in flight)."""
        self.buckets, self.bucket_sizes, self.in_flight, self.active = {}, {}, [], False

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _write_back(grads: list[torch.Tensor], flat: torch.Tensor) -> None:
    """One multi-tensor copy rather than a copy per gradient: at batch 32 the step is bound by
    the host, and every launch counts."""
    parts = [part.view_as(grad) for grad, part in zip(grads, flat.split([g.numel() for g in grads]))]
    torch._foreach_copy_(grads, parts)


class AllReduceSync(GradientSync):
    """``SearchStep``'s gradient averaging across ranks: the alphas after ``autograd.grad`` in one
    flat all-reduce; the weight gradients during backward in buckets (``overlap``), or after it."""

    def __init__(self, params: Iterable[torch.nn.Parameter], overlap: bool = True):
        self.params = list(params)
        self.averager = OverlappedGradientAverager(self.params) if overlap else None

    def average(self, tensors: list[torch.Tensor]) -> None:
        average_gradients(tensors)

    @contextmanager
    def around_backward(self):
        if self.averager is None:
            yield
            average_gradients(self.params)
            return
        self.averager.start()
        try:
            yield
        except BaseException:
            self.averager.reset()
            raise
        self.averager.finish()

    def remove(self) -> None:
        if self.averager is not None:
            self.averager.remove()
