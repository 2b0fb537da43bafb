"""TDNN ops: the ST-NAS `C{k}D{d}` candidates, as `tdnn-k3-d2`, and depthwise-separable `septdnn`.

A block is conv (kernel k, dilation d, stride s, "same" zero padding) -> norm (LayerNorm, or
BatchNorm with `bn`) -> ReLU -> dropout. There is no residual connection, as in ST-NAS's TDNN
blocks: in a search space the residual path is the `skip` candidate, which keeps the candidates
distinct. Non-causal padding is symmetric, so the look-ahead is the right half of the dilated
kernel, `d * (k - 1) - d * (k - 1) // 2`; with `causal` all padding goes left (look-ahead 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ops.base import Op, mask_padding, same_padding, strided_lengths
from ops.registry import Spec, register


class ChannelNorm(nn.Module):
    """LayerNorm over channels or BatchNorm1d, for `(B, C, T)` tensors."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        self.kind = kind
        self.norm = nn.BatchNorm1d(dim) if kind == "bn" else nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "bn":
            return self.norm(x)
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class TDNN(Op):
    """1-D (optionally depthwise-separable) convolution block over time."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        kernel: int,
        dilation: int = 1,
        stride: int = 1,
        causal: bool = False,
        norm: str = "ln",
        separable: bool = False,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.stride = stride
        self.padding = same_padding(kernel, dilation, causal)
        self.lookahead = self.padding[1]
        self.separable = separable
        if separable:
            self.depthwise = nn.Conv1d(
                in_dim, in_dim, kernel, stride, dilation=dilation, groups=in_dim, bias=False
            )
            self.conv = nn.Conv1d(in_dim, out_dim, 1)
        else:
            self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride, dilation=dilation)
        self.norm = ChannelNorm(out_dim, norm)
        self.dropout = nn.Dropout(dropout)
        self.kernel, self.in_dim, self.out_dim = kernel, in_dim, out_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        x = F.pad(mask_padding(x, lengths).transpose(1, 2), self.padding)
        if self.separable:
            x = self.depthwise(x)
        x = self.dropout(torch.relu(self.norm(self.conv(x)))).transpose(1, 2)
        lengths = strided_lengths(lengths, self.stride)
        return mask_padding(x, lengths), lengths

    def flops(self, T: int) -> int:
        frames = self.out_frames(T)
        if self.separable:
            return frames * (self.kernel * self.in_dim + self.in_dim * self.out_dim)
        return frames * self.kernel * self.in_dim * self.out_dim


TDNN_NUMBERS = {"k": 3, "d": 1, "s": 1}
TDNN_WORDS = ("bn", "ln", "causal")


def _build(spec: Spec, in_dim: int, out_dim: int | None, dropout: float, separable: bool) -> Op:
    n = spec.numbers
    return TDNN(
        in_dim,
        in_dim if out_dim is None else out_dim,
        kernel=n["k"],
        dilation=n["d"],
        stride=n["s"],
        causal="causal" in spec.words,
        norm=spec.word(("bn", "ln"), "ln"),
        separable=separable,
        dropout=dropout,
    )


@register("tdnn", numbers=TDNN_NUMBERS, words=TDNN_WORDS)
def build_tdnn(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    return _build(spec, in_dim, out_dim, dropout, separable=False)


@register("septdnn", numbers=TDNN_NUMBERS, words=TDNN_WORDS)
def build_septdnn(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    return _build(spec, in_dim, out_dim, dropout, separable=True)
