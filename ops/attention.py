"""Multi-head self-attention variants shared by the conformer and transformer ops.

Kinds (bare words in a spec):

- `abs`: full-utterance attention; sinusoidal absolute positions added to the attention input.
- `rel`: full-utterance Transformer-XL / Conformer relative-position attention: learnable `u`/`v`
  biases, sinusoidal relative positions and the rel-shift (ESPnet `RelPositionMultiHeadedAttention`).
- `local`: each frame attends to `w` frames on its left and `l` (default `w`) on its right.
- `chunk`: frames attend to their own and all previous chunks of `c` frames (look-ahead `c - 1`);
  with `w`, only to the `w` frames before their chunk (WeNet's left chunks, in frames), which
  bounds what a stream keeps (`MultiHeadSelfAttention.stream`).

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
from ops.streaming import Delay, NotStreamable, no_frames, stream_state

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


def allowed_keys(
    kind: str,
    queries: torch.Tensor,
    keys: torch.Tensor,
    window: int = 0,
    right: int = 0,
    chunk: int = 1,
    left: int | None = None,
) -> torch.Tensor:
    """`(Tq, Tk)` bool, True where the query at position `queries[i]` may attend the key at
    `keys[j]` (frame positions in the utterance); `left` bounds chunk attention's left context."""
    if kind == "local":
        offset = keys[None, :] - queries[:, None]  # key - query
        return (offset >= -window) & (offset <= right)
    if kind == "chunk":
        allowed = (keys[None, :] // chunk) <= (queries[:, None] // chunk)
        if left is not None:
            # not `&=`: the TorchScript ONNX exporter has no in-place and (the streaming chunk step)
            allowed = allowed & (keys[None, :] >= (queries[:, None] // chunk) * chunk - left)
        return allowed
    # shape[0], not len(): a traced export keeps the time axis symbolic
    return torch.ones(queries.shape[0], keys.shape[0], dtype=torch.bool, device=queries.device)


def attention_mask(
    kind: str, valid: torch.Tensor, window: int = 0, right: int = 0, chunk: int = 1, left: int | None = None
) -> torch.Tensor:
    """`(B, 1, T, T)` bool, True where query `i` may attend key `j`."""
    idx = torch.arange(valid.shape[1], device=valid.device)
    allowed = allowed_keys(kind, idx, idx, window, right, chunk, left)
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
        left: int | None = None,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"attention kind must be one of {KINDS}, got {kind!r}")
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by {heads} heads")
        self.dim, self.heads, self.kind = dim, heads, kind
        self.window, self.right, self.chunk = window, window if right is None else right, chunk
        self.left = left  # chunk attention: frames before the chunk it reads (None: all)
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
        mask = attention_mask(self.kind, valid, self.window, self.right, self.chunk, self.left)
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
            q, k, v = self._heads(x, torch.arange(T, device=x.device))
            y = F.scaled_dot_product_attention(q, k, v, mask, dropout)
        return self._merge(y)

    def _heads(self, x: torch.Tensor, positions: torch.Tensor):
        """`q, k, v (B, H, T, d)` of frames `x` at `positions` (absolute sinusoids added)."""
        x = x + sinusoid(positions, x.shape[-1], x.dtype)
        return rearrange(self.qkv(x), "b t (qkv h d) -> qkv b h t d", qkv=3, h=self.heads)

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        return self.out(rearrange(y, "b h t d -> b t (h d)"))

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        """Attention over cached keys and values: a query waits for its look-ahead (local: `right`
        frames; chunk: the end of its chunk), a key stays while a waiting or later query reads it
        (local: `window` frames back; chunk: `left` frames before the chunk, or forever with no
        `left`). Returns the attention output (after `out`) of the queries answered."""
        if not self.streamable:
            raise NotStreamable(
                f"{self.kind!r} attention reads the whole utterance (local or chunk attention streams)"
            )
        state = stream_state(state)
        seen = state.get("seen", 0)
        new = self._heads(x, torch.arange(seen, seen + x.shape[1], device=x.device))
        for name, part in zip("qkv", new):
            state[name] = torch.cat([state[name], part], 2) if name in state else part
        state["seen"] = seen = seen + x.shape[1]
        first_query, first_key = state.get("first_query", 0), state.get("first_key", 0)
        answerable = seen - self.right if self.kind == "local" else seen // self.chunk * self.chunk
        ready = max(0, (seen if final else answerable) - first_query)
        y = no_frames(x, self.dim)
        if ready:
            queries = torch.arange(first_query, first_query + ready, device=x.device)
            keys = torch.arange(first_key, seen, device=x.device)
            mask = allowed_keys(self.kind, queries, keys, self.window, self.right, self.chunk, self.left)
            y = self._merge(
                F.scaled_dot_product_attention(state["q"][:, :, :ready], state["k"], state["v"], mask)
            )
            state["q"] = state["q"][:, :, ready:]
            first_query += ready
        if self.kind == "local":
            needed = first_query - self.window
        else:
            needed = 0 if self.left is None else first_query // self.chunk * self.chunk - self.left
        drop = max(0, needed - first_key)
        state["k"], state["v"] = state["k"][:, :, drop:], state["v"][:, :, drop:]
        state["first_query"], state["first_key"] = first_query, first_key + drop
        return y, state

    def keys_per_query(self, T: int) -> int:
        if self.kind == "local":
            return min(T, self.window + self.right + 1)
        if self.kind == "chunk" and self.left is not None:  # the left bound and about half its chunk
            return min(T, self.left + (self.chunk + 1) // 2)
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
    """The attention a spec names; `l` needs `local`, `c` needs `chunk`, and `w` either (local:
    the window each side; chunk: the frames before the chunk)."""
    kind = spec.word(KINDS, default_kind)
    n = spec.numbers
    for key, needs in (("w", ("local", "chunk")), ("l", ("local",)), ("c", ("chunk",))):
        if key in n and kind not in needs:
            raise ValueError(
                f"op spec {spec.text!r}: token {key}{n[key]} only applies to "
                f"{' or '.join(map(repr, needs))} attention"
            )
    return MultiHeadSelfAttention(
        dim,
        heads=n.get("h", 4),
        kind=kind,
        window=n.get("w", DEFAULT_WINDOW),
        right=n.get("l"),
        chunk=n.get("c", DEFAULT_CHUNK),
        dropout=dropout,
        left=n.get("w") if kind == "chunk" else None,
    )


ATTENTION_NUMBERS = {"h": 4, "w": None, "l": None, "c": None}
RESIDUAL = Delay("x")  # a residual's input, waiting for the attention's look-ahead


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

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        state = stream_state(state)
        if self.proj is not None:
            x = self.proj(x)
        y, state["attention"] = self.attention.stream(self.norm(x), state.get("attention"), final)
        return RESIDUAL(state, x, y.shape[1]) + self.dropout(y), state

    def flops(self, T: int) -> int:
        proj = T * self.proj.in_features * self.proj.out_features if self.proj is not None else 0
        return proj + self.attention.flops(T)


@register("mhsa", numbers=ATTENTION_NUMBERS, words=KINDS)
def build_mhsa(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    dim = in_dim if out_dim is None else out_dim
    return AttentionBlock(attention_from_spec(spec, dim, "abs", dropout), in_dim, dropout)
