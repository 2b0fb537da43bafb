"""E-Branchformer block (`ebranchformer-k31-f4-rel`), after ESPnet's
`espnet2/asr/encoder/e_branchformer_encoder.py` (`EBranchformerEncoderLayer`) and
`espnet2/asr/layers/cgmlp.py` (Kim et al., "E-Branchformer: Branchformer with enhanced merging for
speech recognition", SLT 2022).

    x = x + FFN/2(x)                                   macaron feed-forward (LayerNorm inside)
    a = dropout(MHSA(LN(x)))                           global branch
    g = dropout(cgMLP(LN(x)))                          local branch
    c = concat(a, g); x = x + dropout(Linear(c + depthwise_conv(c)))   enhanced merge
    x = LN(x + FFN/2(x))

cgMLP: Linear(d, u) -> GELU -> CSGU -> Linear(u/2, d), where the convolutional spatial gating unit
splits the u channels in halves `r, g` and returns `dropout(r * conv(LN(g)))` (depthwise conv of
kernel k, identity gate activation, no linear after the conv: ESPnet's defaults; its conv starts
near zero with bias one, so the gate starts open, as ESPnet's `espnet_initialization_fn`).

Tokens: `k` cgMLP conv kernel (default 31), `f` ratio of both the macaron FFNs and the cgMLP (the
LibriSpeech-100 recipe: 1024 units for d = 256, that is 4), `m` merge conv kernel (ESPnet's
default 3), attention `abs|rel|local|chunk` (default `rel`) and its `h`, `w`, `l`, `c`. With
`causal`, or with `chunk` attention, both convs are causal (as the conformer's, WeNet's U2).
`open` leaves out the final LayerNorm, as the conformer's `open` (`ops.conformer`: why).

Declared look-ahead: the merge conv reads its right half over both branches, each reading its own
ahead: `max(attention, cgMLP conv) + merge conv` (full attention: unbounded, not streamable).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ops.attention import ATTENTION_NUMBERS, KINDS, MultiHeadSelfAttention, attention_from_spec
from ops.base import UNBOUNDED, Op, lengths_to_mask, mask_padding, same_padding
from ops.conformer import FeedForward, _Block, final_norm
from ops.registry import Spec, register
from ops.streaming import Delay, Window, no_frames, stream_state

# frames waiting in a stream state: the cgMLP's gate input for its conv, each branch's output for
# the other's, the merge conv's input and the block's input for the merge conv's look-ahead
GATE_INPUT, ATTENTION_OUT, GATING_OUT = Delay("r"), Delay("attention_out"), Delay("gating_out")
MERGED, BLOCK_INPUT = Delay("merged"), Delay("x")


class ConvGatingMLP(nn.Module):
    """cgMLP: `(B, T, d) -> (B, T, d)`; padded frames are zeroed before the depthwise conv."""

    def __init__(self, dim: int, units: int, kernel: int, causal: bool, dropout: float):
        super().__init__()
        if units % 2:
            raise ValueError(f"cgMLP units must be even (split in halves), got {units}")
        half = units // 2
        self.proj_in = nn.Linear(dim, units)
        self.norm = nn.LayerNorm(half)
        self.padding = same_padding(kernel, 1, causal)
        self.conv = nn.Conv1d(half, half, kernel, groups=half)
        nn.init.normal_(self.conv.weight, std=1e-6)
        nn.init.ones_(self.conv.bias)
        self.dropout = nn.Dropout(dropout)
        self.proj_out = nn.Linear(half, dim)
        self.dim, self.units, self.kernel, self.lookahead = dim, units, kernel, self.padding[1]
        self.window = Window(kernel - 1, 1, self.padding[0])

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        r, g = self._split(x)
        g = g.masked_fill(~valid[..., None], 0.0).transpose(1, 2)
        return self._gated(r, self.conv(F.pad(g, self.padding)).transpose(1, 2))

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two halves `r`, `LN(g)` of `GELU(proj_in(x))`, frame by frame."""
        r, g = F.gelu(self.proj_in(x)).chunk(2, dim=-1)
        return r, self.norm(g)

    def _gated(self, r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.dropout(r * g))

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        state = stream_state(state)
        r, g = self._split(x)
        window, count = self.window.step(state, g.transpose(1, 2), final)
        r = GATE_INPUT(state, r, count)
        if window is None:
            return no_frames(x, self.dim), state
        return self._gated(r, self.conv(window).transpose(1, 2)), state

    def flops(self, T: int) -> int:
        half = self.units // 2
        return T * (self.dim * self.units + self.kernel * half + half * self.dim)


