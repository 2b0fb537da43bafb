"""Conformer block (`conformer-k15-f4-rel`) and pre-LN transformer encoder layer (`transformer-f4-abs`).

Conformer (Gulati et al. 2020): `x + FFN/2`, `x + MHSA`, `x + ConvModule`, `x + FFN/2`, LayerNorm;
with `open` the final LayerNorm is left out (`conformer-k15-f4-rel-open`): the block is then
`x + g(x)` on one residual stream, as a residual TDNN is, and the network normalises once before
its head (`norm-linear`). In a supernet this keeps what later layers and the head read on one
scale whichever blocks a path holds (a closed block resets the stream to unit scale, a residual
TDNN does not). Issue 16's hypothesis, for `budget_open` to test: that reset is why the supernet
ranks the networks with attention blocks badly.
the conv module is pointwise -> GLU -> depthwise (kernel k) -> BatchNorm (`ln`: LayerNorm) ->
swish -> pointwise. Its depthwise conv is symmetric (look-ahead `(k - 1) // 2`) except with
`causal`, or with `chunk` attention, where it is causal as in WeNet's streaming U2 conformer: a
chunk conformer then reads exactly its chunk ahead. Declared look-ahead = attention + conv.
Both ops project the input with a Linear first when `in_dim != out_dim`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ops.attention import ATTENTION_NUMBERS, KINDS, MultiHeadSelfAttention, attention_from_spec
from ops.base import UNBOUNDED, Op, lengths_to_mask, mask_padding, same_padding
from ops.registry import Spec, register
from ops.streaming import Delay, Window, no_frames, stream_state
from ops.tdnn import ChannelNorm

# residual inputs waiting for the sub-layer they skip (its look-ahead), in a block's stream state
ATTENTION_RESIDUAL, CONV_RESIDUAL = Delay("x_attention"), Delay("x_conv")


class FeedForward(nn.Module):
    """LayerNorm -> Linear(d, f*d) -> activation -> dropout -> Linear(f*d, d) -> dropout."""

    def __init__(self, dim: int, ratio: int, dropout: float, activation: type[nn.Module] = nn.SiLU):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, ratio * dim),
            activation(),
            nn.Dropout(dropout),
            nn.Linear(ratio * dim, dim),
            nn.Dropout(dropout),
        )
        self.dim, self.ratio = dim, ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def flops(self, T: int) -> int:
        return 2 * T * self.dim * self.ratio * self.dim


class ConvModule(nn.Module):
    """The conformer convolution module; padded frames are zeroed before the depthwise conv."""

    def __init__(self, dim: int, kernel: int, causal: bool, norm: str, dropout: float):
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.padding = same_padding(kernel, 1, causal)
        self.depthwise = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.norm = ChannelNorm(dim, norm)
        self.pointwise_out = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(dropout)
        self.dim, self.kernel, self.lookahead = dim, kernel, self.padding[1]
        self.window = Window(kernel - 1, 1, self.padding[0])

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self._gate(x).masked_fill(~valid[:, None, :], 0.0)
        return self._convolve(F.pad(x, self.padding))

    def _gate(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, T, d) -> (B, d, T)`: LayerNorm, pointwise conv, GLU (frame by frame)."""
        return F.glu(self.pointwise_in(self.norm_in(x).transpose(1, 2)), dim=1)

    def _convolve(self, padded: torch.Tensor) -> torch.Tensor:
        """Padded `(B, d, T)` -> `(B, T', d)`: depthwise conv, norm, swish, pointwise conv, dropout."""
        x = F.silu(self.norm(self.depthwise(padded)))
        return self.dropout(self.pointwise_out(x)).transpose(1, 2)

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        """The convolution state: the last `kernel - 1` gated frames (the look-ahead's among them
        when not causal)."""
        state = stream_state(state)
        gated = self._gate(x) if x.shape[1] else x.new_zeros(x.shape[0], self.dim, 0)  # Conv1d needs a frame
        window, _ = self.window.step(state, gated, final)
        return (no_frames(x, self.dim) if window is None else self._convolve(window)), state

    def flops(self, T: int) -> int:
        return T * (2 * self.dim * self.dim + self.kernel * self.dim + self.dim * self.dim)


def final_norm(dim: int, open_: bool) -> nn.Module:
    """A closed block's final LayerNorm, or none for an `open` one (module docstring: why)."""
    return nn.Identity() if open_ else nn.LayerNorm(dim)


