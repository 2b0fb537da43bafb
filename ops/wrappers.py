"""Forms that apply to any op: a residual layer (`res-<spec>`), a LayerNorm before it
(`norm-<spec>`) and an inner width (`e<int>`).

- `res-tdnn-k3-d1` is the layer `y = x + op(x)`. In a search space this is what makes depth
  searchable: the `skip` candidate of a residual edge (`y = x`) is the same layer with its branch
  removed, so choosing it drops the layer instead of swapping one function for another. A residual
  needs the op to keep the frames and channels of its input: a stride other than 1 or
  `in_dim != out_dim` is refused, and so are `res-skip` / `res-zero` (`2x`, `x`: write `skip`).
- `tdnn-k3-d1-e96` runs the op at 96 channels between a Linear `in_dim -> 96` and a Linear
  `96 -> out_dim`: a width choice that keeps every candidate of an edge at the network's width
  (MixedOp's rule), at the cost of the two projections (`2 * T * dim * width` multiply-adds).
  With both, `res-tdnn-k3-d1-e96` is a bottleneck residual block: `x + out(tdnn(in(x)))`.
- `norm-linear` is `linear(LayerNorm(x))`: the head of a network whose blocks leave their output on
  one residual stream (`conformer-...-open`, `res-...`), normalised once, as pre-LN encoders end.

All forward the inner op's declarations (stride, look-ahead, streamable, graph_safe; the residual
adds no look-ahead, the projections are per frame), and count the projections in `flops`.
"""

from __future__ import annotations

import torch
from torch import nn

from ops.base import Op, mask_padding
from ops.registry import Spec, build, register_width, register_wrapper
from ops.streaming import Delay, stream_state

BRANCH_INPUT = Delay("x")  # a residual's input, waiting for its branch's look-ahead


class Residual(Op):
    """`x + op(x)`: padded frames stay zero (the op zeroes its own, `x` is masked unless clean)."""

    def __init__(self, op: Op):
        super().__init__()
        self.op = op
        self.stride, self.lookahead, self.streamable = op.stride, op.lookahead, op.streamable
        self.graph_safe = op.graph_safe

    @property
    def input_masked(self) -> bool:  # the inner op reads the same input
        return self.op.input_masked

    @input_masked.setter
    def input_masked(self, value: bool) -> None:
        self.op.input_masked = value

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        y, out_lengths = self.op(x, lengths)
        return (x if self.input_masked else mask_padding(x, lengths)) + y, out_lengths

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        state = stream_state(state)
        y, state["op"] = self.op.stream(x, state.get("op"), final)
        return BRANCH_INPUT(state, x, y.shape[1]) + y, state

    def flops(self, T: int) -> int:
        return self.op.flops(T)


class Normed(Op):
    """`op(LayerNorm(x))`; the LayerNorm's bias reaches padded frames: the op masks its input itself
    (the network's `input_masked` mark stays on this wrapper and must not reach the op)."""

    def __init__(self, op: Op, in_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.op = op
        self.stride, self.lookahead, self.streamable = op.stride, op.lookahead, op.streamable
        self.graph_safe = op.graph_safe

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        return self.op(self.norm(x), lengths)

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        return self.op.stream(self.norm(x), state, final)

    def flops(self, T: int) -> int:
        return self.op.flops(T)


class Projected(Op):
    """`out(op(in(x)))`: the op at an inner width between two frame-wise Linears."""

    def __init__(self, op: Op, in_dim: int, out_dim: int, width: int):
        super().__init__()
        self.proj_in = nn.Linear(in_dim, width)
        self.op = op
        self.proj_out = nn.Linear(width, out_dim)
        self.stride, self.lookahead, self.streamable = op.stride, op.lookahead, op.streamable
        self.graph_safe = op.graph_safe
        self.in_dim, self.out_dim, self.width = in_dim, out_dim, width

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        # the projection's bias reaches padded frames: the inner op masks its input itself
        y, lengths = self.op(self.proj_in(x), lengths)
        return mask_padding(self.proj_out(y), lengths), lengths

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        y, state = self.op.stream(self.proj_in(x), state, final)
        return self.proj_out(y), state

    def flops(self, T: int) -> int:
        return (
            T * self.in_dim * self.width + self.op.flops(T) + self.out_frames(T) * self.width * self.out_dim
        )


def build_branch(inner: str, in_dim: int, out_dim: int | None, what: str, why: str, **kwargs) -> Op:
    """The op inside a wrapper that keeps its input's frames (``res-``, ``down2-``): stride 1 and
    weights of its own, else a ValueError saying which wrapper (``what``) needs it and ``why``."""
    op = build(inner, in_dim, out_dim, **kwargs)
    if op.stride != 1:
        raise ValueError(
            f"{what} needs stride 1 ({why}), {inner!r} has stride {op.stride}; subsample in a layer of its own"
        )
    if op.parameter_free:
        raise ValueError(f"{inner!r} has no branch to add: {what} needs an op (use 'skip' to drop a layer)")
    return op


@register_wrapper("res")
def build_residual(inner: str, in_dim: int, out_dim: int | None, **kwargs) -> Op:
    if out_dim is not None and out_dim != in_dim:
        raise ValueError(f"a residual layer needs in_dim == out_dim, got {in_dim} -> {out_dim}")
    return Residual(
        build_branch(inner, in_dim, in_dim, "a residual layer", "x + op(x) keeps the frames of x", **kwargs)
    )


@register_wrapper("norm")
def build_normed(inner: str, in_dim: int, out_dim: int | None, **kwargs) -> Op:
    op = build(inner, in_dim, out_dim, **kwargs)
    if op.parameter_free:
        raise ValueError(f"{inner!r} is parameter-free: norm- would add a LayerNorm with nothing to feed")
    return Normed(op, in_dim)


@register_width
def build_projected(op: Op, spec: Spec, in_dim: int, out_dim: int, width: int) -> Op:
    if op.parameter_free:
        raise ValueError(f"{spec.family} is parameter-free: it has no inner width")
    return Projected(op, in_dim, out_dim, width)
