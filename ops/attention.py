"""Multi-head self-attention variants shared by the conformer and transformer ops.

Kinds (bare words in a spec):

- `abs`: full-utterance attention; sinusoidal absolute positions added to the attention input.
- `rel`: full-utterance Transformer-XL / Conformer relative-position attention: learnable `u`/`v`
  biases, sinusoidal relative positions and the rel-shift (ESPnet `RelPositionMultiHeadedAttention`).
- `local`: each frame attends to `w` frames on its left and `l` (default `w`) on its right.
- `chunk`: frames attend to their own and all previous chunks of `c` frames (look-ahead `c - 1`).

`local` and `chunk` take absolute positions like `abs`, so that all of abs/local/chunk are one
fused `scaled_dot_product_attention` call with a boolean mask. Padded keys are always masked;
padded queries may see any key so that no softmax row is empty (their outputs are zeroed anyway).
The family `mhsa` is the attention sub-layer alone as a candidate: `x + MHSA(LayerNorm(x))`.

Heads are split and merged with `einops.rearrange` (plain views and permutes, the same numbers as
`view`/`permute`; traced away by `torch.compile` and captured like any view in a CUDA graph). In
eager mode it costs the host 5-8 us more a call than `view`/`permute` (two calls a layer, CPU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ops.base import UNBOUNDED, Op, lengths_to_mask, mask_padding
from ops.registry import Spec, register

KINDS = ("abs", "rel", "local", "chunk")
DEFAULT_WINDOW = 16
DEFAULT_CHUNK = 16


def sinusoid(positions: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Transformer sinusoidal embedding of (possibly negative) `positions (N,)` -> `(N, dim)`."""
    device = positions.device
    freqs = torch.exp(torch.arange(0, dim, 2, device=device, dtype=dtype) * (-math.log(10000.0) / dim))
    angles = positions.to(dtype)[:, None] * freqs
    emb = torch.zeros(len(positions), dim, device=device, dtype=dtype)
    emb[:, 0::2] = torch.sin(angles)
    emb[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return emb


def rel_shift(scores: torch.Tensor) -> torch.Tensor:
    """`(B, H, T, 2T-1)` scores against relative positions `T-1 .. -(T-1)` -> `(B, H, T, T)`.

    Entry `(i, j)` is taken from column `T-1-i+j` (relative position `i - j`): a strided view
    instead of the pad-and-reshape trick, no copy beyond making the input contiguous.
    """
    B, H, T, P = scores.shape
    scores = scores.contiguous()
    s = scores.stride()
    return scores.as_strided((B, H, T, T), (s[0], s[1], P - 1, 1), scores.storage_offset() + T - 1)


def attention_mask(
    kind: str, valid: torch.Tensor, window: int = 0, right: int = 0, chunk: int = 1
) -> torch.Tensor:
    """`(B, 1, T, T)` bool, True where query `i` may attend key `j`."""
    T = valid.shape[1]
    idx = torch.arange(T, device=valid.device)
    offset = idx[None, :] - idx[:, None]  # key - query
    if kind == "local":
        allowed = (offset >= -window) & (offset <= right)
    elif kind == "chunk":
        allowed = (idx[None, :] // chunk) <= (idx[:, None] // chunk)
    else:
        allowed = torch.ones(T, T, dtype=torch.bool, device=valid.device)
    keys = valid[:, None, :] | ~valid[:, :, None]  # padded keys off, except for padded queries
    return (allowed[None] & keys)[:, None]


class MultiHeadSelfAttention(nn.Module):
    """Self-attention of one kind; `forward(x (B,T,D), valid (B,T)) -> (B,T,D)`."""

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        kind: str = "abs",
        window: int = DEFAULT_WINDOW,
        right: int | None = None,
        chunk: int = DEFAULT_CHUNK,
        dropout: float = 0.1,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"attention kind must be one of {KINDS}, got {kind!r}")
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by {heads} heads")
        self.dim, self.heads, self.kind = dim, heads, kind
        self.window, self.right, self.chunk = window, window if right is None else right, chunk
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        if kind == "rel":
            self.pos = nn.Linear(dim, dim, bias=False)
            self.pos_bias_u = nn.Parameter(torch.zeros(heads, dim // heads))
            self.pos_bias_v = nn.Parameter(torch.zeros(heads, dim // heads))
            nn.init.xavier_uniform_(self.pos_bias_u)
            nn.init.xavier_uniform_(self.pos_bias_v)

    @property
    def lookahead(self) -> int:
        return {"local": self.right, "chunk": self.chunk - 1}.get(self.kind, UNBOUNDED)

    @property
    def streamable(self) -> bool:
        return self.kind in ("local", "chunk")

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        _, T, D = x.shape
        H, dk = self.heads, D // self.heads
        mask = attention_mask(self.kind, valid, self.window, self.right, self.chunk)
        dropout = self.dropout if self.training else 0.0
        if self.kind == "rel":
            q, k, v = rearrange(self.qkv(x), "b t (qkv h d) -> qkv b t h d", qkv=3, h=H)
            positions = torch.arange(T - 1, -T, -1, device=x.device)
            p = rearrange(self.pos(sinusoid(positions, D, x.dtype)), "p (h d) -> p h d", h=H)
            bd = rel_shift(torch.einsum("bthd,phd->bhtp", q + self.pos_bias_v, p)) / math.sqrt(dk)
            bias = bd.masked_fill(~mask, float("-inf"))
            q = (q + self.pos_bias_u).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2), bias, dropout)
        else:
            x = x + sinusoid(torch.arange(T, device=x.device), D, x.dtype)
            q, k, v = rearrange(self.qkv(x), "b t (qkv h d) -> qkv b h t d", qkv=3, h=H)
            y = F.scaled_dot_product_attention(q, k, v, mask, dropout)
        return self.out(rearrange(y, "b h t d -> b t (h d)"))

    def keys_per_query(self, T: int) -> int:
        if self.kind == "local":
            return min(T, self.window + self.right + 1)
        if self.kind == "chunk":  # own chunk and all before it: about half the utterance
            return min(T, (T + self.chunk) // 2)
        return T

    def flops(self, T: int) -> int:
        """Projections plus scores and weighted sum (the masked-out work of local/chunk not counted)."""
        total = 4 * T * self.dim * self.dim + 2 * T * self.keys_per_query(T) * self.dim
        if self.kind == "rel":
            total += (2 * T - 1) * self.dim * self.dim + T * (2 * T - 1) * self.dim
        return total


def attention_from_spec(spec: Spec, dim: int, default_kind: str, dropout: float) -> MultiHeadSelfAttention:
    """The attention a spec names; `w`/`l` need `local` and `c` needs `chunk`."""
    kind = spec.word(KINDS, default_kind)
    n = spec.numbers
    for key, needs in (("w", "local"), ("l", "local"), ("c", "chunk")):
        if key in n and kind != needs:
            raise ValueError(
                f"op spec {spec.text!r}: token {key}{n[key]} only applies to {needs!r} attention"
            )
    return MultiHeadSelfAttention(
        dim,
        heads=n.get("h", 4),
        kind=kind,
        window=n.get("w", DEFAULT_WINDOW),
        right=n.get("l"),
        chunk=n.get("c", DEFAULT_CHUNK),
        dropout=dropout,
    )


ATTENTION_NUMBERS = {"h": 4, "w": None, "l": None, "c": None}


class AttentionBlock(Op):
    """Pre-LN residual self-attention: `x + dropout(MHSA(LayerNorm(x)))` (projected if dims differ)."""

    graph_safe = True

    def __init__(self, attention: MultiHeadSelfAttention, in_dim: int, dropout: float = 0.1):
        super().__init__()
        dim = attention.dim
        self.proj = nn.Linear(in_dim, dim) if in_dim != dim else None
        self.norm = nn.LayerNorm(dim)
        self.attention = attention
        self.dropout = nn.Dropout(dropout)
        self.lookahead, self.streamable = attention.lookahead, attention.streamable

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        if self.proj is not None:
            x = self.proj(x)
        valid = lengths_to_mask(lengths, x.shape[1])
        x = x + self.dropout(self.attention(self.norm(x), valid))
        return mask_padding(x, lengths), lengths

    def flops(self, T: int) -> int:
        proj = T * self.proj.in_features * self.proj.out_features if self.proj is not None else 0
        return proj + self.attention.flops(T)


@register("mhsa", numbers=ATTENTION_NUMBERS, words=KINDS)
def build_mhsa(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    dim = in_dim if out_dim is None else out_dim
    return AttentionBlock(attention_from_spec(spec, dim, "abs", dropout), in_dim, dropout)
