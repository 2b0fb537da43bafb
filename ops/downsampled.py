"""`down2-<spec>` / `down4-<spec>`: any op run at half or a quarter of the frame rate, its output
repeated back to the input's rate (Zipformer's middle stacks, Yao et al. 2023).

`down2-conformer-k15-f4-rel` averages each pair of frames (weights learned through a softmax, the
mean at start, as Zipformer's SimpleDownsample), runs the conformer on the half-rate sequence and
repeats each of its frames twice (SimpleUpsample). The attention and convolutions cost about half,
and the kernel and attention window cover twice the time. The output keeps the input's frames, so
it mixes with the other candidates of an edge and CTC keeps its frame rate; `res-down2-...` is the
residual block, so a search chooses the frame rate block by block (where to downsample and how
much) without changing the network's output rate.

Look-ahead: the op's own, in slow frames, plus the rest of the last pair it reads:
`factor * lookahead + factor - 1` (exact at the pairs' first frames). Padding: the input is zeroed
past each length before pairing, so a batch gives one utterance's numbers.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ops.base import UNBOUNDED, Op, mask_padding, strided_lengths
from ops.registry import register_wrapper
from ops.streaming import Delay, stream_state
from ops.wrappers import build_branch

UNGROUPED = Delay("ungrouped")  # a stream's frames not yet a whole group of `factor`

FACTORS = (2, 4)


class Downsampled(Op):
    """`repeat(op(weighted_mean(x over `factor` frames)))`, the input's frames and channels."""

    def __init__(self, op: Op, in_dim: int, factor: int):
        super().__init__()
        self.op, self.factor, self.in_dim = op, factor, in_dim
        op.input_masked = True  # its input is made here from masked frames: padding is zero
        self.weights = nn.Parameter(torch.zeros(factor))
        inner = op.lookahead
        self.lookahead = UNBOUNDED if inner >= UNBOUNDED else factor * inner + factor - 1
        self.streamable, self.graph_safe = op.streamable, op.graph_safe

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        if not self.input_masked:
            x = mask_padding(x, lengths)
        T, f = x.shape[1], self.factor
        y, _ = self.op(self._pool(x), strided_lengths(lengths, f))
        return mask_padding(repeat(y, "b t c -> b (t f) c", f=f)[:, :T], lengths), lengths

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, T, C)` -> `(B, ceil(T / f), C)`: the learned weighted mean of each group of frames."""
        f = self.factor
        x = F.pad(x, (0, 0, 0, (-x.shape[1]) % f))  # the last group's missing frames are zeros (padding)
        groups = rearrange(x, "b (t f) c -> b t f c", f=f)
        return torch.einsum("btfc,f->btc", groups, self.weights.softmax(0).to(x.dtype))

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        """Whole groups go to the op (the last one, zero-padded, at the end); its frames are
        repeated back and the output cut to the stream's length."""
        state = stream_state(state)
        f = self.factor
        queued = UNGROUPED.push(state, x)
        slow = self._pool(UNGROUPED.pop(state, queued if final else queued // f * f))
        y, state["op"] = self.op.stream(slow, state.get("op"), final)
        y = repeat(y, "b t c -> b (t f) c", f=f)
        state["seen"] = state.get("seen", 0) + x.shape[1]
        if final:
            y = y[:, : state["seen"] - state.get("emitted", 0)]
        state["emitted"] = state.get("emitted", 0) + y.shape[1]
        return y, state

    def flops(self, T: int) -> int:
        return self.op.flops(math.ceil(T / self.factor)) + T * self.in_dim

    def extra_repr(self) -> str:
        return f"factor={self.factor}, " + super().extra_repr()


def build_downsampled(inner: str, in_dim: int, out_dim: int | None, factor: int, **kwargs) -> Op:
    why = "its slow frames are repeated back to the input's rate"
    return Downsampled(build_branch(inner, in_dim, out_dim, f"down{factor}-", why, **kwargs), in_dim, factor)


for _factor in FACTORS:
    register_wrapper(f"down{_factor}")(partial(build_downsampled, factor=_factor))
