"""CUDA graphs of single ops, for training steps bound by the host's kernel launches.

``OpGraphs`` is an op runner (``supernet.runner.OpRunner``): ``use_cuda_graphs(net)`` hands one to
a network (``supernet.derived.Encoder``) and its search edges, which know nothing of it.

At batch 32 x 8 s a search step launches 300-560 kernels, and each costs the host 30-55 us of
Python, dispatch and launch: the GPU waits. A CUDA graph replays an op's whole forward, or its
whole backward, as one launch. The sampled path changes every step, so graphs are made per op and
per input shape, not per network, the first time an op meets a shape:

- a forward graph and a backward graph (input and weight gradients), and, for an op whose input
  needs a gradient, a second backward graph of the input gradient alone: passes run under
  ``input_grads_only()`` replay it (an architecture step, whose ``autograd.grad`` wants the alphas'
  gradients only, would otherwise compute every weight gradient and throw it away); ST's scores
  (``MixedOp.eager_scores``) get one no-grad graph per edge, sampled candidate and shape, which
  recomputes the other candidates (``edge_scores``), or, on an edge with a candidate that has no
  graph, one per candidate and shape (``score``);
- the ops of one *group* never run in the same pass (the candidates of one edge: one runs per
  step), so a group's forward graphs share one memory pool, which keeps what the backward needs;
  the pools hold about one path's activations, not every candidate's. Backward and score graphs
  leave nothing behind, so they all share one scratch pool;
- inputs are copied into, and outputs read from, flat buffers outside the pools, one per role and
  group, viewed at each shape: memory does not grow with the number of shapes. An input that is
  another graph's output buffer is read in place, without a copy. Nothing a graph leaves behind
  may live in a pool: after a capture, its blocks count as free, and the graphs captured next
  use them as scratch space.

What a caller must keep: after a group's forward, its backward runs before the group's next
forward (so no DARTS sum of candidates, which runs every candidate of an edge in one pass; the
edges run those eagerly). A backward that finds its own group run again raises a clear error; a
consumer that read an overwritten output of another group is not detected, so two forward passes
before one backward need ``cuda_graphs=False``. Outputs are overwritten by the op's next run: a
training step uses them before that. Only ops that declare ``graph_safe`` (no host reads, no
data-dependent shapes) are graphed; evaluation, the CPU, ``torch.compile`` and no-grad passes run
eagerly. Every distinct batch shape is a capture: pad features to a multiple of a few frames
(``SpeechDataModule(pad_frames=...)``) to keep them few.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ops.base import strided_lengths

if TYPE_CHECKING:
    from supernet.derived import Encoder
    from supernet.search.mixed_op import MixedOp

MANY_SHAPES = 64  # captures of one op that suggest padding the batches to fewer shapes


def scorable(op: nn.Module, x: torch.Tensor) -> bool:
    """Whether ST's no-grad recomputation of ``op`` (in a backward) may replay a graph: a
    graph-safe op on CUDA, outside compiling and capturing."""
    return (
        x.is_cuda
        and getattr(op, "graph_safe", False)
        and not torch.compiler.is_compiling()
        and not torch.cuda.is_current_stream_capturing()
    )


def graphable(op: nn.Module, x: torch.Tensor) -> bool:
    """Whether this call of ``op`` may replay a training graph: ``scorable``, in training mode,
    with grad enabled."""
    return (
        scorable(op, x) and op.training and torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    )


def use_cuda_graphs(net: Encoder, enabled: bool = True) -> OpGraphs | None:
    """Replay the graph-safe ops of ``net``'s training steps as CUDA graphs: new
    ``OpGraphs`` as its runner, shared by the search's edges; or, not ``enabled``, the eager runner
    back (which frees the graphs' memory pools and buffers). Returns the graphs, or None."""
    graphs = OpGraphs() if enabled else None
    net.set_runner(graphs)
    return graphs


class _Buffers:
    """Flat tensors by (role, dtype) outside every graph pool, viewed at any shape. Growing one
    moves it, so the graphs that read the old one are stale: ``generation`` says when."""

    def __init__(self, device: torch.device, outputs: set[int] | None = None):
        self.device = device
        self.flat: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self.generation = 0
        self.outputs = outputs  # where the "y" buffers start, shared by all groups: inputs read in place

    def view(self, role: str, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        numel = math.prod(shape)
        flat = self.flat.get((role, dtype))
        if flat is None or flat.numel() < numel:
            size = numel if flat is None else max(numel, flat.numel() * 3 // 2)  # few regrowths
            old, flat = flat, torch.empty(size, dtype=dtype, device=self.device)
            self.flat[role, dtype] = flat
            if role == "y" and self.outputs is not None:
                if old is not None:
                    self.outputs.discard(old.data_ptr())
                self.outputs.add(flat.data_ptr())
            self.generation += 1
        return flat[:numel].view(shape)


@dataclass
class _Group:
    """Ops that never run in one pass: one memory pool, one set of input/output buffers."""

    name: str
    pool: tuple
    buffers: _Buffers
    run: int = 0  # bumped by every forward replay; a backward checks it is still its own


@dataclass
class _TrainEntry:
    """One op's graphs at one input shape."""

    group: _Group
    generation: int
    bound: bool  # ``x`` is another graph's output buffer, read in place
    params: list[nn.Parameter]
    pointers: tuple[int, ...]  # the parameters' storage, as captured
    x: torch.Tensor
    lengths: torch.Tensor
    y: torch.Tensor
    grad_y: torch.Tensor
    grad_x: torch.Tensor | None
    param_grads: list[torch.Tensor | None]
    forward: torch.cuda.CUDAGraph
    backward: torch.cuda.CUDAGraph
    backward_input: torch.cuda.CUDAGraph | None  # the input gradient alone (``x`` needs one)


@dataclass
class _ScoreEntry:
    generation: int
    pointers: tuple[int, ...]
    score: torch.Tensor
    graph: torch.cuda.CUDAGraph
    reads: tuple[int, ...] = ()  # output buffers the graph reads in place (``edge_scores``)


@dataclass
class _Stats:
    captures: int = 0
    replays: int = 0
    input_only_backwards: int = 0
    eager: int = 0
    recaptures: list[str] = field(default_factory=list)


class _Replay(torch.autograd.Function):
    """An op's forward as one graph replay; its backward as another."""

    @staticmethod
    def forward(ctx, entry: _TrainEntry, input_only: bool, x: torch.Tensor, lengths: torch.Tensor, *params):
        if not entry.bound:
            entry.x.copy_(x)
        entry.lengths.copy_(lengths)
        entry.forward.replay()
        entry.group.run += 1
        ctx.entry, ctx.run, ctx.input_only = entry, entry.group.run, input_only
        return entry.y.detach()

    @staticmethod
    @once_differentiable  # the gradients come from a replay: no graph of them to differentiate
    def backward(ctx, grad_y: torch.Tensor):
        entry: _TrainEntry = ctx.entry
        if entry.group.run != ctx.run:
            raise RuntimeError(
                f"CUDA graphs: {entry.group.name} ran forward again before the backward of its earlier "
                "run, whose saved activations are now overwritten (two forward passes before one "
                "backward). Run such passes without graphs (cuda_graphs=False)."
            )
        entry.grad_y.copy_(grad_y)
        if ctx.input_only:
            entry.backward_input.replay()
            return (None, None, entry.grad_x.detach(), None, *(None for _ in entry.param_grads))
        entry.backward.replay()
        grad_x = entry.grad_x.detach() if ctx.needs_input_grad[2] else None
        # the parameter gradients are returned as the buffers themselves, not detached views: a
        # view nobody else holds would be taken over as ``p.grad``, and the next replay would
        # overwrite it; a held buffer is copied (or added) into ``p.grad`` by autograd
        return (None, None, grad_x, None, *entry.param_grads)


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


def _uncached_autocast(device_type: str, state: tuple[bool, torch.dtype]) -> AbstractContextManager:
    """The caller's autocast, without its cache of cast weights: a graph must cast the weights
    itself at every replay, not read a cast that the cache frees when the region ends."""
    enabled, dtype = state
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type, dtype=dtype, cache_enabled=False)


class OpGraphs:
    """Replays ops as CUDA graphs, captured per op and input shape (see the module docstring).

    ``graphs(op, x, lengths, group)`` runs ``op`` like ``op(x, lengths)``; ``group`` names the ops
    that never run in one pass (an edge's name, or the op for a fixed layer). As an op runner
    (``run``, ``input_grads_only``, ``edge_scores``) it is what ``use_cuda_graphs`` gives a network.
    """

    def __init__(self):
        self.groups: dict[object, _Group] = {}
        self.train: dict[tuple, _TrainEntry] = {}
        self.scores: dict[tuple, _ScoreEntry] = {}
        self.scratch_pool: tuple | None = None  # backward and score graphs: nothing outlives a replay
        self.score_buffers: _Buffers | None = None
        self.outputs: set[int] = set()
        self.grads: dict[tuple, list[torch.Tensor]] = {}
        self.shapes: dict[int, int] = {}  # shapes captured per op
        self.seen: set[tuple] = set()  # every training key ever captured: a second capture is a recapture
        self.stream: torch.cuda.Stream | None = None
        self.weight_grads = True  # False under ``input_grads_only``
        self.stats = _Stats()
        self._params: dict[int, tuple[nn.Module, list[nn.Parameter]]] = {}

    def _op_params(self, op: nn.Module) -> list[nn.Parameter]:
        """``op``'s parameters, walked once per op: ``op.parameters()`` walks its submodules, about
        10 us a call, and a search step makes about 36 of them. An op's parameters are fixed once it
        is built (``module.to()`` moves their storage, which ``_current`` checks)."""
        known = self._params.get(id(op))
        if known is None or known[0] is not op:
            known = self._params[id(op)] = (op, list(op.parameters()))
        return known[1]

    @contextmanager
    def input_grads_only(self):
        """Forward passes in this block get backward graphs without the weight gradients: for a
        backward that wants no weight gradient (``autograd.grad`` of the alphas in an architecture
        step). A backward that wanted them would get none from the graphed ops."""
        saved, self.weight_grads = self.weight_grads, False
        try:
            yield self
        finally:
            self.weight_grads = saved

    # --- training: forward and backward graphs ------------------------------------------------
    def run(self, op: nn.Module, x: torch.Tensor, lengths: torch.Tensor, group: object, name: str):
        """``op(x, lengths)``, replayed from the graphs when the op is graph-safe."""
        if not getattr(op, "graph_safe", False):
            return op(x, lengths)
        return self(op, x, lengths, group=group, name=name)

    def __call__(self, op: nn.Module, x: torch.Tensor, lengths: torch.Tensor, group: object, name: str = ""):
        params = [p for p in self._op_params(op) if p.requires_grad]
        if not graphable(op, x) or not (params or x.requires_grad):
            self.stats.eager += 1
            return op(x, lengths)
        bound = self._in_place(x)
        key = (
            id(op),
            x.shape,
            x.dtype,
            x.requires_grad,
            x.data_ptr() if bound else 0,  # which output it reads: a skip edge changes the producer
            lengths.shape,
            lengths.dtype,
            _autocast_state(x.device.type),
        )
        entry = self.train.get(key)
        if entry is None or not self._current(entry, entry.group.buffers, params):
            if key in self.seen:
                self.stats.recaptures.append(name or type(op).__name__)
            else:
                self.seen.add(key)
                self._count_shape(op)
            generations = self._generations()
            entry = self.train[key] = self._capture_train(
                op, x, lengths, params, self._group(group, name, x), bound
            )
            if self._generations() != generations:
                self._drop_stale()
        self.stats.replays += 1
        input_only = not self.weight_grads and entry.backward_input is not None
        self.stats.input_only_backwards += input_only
        y = _Replay.apply(entry, input_only, x, lengths, *entry.params)
        return y, _out_lengths(op, lengths)

    def _count_shape(self, op: nn.Module) -> None:
        """Warn once per op when it has met many shapes: each one is a capture and its memory."""
        shapes = self.shapes[id(op)] = self.shapes.get(id(op), 0) + 1
        if shapes == MANY_SHAPES:
            warnings.warn(
                f"CUDA graphs: {type(op).__name__} met {shapes} input shapes, a capture each; pad the "
                "features (data.pad_frames) so that batches come in fewer shapes",
                stacklevel=4,
            )

    def _grad_buffers(self, op: nn.Module, params: list[nn.Parameter]) -> list[torch.Tensor]:
        """The buffers an op's backward graphs write its weight gradients to, one set per op for all
        its shapes (autograd copies them out at once, and an op has one backward in flight)."""
        key = (id(op), tuple(p.data_ptr() for p in params))
        if key not in self.grads:
            self.grads[key] = [torch.empty_like(p) for p in params]
        return self.grads[key]

    def _group(self, key: object, name: str, x: torch.Tensor) -> _Group:
        group = self.groups.get(id(key))
        if group is None:
            label = name or type(key).__name__
            group = self.groups[id(key)] = _Group(
                label, torch.cuda.graph_pool_handle(), _Buffers(x.device, self.outputs)
            )
        return group

    def _generations(self) -> tuple[int, ...]:
        return tuple(g.buffers.generation for g in self.groups.values())

    def _drop_stale(self) -> None:
        """Forget the graphs a buffer's regrowth made stale: they would be recaptured anyway, and
        one that reads an old output buffer in place keeps that buffer alive."""
        self.train = {
            key: e
            for key, e in self.train.items()
            if e.generation == e.group.buffers.generation and (not e.bound or e.x.data_ptr() in self.outputs)
        }
        # score graphs that read a moved output buffer in place would never match again
        self.scores = {key: e for key, e in self.scores.items() if all(p in self.outputs for p in e.reads)}
        # a pool whose graphs are all gone is being released: the allocator refuses new captures
        # into it, so a group left without graphs starts a new one
        live = {id(e.group) for e in self.train.values()}
        for group in self.groups.values():
            if id(group) not in live:
                group.pool = torch.cuda.graph_pool_handle()

    @staticmethod
    def _current(entry, buffers: _Buffers, params: list[nn.Parameter]) -> bool:
        """Captured against today's buffers and parameter storage (``module.to()`` makes new ones)."""
        return entry.generation == buffers.generation and entry.pointers == tuple(
            p.data_ptr() for p in params
        )

    def _scratch(self) -> tuple:
        if self.scratch_pool is None:
            self.scratch_pool = torch.cuda.graph_pool_handle()
        return self.scratch_pool

    def _capture_train(self, op, x, lengths, params, group: _Group, bound: bool) -> _TrainEntry:
        buffers, device_type = group.buffers, x.device.type
        autocast = _autocast_state(device_type)
        with _frozen_buffers(op), self._on_side_stream():
            sx = x.detach() if bound else buffers.view("x", x.shape, x.dtype)
            sl = buffers.view("lengths", lengths.shape, lengths.dtype)
            if not bound:
                sx.copy_(x)
            sl.copy_(lengths)
            leaf = sx.detach().requires_grad_(x.requires_grad)
            # The op runs on leaf aliases of its parameters (same storage, so replays read the
            # current weights): the parameters' own gradient accumulators may belong to the
            # default stream, and a capture that fed them would make it wait on the capture
            aliases = {
                name: p.detach().requires_grad_() for name, p in op.named_parameters() if p.requires_grad
            }
            inputs = ([leaf] if x.requires_grad else []) + list(aliases.values())

            def run():
                with torch.enable_grad(), _uncached_autocast(device_type, autocast):
                    return torch.func.functional_call(op, aliases, (leaf, sl))[0]

            y = run()  # one warm-up pass (cuDNN picks its kernels, workspaces are made); it trains nothing
            used = [
                g is not None for g in torch.autograd.grad(y, inputs, torch.ones_like(y), allow_unused=True)
            ]
            sy, sgy = buffers.view("y", y.shape, y.dtype), buffers.view("grad_y", y.shape, y.dtype)
            sgx = buffers.view("grad_x", x.shape, x.dtype) if x.requires_grad else None
            del y
            if x.requires_grad:
                used = used[1:]
            shared = self._grad_buffers(op, params)
            param_grads = [buf if u else None for buf, u in zip(shared, used)]
            wanted = [leaf] if x.requires_grad else []
            wanted += [a for a, u in zip(aliases.values(), used) if u]

            forward = torch.cuda.CUDAGraph()
            with _Capture(forward, group.pool):
                y = run()
                sy.copy_(y)
            backward_input = None
            if x.requires_grad and len(wanted) > 1:  # the input gradient alone, from the same forward
                backward_input = torch.cuda.CUDAGraph()
                with _Capture(backward_input, self._scratch()):
                    (grad_x,) = torch.autograd.grad(y, [leaf], sgy, retain_graph=True)
                    sgx.copy_(grad_x)
                del grad_x
            backward = torch.cuda.CUDAGraph()
            with _Capture(backward, self._scratch()):
                grads = list(torch.autograd.grad(y, wanted, sgy))
                if x.requires_grad:
                    sgx.copy_(grads.pop(0))
                if grads:
                    torch._foreach_copy_([b for b in param_grads if b is not None], grads)
            del y, grads
        self.stats.captures += 1
        return _TrainEntry(
            group=group,
            generation=buffers.generation,
            bound=bound,
            params=params,
            pointers=tuple(p.data_ptr() for p in params),
            x=sx,
            lengths=sl,
            y=sy,
            grad_y=sgy,
            grad_x=sgx,
            param_grads=param_grads,
            forward=forward,
            backward=backward,
            backward_input=backward_input,
        )

    # --- ST scores: no-grad graphs -----------------------------------------------------------
    def score_inputs(self, x: torch.Tensor, lengths: torch.Tensor, grad: torch.Tensor):
        """Copy one edge's input, lengths and output gradient into the score graphs' buffers, once
        for all of the edge's candidates; returns the views they read."""
        if self.score_buffers is None:
            self.score_buffers = _Buffers(x.device)
        views = (
            self.score_buffers.view("x", x.shape, x.dtype),
            self.score_buffers.view("lengths", lengths.shape, lengths.dtype),
            self.score_buffers.view("grad", grad.shape, grad.dtype),
        )
        for view, value in zip(views, (x, lengths, grad)):
            view.copy_(value)
        return views

    def score(
        self, edge: MixedOp, k: int, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """``edge.recompute_score(k, x, lengths, grad)`` (an ST edge's candidate ``k``) under no
        grad, as one replay. ``inputs`` come from ``score_inputs``; the result is a scalar
        overwritten by the next replay of the same graph."""
        x, lengths, grad = inputs
        op = edge.candidates[k]
        autocast = _autocast_state(x.device.type)
        key = (id(op), x.shape, x.dtype, lengths.shape, grad.shape, grad.dtype, autocast)
        return self._replay_score(key, op, lambda: edge.recompute_score(k, x, lengths, grad), autocast)

    def edge_scores(
        self,
        edge: MixedOp,
        index: int,
        x: torch.Tensor,
        lengths: torch.Tensor,
        grad: torch.Tensor,
        y: torch.Tensor,
    ) -> torch.Tensor | None:
        """An ST edge's scores, ``edge.eager_scores(index, x, lengths, grad, y)`` (``MixedOp``), with
        its recomputations replayed: the whole edge as ONE replay where every candidate is
        graph-safe and ``x`` and ``y`` can be read in place (``_whole_edge_scores``); else one replay
        per graph-safe candidate (``score``), the others eager; None where no candidate is
        graph-safe (the edge scores eagerly)."""
        candidates = edge.candidates
        safe = [scorable(c, x) for c in candidates]
        if all(safe) and self._in_place(x) and self._in_place(y):
            return self._whole_edge_scores(edge, index, x, lengths, grad, y)
        if not any(safe):
            return None
        inputs = None

        def recompute(k, x, lengths, grad):
            nonlocal inputs
            if not safe[k]:
                return edge.recompute_score(k, x, lengths, grad)
            inputs = inputs or self.score_inputs(x, lengths, grad)  # copied once for the edge
            return self.score(edge, k, inputs)

        return edge.eager_scores(index, x, lengths, grad, y, recompute)

    def _whole_edge_scores(self, edge: MixedOp, index: int, x, lengths, grad, y) -> torch.Tensor:
        """``edge.eager_scores(index, x, lengths, grad, y)`` as ONE replay. ``x`` and ``y`` are read
        in place (other graphs' output buffers, which hold them until the edge's next forward);
        only ``lengths`` and ``grad`` are copied. Against per-candidate replays, an edge of four
        saves two graph launches, a copy and four kernel launches of the host's time."""
        if self.score_buffers is None:
            self.score_buffers = _Buffers(x.device)
        sl = self.score_buffers.view("lengths", lengths.shape, lengths.dtype)
        sg = self.score_buffers.view("grad", grad.shape, grad.dtype)
        sl.copy_(lengths)
        sg.copy_(grad)
        autocast = _autocast_state(x.device.type)
        key = (
            "edge",
            id(edge),
            index,
            x.shape,
            x.dtype,
            x.data_ptr(),
            y.data_ptr(),
            lengths.shape,
            lengths.dtype,
        )
        key += (grad.shape, grad.dtype, autocast)
        scores = self._replay_score(
            key,
            edge.candidates,
            lambda: edge.eager_scores(index, x, sl, sg, y),
            autocast,
            (x.data_ptr(), y.data_ptr()),
        )
        return scores.clone()  # the buffer is overwritten by this edge's next replay

    def _in_place(self, t: torch.Tensor) -> bool:
        """``t`` is (the start of) a graph's current output buffer, which a graph may read in place."""
        return t.is_cuda and t.data_ptr() in self.outputs and t.is_contiguous()

    def _replay_score(
        self,
        key: tuple,
        module: nn.Module,
        compute: Callable[[], torch.Tensor],
        autocast: tuple[bool, torch.dtype],
        reads: tuple[int, ...] = (),
    ) -> torch.Tensor:
        """The score graph of ``key`` replayed, captured first from ``compute()`` (``module``'s
        recomputations, under no grad and ``autocast``) where none is current; returns its result,
        a buffer that its next replay overwrites. ``reads``: output buffers read in place."""
        params = self._op_params(module)
        entry = self.scores.get(key)
        if entry is None or not self._current(entry, self.score_buffers, params):
            device_type = self.score_buffers.device.type

            def run():
                with torch.no_grad(), _uncached_autocast(device_type, autocast):
                    return compute()

            entry = self.scores[key] = self._capture_scores(module, run, params, reads)
        entry.graph.replay()
        self.stats.replays += 1
        return entry.score

    def _capture_scores(
        self, module: nn.Module, run: Callable[[], torch.Tensor], params, reads: tuple[int, ...] = ()
    ) -> _ScoreEntry:
        with _frozen_buffers(module), self._on_side_stream():
            # the result lives outside the pool: the pool's free blocks are other graphs' scratch space
            score = run()  # warm-up
            graph = torch.cuda.CUDAGraph()
            with _Capture(graph, self._scratch()):
                score.copy_(run())
        self.stats.captures += 1
        pointers = tuple(p.data_ptr() for p in params)
        return _ScoreEntry(self.score_buffers.generation, pointers, score, graph, reads)

    # --- streams and capture -------------------------------------------------------------------
    @contextmanager
    def _on_side_stream(self):
        """Warm-up and capture on one side stream (what capture needs), ordered after the work
        queued so far and before the work queued next."""
        if self.stream is None:
            self.stream = torch.cuda.Stream()
        self.stream.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(self.stream):
                yield self.stream
        finally:
            torch.cuda.current_stream().wait_stream(self.stream)

    def memory_bytes(self) -> dict[str, int]:
        """What the graphs hold between steps: their pools (reserved by the allocator, not counted
        by ``torch.cuda.max_memory_allocated`` while a replay uses them) and the buffers outside."""
        holders = [*(g.buffers for g in self.groups.values()), self.score_buffers]
        tensors = [t for h in holders if h is not None for t in h.flat.values()]
        tensors += [t for grads in self.grads.values() for t in grads]
        outside = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        pools = {tuple(g.pool) for g in self.groups.values()}
        if self.scratch_pool is not None:
            pools.add(tuple(self.scratch_pool))
        pooled = 0
        if pools:
            for segment in torch.cuda.memory_snapshot():
                if tuple(segment.get("segment_pool_id", (0, 0))) in pools:
                    pooled += segment["total_size"]
        return {"pools": pooled, "buffers": sum(outside.values())}

    def summary(self) -> str:
        s = self.stats
        return (
            f"{s.captures} captures, {s.replays} replays, {s.eager} eager calls, "
            f"{len(s.recaptures)} recaptures"
        )


def _out_lengths(op: nn.Module, lengths: torch.Tensor) -> torch.Tensor:
    """``ceil(lengths / stride)``, the ``ops.base.Op`` contract, made outside the graph: a fresh
    tensor each step (the padding masks of the eager ops that follow are keyed by it)."""
    return strided_lengths(lengths, int(getattr(op, "stride", 1)))


class _Capture:
    """``graph.capture_begin``/``capture_end`` on the current (side) stream. Unlike
    ``torch.cuda.graph`` it does not synchronise the device or empty the allocator's cache at every
    capture; errors are thread-local, so a data loader's pinning thread may go on."""

    def __init__(self, graph: torch.cuda.CUDAGraph, pool: tuple):
        self.graph, self.pool = graph, pool

    def __enter__(self):
        self.graph.capture_begin(pool=self.pool, capture_error_mode="thread_local")
        return self.graph

    def __exit__(self, kind, error, traceback):
        try:
            self.graph.capture_end()
        except Exception:
            if error is None:  # an error in the captured code explains a failed capture better
                raise
        return False


class _frozen_buffers:
    """Restores an op's buffers (BatchNorm statistics and step counts) after a warm-up pass."""

    def __init__(self, op: nn.Module):
        self.op = op

    def __enter__(self):
        self.saved = [(b, b.detach().clone()) for b in self.op.buffers()]

    def __exit__(self, *exc):
        with torch.no_grad():
            for buffer, value in self.saved:
                buffer.copy_(value)
        return False