class EBranchformerBlock(_Block):
    def __init__(
        self,
        in_dim: int,
        attention: MultiHeadSelfAttention,
        kernel: int,
        ratio: int,
        merge_kernel: int,
        causal: bool,
        dropout: float,
        open_: bool = False,
    ):
        dim = attention.dim
        super().__init__(in_dim, dim)
        self.ffn1 = FeedForward(dim, ratio, dropout)
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = attention
        self.norm_mlp = nn.LayerNorm(dim)
        self.cgmlp = ConvGatingMLP(dim, ratio * dim, kernel, causal, dropout)
        self.merge_padding = same_padding(merge_kernel, 1, causal)
        self.merge_conv = nn.Conv1d(2 * dim, 2 * dim, merge_kernel, groups=2 * dim)
        self.merge_proj = nn.Linear(2 * dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.ffn2 = FeedForward(dim, ratio, dropout)
        self.norm_out = final_norm(dim, open_)
        self.dim, self.merge_kernel = dim, merge_kernel
        self.merge_window = Window(merge_kernel - 1, 1, self.merge_padding[0])
        if attention.lookahead >= UNBOUNDED:
            self.lookahead = UNBOUNDED
        else:
            self.lookahead = max(attention.lookahead, self.cgmlp.lookahead) + self.merge_padding[1]
        self.streamable = attention.streamable

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        x = self.project(x)
        valid = lengths_to_mask(lengths, x.shape[1])
        x = x + 0.5 * self.ffn1(x)
        a = self.dropout(self.attention(self.norm_attention(x), valid))
        g = self.dropout(self.cgmlp(self.norm_mlp(x), valid))
        merged = torch.cat([a, g], dim=-1).masked_fill(~valid[..., None], 0.0)
        fused = self.merge_conv(F.pad(merged.transpose(1, 2), self.merge_padding)).transpose(1, 2)
        x = x + self.dropout(self.merge_proj(merged + fused))
        x = self.norm_out(x + 0.5 * self.ffn2(x))
        return mask_padding(x, lengths), lengths

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        state = stream_state(state)
        x = self.project(x)
        x = x + 0.5 * self.ffn1(x)
        a, state["attention"] = self.attention.stream(self.norm_attention(x), state.get("attention"), final)
        g, state["cgmlp"] = self.cgmlp.stream(self.norm_mlp(x), state.get("cgmlp"), final)
        both = min(ATTENTION_OUT.push(state, a), GATING_OUT.push(state, g))  # the branches' common frames
        a, g = ATTENTION_OUT.pop(state, both), GATING_OUT.pop(state, both)
        merged = torch.cat([self.dropout(a), self.dropout(g)], dim=-1)
        window, count = self.merge_window.step(state.setdefault("merge", {}), merged.transpose(1, 2), final)
        merged, x = MERGED(state, merged, count), BLOCK_INPUT(state, x, count)
        fused = no_frames(merged, 2 * self.dim) if window is None else self.merge_conv(window).transpose(1, 2)
        x = x + self.dropout(self.merge_proj(merged + fused))
        return self.norm_out(x + 0.5 * self.ffn2(x)), state

    def flops(self, T: int) -> int:
        merge = T * (self.merge_kernel * 2 * self.dim + 2 * self.dim * self.dim)
        return (
            self.proj_flops(T)
            + self.ffn1.flops(T)
            + self.attention.flops(T)
            + self.cgmlp.flops(T)
            + merge
            + self.ffn2.flops(T)
        )


@register(
    "ebranchformer", numbers={"k": 31, "f": 4, "m": 3, **ATTENTION_NUMBERS}, words=(*KINDS, "causal", "open")
)
def build_ebranchformer(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    dim = in_dim if out_dim is None else out_dim
    attention = attention_from_spec(spec, dim, "rel", dropout)
    causal = "causal" in spec.words or attention.kind == "chunk"
    n = spec.numbers
    return EBranchformerBlock(
        in_dim, attention, n["k"], n["f"], n["m"], causal, dropout, "open" in spec.words
    )
