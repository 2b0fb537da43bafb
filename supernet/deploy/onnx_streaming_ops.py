"""The ops' fixed-shape chunk steps, for the streaming ONNX graph (``supernet.deploy.onnx_streaming``).

Each step runs one op on one chunk of frames at its point of the network, with its caches as
fixed-size tensors:

- Every op sees chunk ``k`` of its input as the positions ``k * n - delay .. k * n - delay + n - 1``
  (``Rate``: ``n`` frames a chunk at that point of the network, ``delay`` the frames the ops before
  it hold back). An op that reads ``lookahead`` frames ahead emits its outputs that much later (its
  output ``delay`` is the least one whose inputs have all arrived; chunked attention needs less
  than its declared look-ahead when the chunks line up), and keeps, in a cache of fixed size, the
  frames its next outputs still read: a convolution its last input frames, attention the keys and
  values of its left context, a residual the inputs that wait for its branch (a delay line), an
  LSTM its ``(h, c)``.
- Caches start as zeros. Every op zeroes its input frames before the start of the stream (the
  outputs the delays push out there) and past its end, and attention masks those keys: this is the
  zero padding and the key mask of the full-utterance forward, at every layer, so the outputs of a
  stream equal the full-utterance outputs (float rounding apart), whatever the chunk size.
- ``Clock`` holds the stream's two counters (feature frames fed before this chunk, real frames so
  far): every step reads the positions and validity of its frames from it.

The ops compute with their own layers (``TDNN._block``, ``ConvModule._gate`` / ``_convolve``,
``MultiHeadSelfAttention._heads`` / ``_merge``, ``ConvGatingMLP._split`` / ``_gated``,
``Downsampled._pool``, the LSTM's own ``nn.LSTM``), as their ``forward`` and ``stream`` do; what is
here is the fixed-shape bookkeeping. ``make_step`` picks an op's step, or raises ``NotStreamable``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ops.attention import AttentionBlock, MultiHeadSelfAttention, allowed_keys
from ops.basic import Linear, Skip, Zero
from ops.conformer import ConformerBlock, ConvModule, TransformerLayer
from ops.downsampled import Downsampled
from ops.ebranchformer import EBranchformerBlock
from ops.recurrent import LSTM
from ops.streaming import NotStreamable
from ops.subsample import Conv2dSubsampling4
from ops.tdnn import TDNN
from ops.wrappers import Normed, Projected, Residual


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

    def delayed(self, x: torch.Tensor, name: str, delay: int, state: dict, new: dict, dim: int = 1):
        """``x`` through the delay line cached as ``name`` (``delay_line``)."""
        out, cache = delay_line(x, self.read(state, name), delay, dim)
        self.write(new, name, cache)
        return out

    def windowed(self, x: torch.Tensor, name: str, kept: int, state: dict, new: dict, dim: int = -1):
        """The frames a convolution reads, its last input frames cached as ``name`` (``window``)."""
        frames, cache = window(x, self.read(state, name), kept, dim)
        self.write(new, name, cache)
        return frames


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


class NormedStep(Step):
    """``op(LayerNorm(x))``: the LayerNorm is per frame, so the op's step reads the chunk normalised."""

    def __init__(self, op: Normed, rate: Rate, dim: int):
        super().__init__(rate)
        self.norm = op.norm
        self.inner = make_step(op.op, rate, dim)
        self.rate_out = self.inner.rate_out

    def forward(self, x, clock, state, new):
        return self.inner(self.norm(x), clock, state, new)


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


class EBranchformerStep(Step):
    """``ebranchformer``: ``x + FFN/2``; the attention branch, and the cgMLP branch (its depthwise
    conv over the cached ``LN(g)`` frames, its half ``r`` waiting for it in a delay line); each
    branch's output delayed to the later of the two; the merge conv over the cached merged frames,
    the merged frames and ``x`` waiting for it; ``LN(x + FFN/2)``."""

    def __init__(self, op: EBranchformerBlock, rate: Rate):
        super().__init__(rate)
        self.op, cgmlp, dim = op, op.cgmlp, op.dim
        self.attention = AttentionStep(op.attention, rate)
        gating, self.kept_gate = conv_plan(rate, cgmlp.kernel - 1, 1, cgmlp.padding[0])
        self.rate_merged = Rate(rate.frames, rate.stride, max(self.attention.rate_out.delay, gating.delay))
        self.rate_out, self.kept_merge = conv_plan(
            self.rate_merged, op.merge_kernel - 1, 1, op.merge_padding[0]
        )
        self.delays = {
            "r": gating.delay - rate.delay,  # cgMLP: r waits for its conv
            "attention_out": self.rate_merged.delay - self.attention.rate_out.delay,
            "gating_out": self.rate_merged.delay - gating.delay,
            "merged": self.rate_out.delay - self.rate_merged.delay,  # the merge conv's skip
            "x": self.rate_out.delay - rate.delay,  # the block's residual
        }
        half = cgmlp.units // 2
        widths = {"r": half, "attention_out": dim, "gating_out": dim, "merged": 2 * dim, "x": dim}
        for name, delay in self.delays.items():
            self.add_cache(name, (delay, widths[name]))
        self.add_cache("gate_frames", (half, self.kept_gate))
        self.add_cache("merge_frames", (2 * dim, self.kept_merge))

    def forward(self, x, clock, state, new):
        op, cgmlp = self.op, self.op.cgmlp

        def delayed(frames, name):
            return self.delayed(frames, name, self.delays[name], state, new)

        x = op.project(zero_outside(x, clock.valid_at(self.rate_in)))
        x = x + 0.5 * op.ffn1(x)
        a = self.attention(op.norm_attention(x), clock, state, new)
        r, g = cgmlp._split(op.norm_mlp(x))
        g = zero_outside(g, clock.valid_at(self.rate_in)).transpose(1, 2)
        g = cgmlp.conv(self.windowed(g, "gate_frames", self.kept_gate, state, new)).transpose(1, 2)
        g = cgmlp._gated(delayed(r, "r"), g)
        merged = torch.cat(
            [delayed(op.dropout(a), "attention_out"), delayed(op.dropout(g), "gating_out")], -1
        )
        merged = zero_outside(merged, clock.valid_at(self.rate_merged))
        frames = self.windowed(merged.transpose(1, 2), "merge_frames", self.kept_merge, state, new)
        fused = op.merge_conv(frames).transpose(1, 2)
        x = delayed(x, "x") + op.dropout(op.merge_proj(delayed(merged, "merged") + fused))
        return op.norm_out(x + 0.5 * op.ffn2(x))


