"""Parameter-free and pointwise ops: `skip`, `zero`, `linear`.

`skip` and `zero` may take a stride (`skip-s3` keeps every third frame) so that a strided edge of a
search space can still offer them.
"""

from __future__ import annotations

import torch
from torch import nn

from ops.base import Op, mask_padding, strided_lengths
from ops.registry import Spec, register
from ops.streaming import stream_state


def _strided_step(state: dict, frames: int, stride: int) -> tuple[int, int]:
    """``(first kept frame of this chunk, frames kept)`` of every ``stride``-th frame of a stream."""
    seen = state.get("seen", 0)
    state["seen"] = seen + frames
    return (-seen) % stride, -(-(seen + frames) // stride) - -(-seen // stride)


class Skip(Op):
    """Identity (every `stride`-th frame); parameter-free."""

    parameter_free = True

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x, lengths):
        lengths = strided_lengths(lengths, self.stride)
        if self.input_masked:  # every kept frame past a length is a padded input frame: already zero
            return x[:, :: self.stride], lengths
        return mask_padding(x[:, :: self.stride], lengths), lengths

    def stream(self, x, state, final):
        state = stream_state(state)
        first, _ = _strided_step(state, x.shape[1], self.stride)
        return x[:, first :: self.stride], state

    def flops(self, T: int) -> int:
        return 0


class Zero(Op):
    """All-zero output: the DARTS "none" edge; parameter-free."""

    parameter_free = True

    def __init__(self, out_dim: int, stride: int = 1):
        super().__init__()
        self.out_dim, self.stride = out_dim, stride

    def forward(self, x, lengths):
        return x.new_zeros(x.shape[0], self.out_frames(x.shape[1]), self.out_dim), strided_lengths(
            lengths, self.stride
        )

    def stream(self, x, state, final):
        state = stream_state(state)
        _, kept = _strided_step(state, x.shape[1], self.stride)
        return x.new_zeros(x.shape[0], kept, self.out_dim), state

    def flops(self, T: int) -> int:
        return 0


class Linear(Op):
    """Frame-wise `nn.Linear`: input projection, CTC head, or a cheap candidate."""

    graph_safe = True

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        return mask_padding(self.proj(x), lengths), lengths

    def stream(self, x, state, final):
        return self.proj(x), stream_state(state)

    def flops(self, T: int) -> int:
        return T * self.proj.in_features * self.proj.out_features


@register("skip", numbers={"s": 1})
def build_skip(spec: Spec, in_dim: int, out_dim: int | None) -> Op:
    if out_dim is not None and out_dim != in_dim:
        raise ValueError(f"op spec {spec.text!r}: skip needs in_dim == out_dim, got {in_dim} -> {out_dim}")
    return Skip(spec.numbers["s"])


@register("zero", numbers={"s": 1})
def build_zero(spec: Spec, in_dim: int, out_dim: int | None) -> Op:
    return Zero(in_dim if out_dim is None else out_dim, spec.numbers["s"])


@register("linear")
def build_linear(spec: Spec, in_dim: int, out_dim: int | None) -> Op:
    return Linear(in_dim, in_dim if out_dim is None else out_dim)
