"""The stateful streaming chunk step as one ONNX graph: fixed shapes, the caches as inputs and outputs.

``ops.streaming`` streams in PyTorch with caches that grow and shrink (nothing at the start, the
held-back frames flushed at the end) and emits a varying number of frames a chunk. An ONNX graph
wants fixed shapes, so the step here (``StreamingStep``) takes exactly ``C`` feature frames a call
and gives exactly ``C / subsampling`` output frames, each op's outputs a fixed number of frames
behind its inputs:

- Every op sees chunk ``k`` of its input as the positions ``k * n - delay .. k * n - delay + n - 1``
  (``Rate``: ``n`` frames a chunk at that point of the network, ``delay`` the frames the ops before
  it hold back). An op that reads ``lookahead`` frames ahead emits its outputs that much later (its
  output ``delay`` is the least one whose inputs have all arrived; chunked attention needs less
  than its declared look-ahead when the chunks line up), and keeps, in a cache of fixed size, the
  frames its next outputs still read: a convolution its last input frames, attention the keys and
  values of its left context, a residual the inputs that wait for its branch (a delay line).
- Caches start as zeros. Every op zeroes its input frames before the start of the stream (the
  outputs the delays push out there) and past its end, and attention masks those keys: this is the
  zero padding and the key mask of the full-utterance forward, at every layer, so the outputs of a
  stream equal the full-utterance outputs (float rounding apart), whatever the chunk size.
- Two counters travel with the caches: ``offset`` (feature frames fed before this chunk: the
  positions) and ``length`` (real frames fed so far: where the stream ends). The input
  ``valid_frames`` is ``C`` for every chunk but the last, which is zero-padded to ``C`` and says how
  many frames are real; then ``flush_chunks`` chunks of zeros (``valid_frames`` 0) bring out the
  frames still held back. The output ``frame_valid`` marks the output frames that belong to the
  stream (it is False for those before its start and past its end).

The ops compute with their own layers (``TDNN._block``, ``ConvModule._gate`` / ``_convolve``,
``MultiHeadSelfAttention._heads`` / ``_merge``, ...), as their ``forward`` and ``stream`` do; what is
here is the fixed-shape bookkeeping. Supported: linear, skip, zero, tdnn / septdnn (strided, causal),
``res-`` and ``-e<width>`` around them, conv2d4x, and conformer / transformer / mhsa layers with
``local`` or left-bounded ``chunk`` attention (``chunk-c8-w16``). Anything else (full-context
attention, chunked attention without ``w`` whose cache grows with the stream, recurrent layers,
down-sampled or E-Branchformer layers, front-end ops) is refused before export, naming the layer.

Latency: the step's delay (``delay_frames`` in the metadata) is the sum of the ops' delays. Chunked
attention whose attention chunk is longer than the step's chunk at that layer delays every layer
by the part of its chunk still to come, so choose ``--chunk-ms`` a multiple of the attention chunk
(at the layer's frame rate) to get no more delay than the look-ahead.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ops.attention import AttentionBlock, MultiHeadSelfAttention, allowed_keys
from ops.basic import Linear, Skip, Zero
from ops.conformer import ConformerBlock, ConvModule, TransformerLayer
from ops.streaming import NotStreamable
from ops.subsample import Conv2dSubsampling4
from ops.tdnn import TDNN
from ops.wrappers import Projected, Residual
from supernet.deploy.runtime import CTCModel
from supernet.errors import UserError

COUNTERS = ("offset", "length")  # int64 scalars: feature frames fed before this chunk; real ones so far
INPUTS = ("features", "valid_frames")
OUTPUTS = ("log_probs", "frame_valid")
STATE_IN, STATE_OUT = "in.", "out."  # prefixes of a state's input and output names


@dataclass(frozen=True)
class Rate:
    """A chunk at one point of the network: ``frames`` of ``stride`` input frames each; chunk ``k``
    holds the positions ``k * frames - delay`` onwards."""

    frames: int
    stride: int
    delay: int


class Clock:
    """The stream's counters in the graph: the positions and validity of a chunk's frames."""

    def __init__(self, offset: torch.Tensor, length: torch.Tensor):
        self.offset, self.length = offset, length

    def positions(self, rate: Rate) -> torch.Tensor:
        """``(frames,)`` int64 positions of the chunk at ``rate`` (negative before the start)."""
        first = self.offset // rate.stride - rate.delay
        return first + torch.arange(rate.frames, dtype=torch.int64)

    def valid(self, positions: torch.Tensor, stride: int) -> torch.Tensor:
        """True at positions of the stream: ``0 <= p < ceil(length / stride)``."""
        end = (self.length + stride - 1) // stride
        return (positions >= 0) & (positions < end)

    def valid_at(self, rate: Rate) -> torch.Tensor:
        return self.valid(self.positions(rate), rate.stride)


def zero_outside(x: torch.Tensor, valid: torch.Tensor, time_dim: int = 1) -> torch.Tensor:
    """``x`` with the frames where ``valid`` is False set to zero (``where``: no NaN leaks)."""
    shape = [1] * x.dim()
    shape[time_dim] = valid.shape[0]
    return torch.where(valid.view(shape), x, torch.zeros((), dtype=x.dtype))


def conv_plan(rate: Rate, span: int, stride: int, left: int) -> tuple[Rate, int]:
    """``(output rate, frames kept)`` of a convolution whose output ``j`` reads the input positions
    ``j * stride - left .. j * stride - left + span`` (zeros outside the stream). The output delay
    is the least whose last output's window has arrived; the cache keeps the frames before the
    chunk that its first output reads (a negative count: the chunk's first frames are not read)."""
    if rate.frames % stride:
        raise NotStreamable(f"a chunk of {rate.frames} frames does not split into stride {stride}")
    delay = -(-(rate.delay + span - left + 1) // stride) - 1
    kept = delay * stride + left - rate.delay
    return Rate(rate.frames // stride, rate.stride * stride, delay), kept


def window(x: torch.Tensor, cache: torch.Tensor | None, kept: int, dim: int):
    """``(the frames the convolution reads, the next cache)``: the cache then the chunk."""
    if kept <= 0:
        return x.narrow(dim, -kept, x.shape[dim] + kept), None
    frames = torch.cat([cache, x], dim)
    return frames, frames.narrow(dim, frames.shape[dim] - kept, kept)


def delay_line(x: torch.Tensor, cache: torch.Tensor | None, delay: int, dim: int = 1):
    """``(x delayed by delay frames, the next cache)``: a first-in first-out line of fixed size."""
    if delay == 0:
        return x, None
    frames = torch.cat([cache, x], dim)
    n = x.shape[dim]
    return frames.narrow(dim, 0, n), frames.narrow(dim, n, delay)


class Step(nn.Module):
    """One op's fixed-shape chunk step: ``forward(x, clock, state, new) -> y``, reading its caches
    from ``state`` and writing their next values to ``new`` (both keyed by the caches' full names,
    ``self.prefix`` + name). ``caches``: name -> shape after the batch axis, all starting at zero."""

    def __init__(self, rate: Rate):
        super().__init__()
        self.rate_in = self.rate_out = rate
        self.caches: dict[str, tuple[int, ...]] = {}
        self.prefix = ""

    def add_cache(self, name: str, shape: tuple[int, ...]) -> None:
        if all(size > 0 for size in shape):  # a cache of no frames is none
            self.caches[name] = tuple(shape)

    def read(self, state: dict, name: str) -> torch.Tensor | None:
        return state.get(self.prefix + name) if name in self.caches else None

    def write(self, new: dict, name: str, value: torch.Tensor | None) -> None:
        if name in self.caches:
            new[self.prefix + name] = value


class LinearStep(Step):
    def __init__(self, op: Linear, rate: Rate):
        super().__init__(rate)
        self.proj = op.proj

    def forward(self, x, clock, state, new):
        return self.proj(zero_outside(x, clock.valid_at(self.rate_in)))


class StridedStep(Step):
    """``skip-sS`` (every ``S``-th frame) and ``zero-sS``."""

    def __init__(self, op: Skip | Zero, rate: Rate):
        super().__init__(rate)
        self.rate_out, self.kept = conv_plan(rate, 0, op.stride, 0)
        self.stride, self.zero_dim = op.stride, op.out_dim if isinstance(op, Zero) else None

    def forward(self, x, clock, state, new):
        if self.zero_dim is not None:
            return x.new_zeros(x.shape[0], self.rate_out.frames, self.zero_dim)
        frames, _ = window(zero_outside(x, clock.valid_at(self.rate_in)), None, self.kept, 1)
        return frames[:, :: self.stride]


class TDNNStep(Step):
    """The TDNN's own block (conv without time padding, norm, ReLU) over its cached window."""

    def __init__(self, op: TDNN, rate: Rate):
        super().__init__(rate)
        self.op = op
        self.rate_out, self.kept = conv_plan(rate, op.dilation * (op.kernel - 1), op.stride, op.padding[0])
        self.add_cache("frames", (op.in_dim, self.kept))

    def forward(self, x, clock, state, new):
        x = zero_outside(x, clock.valid_at(self.rate_in)).transpose(1, 2)
        frames, cache = window(x, self.read(state, "frames"), self.kept, -1)
        self.write(new, "frames", cache)
        return self.op._block(frames)


class ResidualStep(Step):
    """``x + op(x)``, ``x`` waiting in a delay line for the branch's outputs."""

    def __init__(self, op: Residual, rate: Rate, dim: int):
        super().__init__(rate)
        self.branch = make_step(op.op, rate, dim)
        self.rate_out = self.branch.rate_out
        self.delay = self.rate_out.delay - rate.delay
        self.add_cache("x", (self.delay, dim))

    def forward(self, x, clock, state, new):
        x = zero_outside(x, clock.valid_at(self.rate_in))
        delayed, cache = delay_line(x, self.read(state, "x"), self.delay)
        self.write(new, "x", cache)
        return delayed + self.branch(x, clock, state, new)


class ProjectedStep(Step):
    """``out(op(in(x)))``: the op's step at its inner width."""

    def __init__(self, op: Projected, rate: Rate):
        super().__init__(rate)
        self.proj_in, self.proj_out = op.proj_in, op.proj_out
        self.inner = make_step(op.op, rate, op.width)
        self.rate_out = self.inner.rate_out

    def forward(self, x, clock, state, new):
        return self.proj_out(self.inner(self.proj_in(x), clock, state, new))


class AttentionStep(Step):
    """Local or left-bounded chunked self-attention over cached keys and values.

    Queries wait in a delay line until the keys they read have come (local: ``right`` frames;
    chunk: the end of their chunk); the keys and values of the ``kept`` frames before the chunk
    stay cached. The mask is the full pass's: the kind's allowed keys, keys outside the stream off
    (queries outside it see every key, so that no softmax row is empty)."""

    def __init__(self, attention: MultiHeadSelfAttention, rate: Rate, where: str = "attention"):
        super().__init__(rate)
        if attention.kind not in ("local", "chunk"):
            raise NotStreamable(
                f"{attention.kind!r} attention reads the whole utterance (local or chunk attention streams)"
            )
        if attention.kind == "chunk" and attention.left is None:
            raise NotStreamable(
                f"chunk attention with no left bound (c{attention.chunk} without w) keeps every key: "
                "its cache grows with the stream and has no fixed shape; bound it (e.g. chunk-c8-w16)"
            )
        self.attention = attention
        delay, kept = self._plan(rate)
        self.rate_out = Rate(rate.frames, rate.stride, delay)
        self.delay, self.kept = delay - rate.delay, kept
        heads, depth = attention.heads, attention.dim // attention.heads
        self.add_cache("q", (heads, self.delay, depth))
        self.add_cache("k", (heads, kept, depth))
        self.add_cache("v", (heads, kept, depth))
        # positions are shifted by a multiple of the chunk so that floor division sees none negative
        lowest = rate.delay + self.delay + kept + rate.frames
        self.shift = attention.chunk * (lowest // attention.chunk + 1) if attention.kind == "chunk" else 0

    def _keys(self, query: int) -> tuple[int, int]:
        """The first and last key position ``query`` reads."""
        a = self.attention
        if a.kind == "local":
            return query - a.window, query + a.right
        start = query // a.chunk * a.chunk
        return start - a.left, start + a.chunk - 1

    def _plan(self, rate: Rate) -> tuple[int, int]:
        """``(output delay, keys kept)``: the least delay whose queries have all their keys, over
        every alignment of the step's chunks with the attention's (they repeat after ``chunk``)."""
        n, d = rate.frames, rate.delay
        alignments = range(self.attention.chunk if self.attention.kind == "chunk" else 1)
        delay = d
        while any(self._keys(k * n - delay + n - 1)[1] > k * n - d + n - 1 for k in alignments):
            delay += 1
        kept = max(k * n - d - self._keys(k * n - delay)[0] for k in alignments)
        return delay, max(kept, 0)

    def forward(self, x, clock, state, new):
        a = self.attention
        q, k, v = a._heads(x, clock.positions(self.rate_in))
        q, cache_q = delay_line(q, self.read(state, "q"), self.delay, dim=2)
        self.write(new, "q", cache_q)
        if self.kept:
            k, v = torch.cat([self.read(state, "k"), k], 2), torch.cat([self.read(state, "v"), v], 2)
            self.write(new, "k", k[:, :, -self.kept :])
            self.write(new, "v", v[:, :, -self.kept :])
        r = self.rate_in
        queries = clock.positions(self.rate_out)
        keys = clock.positions(Rate(r.frames + self.kept, r.stride, r.delay + self.kept))
        allowed = allowed_keys(
            a.kind, queries + self.shift, keys + self.shift, a.window, a.right, a.chunk, a.left
        )
        mask = (allowed & clock.valid(keys, r.stride)[None, :]) | ~clock.valid(queries, r.stride)[:, None]
        return a._merge(F.scaled_dot_product_attention(q, k, v, mask))


class AttentionBlockStep(Step):
    """``mhsa``: ``x + MHSA(LayerNorm(x))``, ``x`` delayed to meet the attention's outputs."""

    def __init__(self, op: AttentionBlock, rate: Rate):
        super().__init__(rate)
        self.op = op
        self.attention = AttentionStep(op.attention, rate)
        self.rate_out = self.attention.rate_out
        self.add_cache("x", (self.attention.delay, op.attention.dim))

    def forward(self, x, clock, state, new):
        x = zero_outside(x, clock.valid_at(self.rate_in))
        if self.op.proj is not None:
            x = self.op.proj(x)
        y = self.attention(self.op.norm(x), clock, state, new)
        delayed, cache = delay_line(x, self.read(state, "x"), self.attention.delay)
        self.write(new, "x", cache)
        return delayed + self.op.dropout(y)


class ConvModuleStep(Step):
    """The conformer convolution module: gate, zero outside the stream, the cached depthwise window."""

    def __init__(self, conv: ConvModule, rate: Rate):
        super().__init__(rate)
        self.conv = conv
        self.rate_out, self.kept = conv_plan(rate, conv.kernel - 1, 1, conv.padding[0])
        self.add_cache("frames", (conv.dim, self.kept))

    def forward(self, x, clock, state, new):
        gated = zero_outside(self.conv._gate(x), clock.valid_at(self.rate_in), time_dim=2)
        frames, cache = window(gated, self.read(state, "frames"), self.kept, -1)
        self.write(new, "frames", cache)
        return self.conv._convolve(frames)


class BlockStep(Step):
    """A conformer (``x + FFN/2``, ``x + MHSA``, ``x + conv``, ``x + FFN/2``, LayerNorm) or a
    transformer layer (``x + MHSA``, ``x + FFN``): each residual waits for its sub-layer."""

    def __init__(self, op: ConformerBlock | TransformerLayer, rate: Rate):
        super().__init__(rate)
        self.op = op
        dim = op.attention.dim
        self.attention = AttentionStep(op.attention, rate)
        self.add_cache("x_attention", (self.attention.delay, dim))
        self.rate_out = self.attention.rate_out
        self.conv = None
        if isinstance(op, ConformerBlock):
            self.conv = ConvModuleStep(op.conv, self.rate_out)
            self.conv_delay = self.conv.rate_out.delay - self.rate_out.delay
            self.add_cache("x_conv", (self.conv_delay, dim))
            self.rate_out = self.conv.rate_out

    def forward(self, x, clock, state, new):
        op = self.op
        x = op.project(zero_outside(x, clock.valid_at(self.rate_in)))
        if self.conv is not None:
            x = x + 0.5 * op.ffn1(x)
        a = self.attention(op.norm_attention(x), clock, state, new)
        delayed, cache = delay_line(x, self.read(state, "x_attention"), self.attention.delay)
        self.write(new, "x_attention", cache)
        x = delayed + op.dropout(a)
        if self.conv is None:
            return x + op.ffn(x)
        c = self.conv(x, clock, state, new)
        delayed, cache = delay_line(x, self.read(state, "x_conv"), self.conv_delay)
        self.write(new, "x_conv", cache)
        x = delayed + c
        return op.norm_out(x + 0.5 * op.ffn2(x))


class Conv2dSubsamplingStep(Step):
    """``conv2d4x``: each stride-2 conv over its cached time window (frequency padded by the conv's
    own setting), the half-rate frames zeroed outside the stream between them, as in ``forward``."""

    def __init__(self, op: Conv2dSubsampling4, rate: Rate):
        super().__init__(rate)
        self.op = op
        self.rate_half, self.kept1 = conv_plan(rate, 2, 2, 1)
        self.rate_out, self.kept2 = conv_plan(self.rate_half, 2, 2, 1)

    def bind(self, feature_dim: int) -> Conv2dSubsamplingStep:
        """Its caches, for ``feature_dim`` input channels."""
        self.add_cache("conv1", (1, self.kept1, feature_dim))
        self.add_cache("conv2", (self.op.channels, self.kept2, self.op.half_freq))
        return self

    def forward(self, x, clock, state, new):
        op = self.op
        x = zero_outside(x, clock.valid_at(self.rate_in))[:, None]  # (B, 1, T, F)
        frames, cache = window(x, self.read(state, "conv1"), self.kept1, 2)
        self.write(new, "conv1", cache)
        c1, c2 = op.conv1, op.conv2
        x = torch.relu(F.conv2d(frames, c1.weight, c1.bias, c1.stride, (0, c1.padding[1])))
        x = zero_outside(x, clock.valid_at(self.rate_half), time_dim=2)
        frames, cache = window(x, self.read(state, "conv2"), self.kept2, 2)
        self.write(new, "conv2", cache)
        x = torch.relu(F.conv2d(frames, c2.weight, c2.bias, c2.stride, (0, c2.padding[1])))
        return op.dropout(op.out(rearrange(x, "b c t f -> b t (c f)")))


SUPPORTED = (
    "linear, skip, zero, tdnn, septdnn, res-, -e<width>, conv2d4x, and conformer / transformer / "
    "mhsa with local or left-bounded chunk attention"
)


def make_step(op: nn.Module, rate: Rate, in_dim: int) -> Step:
    """The fixed-shape step of ``op`` whose input is at ``rate`` with ``in_dim`` channels;
    ``NotStreamable`` for an op it has none for (or that cannot stream)."""
    if isinstance(op, Linear):
        return LinearStep(op, rate)
    if isinstance(op, (Skip, Zero)):
        return StridedStep(op, rate)
    if isinstance(op, TDNN):
        return TDNNStep(op, rate)
    if isinstance(op, Residual):
        return ResidualStep(op, rate, in_dim)
    if isinstance(op, Projected):
        return ProjectedStep(op, rate)
    if isinstance(op, AttentionBlock):
        return AttentionBlockStep(op, rate)
    if isinstance(op, (ConformerBlock, TransformerLayer)):
        return BlockStep(op, rate)
    if isinstance(op, Conv2dSubsampling4):
        return Conv2dSubsamplingStep(op, rate).bind(in_dim)
    if not getattr(op, "streamable", True):
        op.stream(torch.zeros(1, 0, in_dim), None, False)  # its own NotStreamable says why
    raise NotStreamable(f"no fixed-shape ONNX chunk step for {type(op).__name__} (supported: {SUPPORTED})")


def layer_name(op: nn.Module) -> str:
    return getattr(op, "spec", "") or type(op).__name__


class StreamingStep(nn.Module):
    """One chunk of ``chunk`` normalised feature frames through a ``DerivedNet``, fixed shapes.

    ``forward(features (B, C, F), valid_frames (), offset (), length (), *caches (B, ...))`` ->
    ``(log_probs (B, C / subsampling, V), frame_valid (C / subsampling,), offset, length, *caches)``
    (the counters and caches for the next chunk). ``states`` lists the counters and caches in that
    order: name, shape (``None`` for the batch axis) and dtype; all start at zero.
    """

    def __init__(self, net: nn.Module, chunk: int):
        super().__init__()
        from supernet.deploy.streaming import named_ops

        spec = net.spec
        if chunk % spec.total_stride:
            raise UserError(
                f"a chunk of {chunk} frames is not a multiple of the subsampling {spec.total_stride} "
                f"of architecture {spec.name!r}"
            )
        self.chunk, self.spec = chunk, spec
        rate, width, steps = Rate(chunk, 1, 0), spec.feature_dim, []
        for where, op in named_ops(net.eval()):
            try:
                step = make_step(op, rate, width)
            except NotStreamable as err:
                raise UserError(
                    f"architecture {spec.name!r}: {where} ({layer_name(op)!r}) cannot be exported as a "
                    f"streaming ONNX chunk step: {err}"
                ) from err
            top = where.replace("[", ".").replace("]", "")
            for path, sub in step.named_modules():
                if isinstance(sub, Step):  # nested steps (a residual's branch) name their caches too
                    sub.prefix = f"{top}.{path}." if path else f"{top}."
            steps.append(step)
            rate, width = step.rate_out, spec.dim
        self.steps = nn.ModuleList(steps)
        self.rate_out = rate
        self.caches = {
            s.prefix + name: shape for step in steps for s in step.modules() if isinstance(s, Step)
            for name, shape in s.caches.items()
        }  # fmt: skip

    @property
    def states(self) -> list[dict[str, Any]]:
        counters = [{"name": name, "shape": [], "dtype": "int64"} for name in COUNTERS]
        caches = [
            {"name": name, "shape": [None, *shape], "dtype": "float32"} for name, shape in self.caches.items()
        ]
        return counters + caches

    def initial_state(self, batch: int) -> list[torch.Tensor]:
        counters = [torch.zeros((), dtype=torch.int64) for _ in COUNTERS]
        return counters + [torch.zeros(batch, *shape) for shape in self.caches.values()]

    @property
    def delay_frames(self) -> int:
        """Feature frames the step's outputs lag its input: a call brings out the output frames of
        the features up to ``delay_frames`` before the end of its chunk (0: all of them)."""
        return self.rate_out.delay * self.rate_out.stride

    @property
    def flush_chunks(self) -> int:
        """Chunks of zeros after the last that bring out every held-back frame."""
        return -(-self.rate_out.delay // self.rate_out.frames)

    def forward(self, features, valid_frames, offset, length, *caches):
        length = length + valid_frames
        clock = Clock(offset, length)
        state, new = dict(zip(self.caches, caches)), {}
        x = features
        for step in self.steps:
            x = step(x, clock, state, new)
        log_probs = x.float().log_softmax(dim=-1)
        frame_valid = clock.valid_at(self.rate_out)
        return (log_probs, frame_valid, offset + self.chunk, length, *(new[name] for name in self.caches))


def step_frames(spec, chunk_ms: float) -> int:
    """Feature frames a chunk of ``chunk_ms``, rounded up to a multiple of the subsampling."""
    from supernet.deploy.streaming import chunk_frames

    frames = chunk_frames(spec, chunk_ms)
    return -(-frames // spec.total_stride) * spec.total_stride


# ----------------------------------------------------------------------------- running it


class OnnxStream:
    """A streaming ONNX model (``supernet export --streaming``) in onnxruntime, numpy only:
    ``accept(features (B, T, F) normalised, any T)`` -> the log-probs of the output frames now
    complete; ``finish()`` the rest. What docs/deploy.md's loop does, with partial chunks buffered."""

    def __init__(self, session, metadata: dict[str, Any]):
        self.session, self.metadata = session, metadata
        self.streaming = metadata["streaming"]
        self.chunk = int(self.streaming["chunk_frames"])
        self.reset()

    def reset(self, batch: int = 1) -> None:
        self.batch = batch
        self.state = {
            s["input"]: np.zeros([batch if d is None else d for d in s["shape"]], dtype=s["dtype"])
            for s in self.streaming["states"]
        }
        self.pending: np.ndarray | None = None
        self.chunk_seconds: list[float] = []

    def _step(self, chunk: np.ndarray, valid: int) -> np.ndarray:
        began = time.perf_counter()
        feeds = {"features": chunk.astype(np.float32), "valid_frames": np.array(valid, dtype=np.int64)}
        names = [o.name for o in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(None, {**feeds, **self.state})))
        self.state = {s["input"]: outputs[s["output"]] for s in self.streaming["states"]}
        self.chunk_seconds.append(time.perf_counter() - began)
        return outputs["log_probs"][:, outputs["frame_valid"]]

    def accept(self, features: np.ndarray) -> np.ndarray:
        frames = features if self.pending is None else np.concatenate([self.pending, features], 1)
        whole = frames.shape[1] // self.chunk * self.chunk
        out = [self._step(frames[:, s : s + self.chunk], self.chunk) for s in range(0, whole, self.chunk)]
        self.pending = frames[:, whole:]
        return _joined(out, frames.shape[0], self.metadata["vocab_size"])

    def finish(self) -> np.ndarray:
        """The last partial chunk (zero-padded) and the chunks of zeros that flush the stream."""
        dim = int(self.metadata["features"]["dim"])
        pending = self.pending if self.pending is not None else np.zeros((self.batch, 0, dim), np.float32)
        last = np.zeros((self.batch, self.chunk, dim), np.float32)
        last[:, : pending.shape[1]] = pending
        out = [self._step(last, pending.shape[1])] if pending.shape[1] else []
        zeros = np.zeros_like(last)
        out += [self._step(zeros, 0) for _ in range(int(self.streaming["flush_chunks"]))]
        self.pending = None
        return _joined(out, last.shape[0], self.metadata["vocab_size"])


def _joined(parts: list[np.ndarray], batch: int, vocab: int) -> np.ndarray:
    return np.concatenate(parts, 1) if parts else np.zeros((batch, 0, vocab), np.float32)


def stream_onnx(stream: OnnxStream, features: np.ndarray) -> np.ndarray:
    """One utterance's (or a batch of equal-length ones') normalised features ``(B, T, F)``
    through the streaming model: its log-probs ``(B, ceil(T / subsampling), V)``."""
    stream.reset(features.shape[0])
    return np.concatenate([stream.accept(features), stream.finish()], 1)


def is_streaming_onnx(path: str | Path) -> bool:
    """Whether an ``.onnx`` file is a streaming chunk step (its metadata has ``streaming``)."""
    from supernet.deploy.metadata import read_metadata

    return "streaming" in read_metadata(path)


class OnnxStreamingCTC(CTCModel):
    """A streaming ONNX model as a ``supernet.deploy.runtime.CTCModel``: features per utterance
    (as its metadata describes them, global CMVN included; they are frame-local, so a stream of
    audio gives the same frames), then the chunk step in onnxruntime, one utterance at a time.
    What ``supernet transcribe model.onnx --stream`` runs; ``chunk_seconds`` holds every chunk
    step's compute time."""

    def __init__(self, path: str | Path, threads: int = 0):
        from supernet.deploy.metadata import read_metadata, tokenizer_of
        from supernet.deploy.runtime import _pipeline
        from supernet.deploy.session import ort_session

        self.metadata = read_metadata(path)
        if "streaming" not in self.metadata:
            raise UserError(
                f"{path}: --stream runs a retrain checkpoint (.ckpt) or a streaming ONNX model; this is a "
                "whole-utterance ONNX model (run it without --stream, or export the chunk step with "
                "`supernet export CKPT -o model.onnx --streaming --chunk-ms N`)"
            )
        self.stream = OnnxStream(ort_session(path, threads), self.metadata)
        self.tokenizer = tokenizer_of(self.metadata)
        self.sample_rate = int(self.metadata["features"]["sample_rate"])
        self.chunk_ms = float(self.metadata["streaming"]["chunk_ms"])
        self.pipeline = _pipeline(self.metadata["features"])
        self.chunk_seconds: list[float] = []

    def log_probs(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            features, frames = self.pipeline(audio.float(), lengths)
        rows = []
        for row, n in zip(features.numpy(), frames.tolist()):
            rows.append(torch.from_numpy(stream_onnx(self.stream, row[None, :n])[0]))
            self.chunk_seconds += self.stream.chunk_seconds
        out_lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), out_lengths


# ----------------------------------------------------------------------------- export


def streaming_metadata(module, step: StreamingStep, chunk_ms: float) -> dict[str, Any]:
    """The whole-utterance model's metadata (tokens, blank, features with the global CMVN, ...)
    with the chunk step's: its inputs, outputs, chunk, delay and states."""
    from supernet.deploy.metadata import model_metadata

    spec = module.spec
    frame_ms = 1000 / spec.input_rate
    metadata = model_metadata(module, "features", step.chunk)
    states = [
        {**s, "input": STATE_IN + s["name"], "output": STATE_OUT + s["name"], "initial": 0}
        for s in step.states
    ]
    metadata.update(
        input_names=[*INPUTS, *(s["input"] for s in states)],
        output_names=[*OUTPUTS, *(s["output"] for s in states)],
        streaming={
            "chunk_frames": step.chunk,
            "chunk_ms": step.chunk * frame_ms,
            "requested_chunk_ms": chunk_ms,
            "output_frames": step.rate_out.frames,
            "delay_frames": step.delay_frames,
            "delay_ms": step.delay_frames * frame_ms,
            "flush_chunks": step.flush_chunks,
            "states": states,
            "how": "per call: features (B, chunk_frames, F) normalised as `features` says, valid_frames = "
            "the real frames in it (chunk_frames; fewer in the last, zero-padded; 0 in the flush_chunks "
            "chunks of zeros after it), and every state input (zeros at the start of a stream, then the "
            "matching outputs of the previous call). Keep log_probs[:, frame_valid]: their concatenation "
            "is the whole utterance's log-probs. Batch rows are streams of the same length.",
        },
    )
    return metadata


def export_streaming(
    checkpoint: str | Path,
    output: str | Path,
    chunk_ms: float,
    opset: int = 18,
    check_audio: list[str | Path] | None = None,
    check_files: int = 8,
) -> dict[str, Any]:
    """``export_streaming_module`` of a retrain checkpoint (trained with global CMVN)."""
    from supernet.deploy.checkpoint import load_module

    module = load_module(checkpoint)
    report = export_streaming_module(
        module, output, chunk_ms, opset, check_audio, check_files, str(checkpoint)
    )
    return {"checkpoint": str(checkpoint), **report}


def export_streaming_module(
    module,
    output: str | Path,
    chunk_ms: float,
    opset: int = 18,
    check_audio: list[str | Path] | None = None,
    check_files: int = 8,
    source: str = "the model",
) -> dict[str, Any]:
    """Write the chunk step of ``module`` (eval mode, ``module.cmvn`` set) to ``output`` with its
    metadata, and check it: streamed through onnxruntime, check utterances must give the
    full-utterance PyTorch log-probs (within ``TOLERANCE``) and greedy texts."""
    from supernet.deploy.metadata import write_props
    from supernet.deploy.onnx_export import ExportFailed, save

    if chunk_ms <= 0:
        raise UserError(f"--chunk-ms must be positive, got {chunk_ms:g}")
    if getattr(module, "cmvn", None) is None:
        raise UserError(
            f"{source}: trained with per-utterance feature normalisation, which reads the whole "
            "utterance and cannot stream; retrain with --data.normalisation global"
        )
    output = Path(output)
    step = StreamingStep(module.net, step_frames(module.spec, chunk_ms)).eval()
    example = (
        torch.randn(2, step.chunk, module.spec.feature_dim),
        torch.tensor(step.chunk, dtype=torch.int64),
        *step.initial_state(2),
    )
    try:
        proto = export_step(step, example, opset)
    except ExportFailed as err:
        raise UserError(
            f"architecture {module.spec.name!r}: the streaming step does not export: {err.detail}"
        ) from err
    metadata = streaming_metadata(module, step, chunk_ms)
    write_props(proto, metadata)
    save(proto, output)
    parity = check_streaming_parity(module, output, check_audio, check_files)
    return {
        "arch": module.spec.name,
        "onnx": str(output),
        "bytes": output.stat().st_size,
        "opset": opset,
        "input": "features",
        "streaming": {k: v for k, v in metadata["streaming"].items() if k not in ("states", "how")},
        "states": len(step.states),
        "state_numbers": sum(math.prod(s["shape"][1:]) for s in step.states[len(COUNTERS) :]),
        "parity": parity.to_dict(),
        "note": misaligned_note(step),
    }


def misaligned_note(step: StreamingStep) -> str | None:
    """Why the step delays more than it need, when its chunk does not line up with chunked attention."""
    frame_ms = 1000 / step.spec.input_rate
    chunks = {
        s.attention.chunk * s.rate_in.stride * frame_ms
        for s in step.modules()
        if isinstance(s, AttentionStep)
        and s.attention.kind == "chunk"
        and s.rate_in.frames % s.attention.chunk
    }
    if not chunks:
        return None
    longest = max(chunks)
    return (
        f"the step's {step.chunk * frame_ms:g} ms are not a whole number of the {longest:g} ms attention chunks: "
        f"each such layer finishes part of its chunk a step later (delay {step.delay_frames * frame_ms:g} ms); "
        f"a --chunk-ms that is a multiple of {longest:g} avoids it"
    )


def export_step(step: StreamingStep, example: tuple, opset: int):
    """The ``onnx.ModelProto`` of the step, the batch axis dynamic; ``ExportFailed``.

    The TorchScript exporter first: the step has fixed shapes but for the batch, which is what it
    handles, and it takes about 1-2 s where ``torch.export`` and the dynamo exporter take 20-50 s
    (tiny tdnn_d and chunked conformer_s, this 2-core machine). The dynamo path is the fallback
    (the TorchScript exporter is deprecated in torch)."""
    from supernet.deploy.onnx_export import ExportFailed, gist, quiet, to_onnx
    from supernet.deploy.traceable import traceable_ops

    inputs = [*INPUTS, *(STATE_IN + s["name"] for s in step.states)]
    outputs = [*OUTPUTS, *(STATE_OUT + s["name"] for s in step.states)]
    scalars = {
        "valid_frames",
        "frame_valid",
        *(prefix + c for prefix in (STATE_IN, STATE_OUT) for c in COUNTERS),
    }
    batched = [name for name in inputs + outputs if name not in scalars]
    log, buffer = io.StringIO(), io.BytesIO()
    with torch.no_grad(), traceable_ops(), quiet(log):
        try:
            torch.onnx.export(
                step, example, buffer, dynamo=False, opset_version=opset, input_names=inputs,
                output_names=outputs, dynamic_axes={name: {0: "batch"} for name in batched},
            )  # fmt: skip
            import onnx

            return onnx.load_from_string(buffer.getvalue())
        except Exception as err:  # the TorchScript exporter's many error kinds
            first = ExportFailed(gist(err), log.getvalue())
    try:
        return to_onnx(trace_step(step, example), example, inputs, outputs, opset)
    except ExportFailed as err:
        raise ExportFailed(f"{first.detail}; with torch.export: {err.detail}", err.log) from err


def trace_step(step: StreamingStep, example: tuple) -> torch.export.ExportedProgram:
    """``torch.export`` of the step, the batch axis dynamic (features and caches); ``ExportFailed``."""
    from supernet.deploy.onnx_export import ExportFailed, gist, quiet
    from supernet.deploy.traceable import traceable_ops

    batch = torch.export.Dim.DYNAMIC
    dynamic = [{0: batch}, None, None, None, tuple({0: batch} for _ in step.caches)]  # *caches: one entry
    log = io.StringIO()
    with torch.no_grad(), traceable_ops(), quiet(log):
        try:
            return torch.export.export(step, example, dynamic_shapes=dynamic, strict=False)
        except Exception as err:  # torch.export raises many kinds; all mean "does not trace"
            raise ExportFailed(gist(err), log.getvalue()) from err


def check_streaming_parity(module, path: Path, check_audio=None, check_files: int = 8):
    """The streaming ONNX model against the full-utterance PyTorch network, one utterance at a time."""
    from supernet.deploy.export import check_waveforms
    from supernet.deploy.graph import feature_pipeline
    from supernet.deploy.metadata import read_metadata
    from supernet.deploy.parity import TOLERANCE, Parity, texts
    from supernet.deploy.runtime import pad_waveforms
    from supernet.deploy.session import ort_session

    stream = OnnxStream(ort_session(path), read_metadata(path))
    audio, lengths = pad_waveforms(check_waveforms(module, check_audio, check_files))
    with torch.no_grad():
        features, frames = feature_pipeline(module)(audio, lengths)
        reference, ref_lengths = (t.numpy() for t in module.net(features, frames))
    diff, valid, same_lengths, got = 0.0, 0, True, np.zeros_like(reference)
    for b, n in enumerate(frames.tolist()):
        log_probs = stream_onnx(stream, features[b : b + 1, :n].numpy())[0]
        m = int(ref_lengths[b])
        if log_probs.shape[0] != m:
            same_lengths, diff = False, float("inf")
            continue
        got[b, :m] = log_probs
        diff, valid = max(diff, float(np.abs(log_probs - reference[b, :m]).max(initial=0.0))), valid + m
    torch_texts = texts(reference, ref_lengths, module.tokenizer)
    onnx_texts = texts(got, ref_lengths, module.tokenizer)
    return Parity(
        diff,
        valid,
        len(ref_lengths),
        same_lengths,
        torch_texts == onnx_texts,
        torch_texts,
        onnx_texts,
        TOLERANCE,
    )