class DownsampledStep(Step):
    """``down2-`` / ``down4-``: the learned mean of each group of ``factor`` frames (a stride-``factor``
    window whose cache holds the start of a group split between chunks), the inner op's step at the
    slow rate, each of its frames repeated ``factor`` times. The step's chunk at this layer must be
    a whole number of groups (a fixed number of slow frames a call)."""

    def __init__(self, op: Downsampled, rate: Rate):
        super().__init__(rate)
        f = op.factor
        if rate.frames % f:
            raise NotStreamable(
                f"the step's {rate.frames} frames at this layer are not whole groups of {f} frames: "
                f"make the chunk a multiple of {rate.stride * f} feature frames"
            )
        self.op = op
        slow, self.kept = conv_plan(rate, f - 1, f, 0)
        self.inner = make_step(op.op, slow, op.in_dim)
        self.rate_out = Rate(rate.frames, rate.stride, self.inner.rate_out.delay * f)
        self.add_cache("frames", (self.kept, op.in_dim))

    def forward(self, x, clock, state, new):
        x = zero_outside(x, clock.valid_at(self.rate_in))
        groups = self.windowed(x, "frames", self.kept, state, new, dim=1).narrow(1, 0, self.rate_in.frames)
        y = self.inner(self.op._pool(groups), clock, state, new)
        return zero_outside(repeat(y, "b t c -> b (t f) c", f=self.op.factor), clock.valid_at(self.rate_out))


class LSTMStep(Step):
    """``lstm``: the op's own ``nn.LSTM`` a frame at a time (the chunk's frames unrolled in the
    graph), its ``(h, c)`` cached and held still through the frames outside the stream, as the full
    pass's packed sequence never runs the padding. No delay."""

    def __init__(self, op: LSTM, rate: Rate):
        super().__init__(rate)
        self.op = op
        self.add_cache("h", (op.hidden,))
        self.add_cache("c", (op.hidden,))

    def forward(self, x, clock, state, new):
        valid = clock.valid_at(self.rate_in)
        h, c = self.read(state, "h")[None], self.read(state, "c")[None]  # (layers = 1, B, hidden)
        outputs = []
        for t in range(self.rate_in.frames):
            y, (h_next, c_next) = self.op.rnn(x[:, t : t + 1], (h, c))
            h, c = torch.where(valid[t], h_next, h), torch.where(valid[t], c_next, c)
            outputs.append(y)
        self.write(new, "h", h[0])
        self.write(new, "c", c[0])
        return zero_outside(self.op.dropout(torch.cat(outputs, 1)), valid)


def group_frames(op: nn.Module, stride: int) -> int:
    """Feature frames a step's chunk must be a whole number of for the down-samplers in ``op``
    (its input frames ``stride`` feature frames apart) to see whole groups (1: any)."""
    if isinstance(op, Downsampled):
        slow = stride * op.factor
        return math.lcm(slow, group_frames(op.op, slow))
    inner = getattr(op, "op", None)  # res-, norm- and -e<width> wrappers
    return group_frames(inner, stride) if isinstance(inner, nn.Module) else 1


SUPPORTED = (
    "linear, skip, zero, tdnn, septdnn, res-, norm-, -e<width>, down2- / down4-, conv2d4x, lstm, and "
    "conformer / transformer / mhsa / ebranchformer with local or left-bounded chunk attention"
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
    if isinstance(op, Normed):
        return NormedStep(op, rate, in_dim)
    if isinstance(op, AttentionBlock):
        return AttentionBlockStep(op, rate)
    if isinstance(op, (ConformerBlock, TransformerLayer)):
        return BlockStep(op, rate)
    if isinstance(op, EBranchformerBlock):
        return EBranchformerStep(op, rate)
    if isinstance(op, Downsampled):
        return DownsampledStep(op, rate)
    if isinstance(op, LSTM) and op.directions == 1:
        return LSTMStep(op, rate)
    if isinstance(op, Conv2dSubsampling4):
        return Conv2dSubsamplingStep(op, rate).bind(in_dim)
    if not getattr(op, "streamable", True):
        op.stream(torch.zeros(1, 0, in_dim), None, False)  # its own NotStreamable says why
    raise NotStreamable(f"no fixed-shape ONNX chunk step for {type(op).__name__} (supported: {SUPPORTED})")