class _Block(Op):
    """Shared plumbing: optional input projection, masks, flops of the input projection."""

    graph_safe = True  # conformer and transformer layers

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim) if in_dim != dim else None

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else self.proj(x)

    def proj_flops(self, T: int) -> int:
        return 0 if self.proj is None else T * self.proj.in_features * self.proj.out_features


class ConformerBlock(_Block):
    def __init__(
        self,
        in_dim: int,
        attention: MultiHeadSelfAttention,
        kernel: int,
        ratio: int,
        causal: bool,
        norm: str,
        dropout: float,
        open_: bool = False,
    ):
        dim = attention.dim
        super().__init__(in_dim, dim)
        self.ffn1 = FeedForward(dim, ratio, dropout)
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = attention
        self.dropout = nn.Dropout(dropout)
        self.conv = ConvModule(dim, kernel, causal, norm, dropout)
        self.ffn2 = FeedForward(dim, ratio, dropout)
        self.norm_out = final_norm(dim, open_)
        bounded = attention.lookahead < UNBOUNDED
        self.lookahead = attention.lookahead + self.conv.lookahead if bounded else UNBOUNDED
        self.streamable = attention.streamable

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        x = self.project(x)
        valid = lengths_to_mask(lengths, x.shape[1])
        x = x + 0.5 * self.ffn1(x)
        x = x + self.dropout(self.attention(self.norm_attention(x), valid))
        x = x + self.conv(x, valid)
        x = self.norm_out(x + 0.5 * self.ffn2(x))
        return mask_padding(x, lengths), lengths

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        state = stream_state(state)
        x = self.project(x)
        x = x + 0.5 * self.ffn1(x)
        a, state["attention"] = self.attention.stream(self.norm_attention(x), state.get("attention"), final)
        x = ATTENTION_RESIDUAL(state, x, a.shape[1]) + self.dropout(a)
        c, state["conv"] = self.conv.stream(x, state.get("conv"), final)
        x = CONV_RESIDUAL(state, x, c.shape[1]) + c
        return self.norm_out(x + 0.5 * self.ffn2(x)), state

    def flops(self, T: int) -> int:
        return (
            self.proj_flops(T)
            + self.ffn1.flops(T)
            + self.attention.flops(T)
            + self.conv.flops(T)
            + self.ffn2.flops(T)
        )


class TransformerLayer(_Block):
    """Pre-LN encoder layer: `x + MHSA(LN(x))`, then `x + FFN(LN(x))` (ReLU FFN)."""

    def __init__(self, in_dim: int, attention: MultiHeadSelfAttention, ratio: int, dropout: float):
        dim = attention.dim
        super().__init__(in_dim, dim)
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = attention
        self.dropout = nn.Dropout(dropout)
        self.ffn = FeedForward(dim, ratio, dropout, activation=nn.ReLU)
        self.lookahead, self.streamable = attention.lookahead, attention.streamable

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        x = self.project(x)
        valid = lengths_to_mask(lengths, x.shape[1])
        x = x + self.dropout(self.attention(self.norm_attention(x), valid))
        x = x + self.ffn(x)
        return mask_padding(x, lengths), lengths

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        state = stream_state(state)
        x = self.project(x)
        a, state["attention"] = self.attention.stream(self.norm_attention(x), state.get("attention"), final)
        x = ATTENTION_RESIDUAL(state, x, a.shape[1]) + self.dropout(a)
        return x + self.ffn(x), state

    def flops(self, T: int) -> int:
        return self.proj_flops(T) + self.attention.flops(T) + self.ffn.flops(T)


@register(
    "conformer", numbers={"k": 31, "f": 4, **ATTENTION_NUMBERS}, words=(*KINDS, "bn", "ln", "causal", "open")
)
def build_conformer(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    dim = in_dim if out_dim is None else out_dim
    attention = attention_from_spec(spec, dim, "rel", dropout)
    causal = "causal" in spec.words or attention.kind == "chunk"
    norm = spec.word(("bn", "ln"), "bn")
    n = spec.numbers
    return ConformerBlock(in_dim, attention, n["k"], n["f"], causal, norm, dropout, "open" in spec.words)


@register("transformer", numbers={"f": 4, **ATTENTION_NUMBERS}, words=KINDS)
def build_transformer(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    dim = in_dim if out_dim is None else out_dim
    return TransformerLayer(
        in_dim, attention_from_spec(spec, dim, "abs", dropout), spec.numbers["f"], dropout
    )
