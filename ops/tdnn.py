"""TDNN ops: the ST-NAS `C{k}D{d}` candidates, as `tdnn-k3-d2`, and depthwise-separable `septdnn`.

A block is conv (kernel k, dilation d, stride s, "same" zero padding) -> norm (BatchNorm, or
LayerNorm with `ln`) -> ReLU -> dropout. BatchNorm is the default: a deep stack of TDNNs with
per-frame LayerNorm and no residual sat on the CTC blank plateau (every frame ends up alike),
while the same stack with BatchNorm learned at once. There is no residual connection, as in ST-NAS's TDNN
blocks: in a search space the residual path is the `skip` candidate, which keeps the candidates
distinct. Non-causal padding is symmetric, so the look-ahead is the right half of the dilated
kernel, `d * (k - 1) - d * (k - 1) // 2`; with `causal` all padding goes left (look-ahead 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ops.base import Op, lengths_to_mask, mask_padding, same_padding, strided_lengths
from ops.registry import Spec, register
from ops.streaming import Window, no_frames, stream_state


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


class FrameNorm(nn.Module):
    """LayerNorm over channels or BatchNorm over every frame, for channels-last `(B, T, C)` tensors.

    Under autocast, LayerNorm keeps the compute dtype (its kernel still accumulates the statistics
    in float32): autocast's float32 output would double the bytes of the ReLU, dropout and masking
    that follow and add a cast before the next convolution.
    """

    def __init__(self, dim: int, kind: str):
        super().__init__()
        self.kind = kind
        self.norm = nn.BatchNorm1d(dim) if kind == "bn" else nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "bn":  # statistics over batch and time, as BatchNorm1d over (B, C, T)
            return self.norm(x.reshape(-1, x.shape[-1])).view(x.shape)
        norm = self.norm
        if not torch.is_autocast_enabled(x.device.type) or x.dtype == torch.float32:
            return norm(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(
                x, norm.normalized_shape, norm.weight.to(x.dtype), norm.bias.to(x.dtype), norm.eps
            )


class TDNN(Op):
    """1-D (optionally depthwise-separable) convolution block over time.

    Channels last throughout: `(B, T, C)` is viewed, without a copy, as the NHWC image
    `(B, C, 1, T)` and convolved by a `(1, k)` kernel (cuDNN's NHWC kernels), so the output is
    again `(B, T, C)` and the norm reads contiguous channels. The "same" padding is the
    convolution's own (no padded copy of the input) wherever the stride allows it.
    """

    graph_safe = True

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
        self.stride, self.dilation = stride, dilation
        self.padding = same_padding(kernel, dilation, causal)
        self.lookahead = self.padding[1]
        self.separable = separable
        # parameters keep Conv1d's shapes (checkpoints and weight sharing are unchanged)
        if separable:
            self.depthwise = nn.Conv1d(
                in_dim, in_dim, kernel, stride, dilation=dilation, groups=in_dim, bias=False
            )
            self.conv = nn.Conv1d(in_dim, out_dim, 1)
        else:
            self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride, dilation=dilation)
        self.norm = FrameNorm(out_dim, norm)
        self.dropout = nn.Dropout(dropout)
        self.kernel, self.in_dim, self.out_dim = kernel, in_dim, out_dim
        self.conv_padding, self.first_output, self.pad_input = self._plan_padding()
        self.window = Window(dilation * (kernel - 1), stride, self.padding[0])

    def _plan_padding(self) -> tuple[int, int, tuple[int, int] | None]:
        """``(symmetric padding, first output kept, explicit input padding or None)``.

        Output ``j`` must read input frames ``j * s - left + i * d``. With symmetric padding
        ``p >= left`` the convolution's output ``j'`` reads ``j' * s - p + i * d``, which is output
        ``j`` at ``j' = j + (p - left) / s``: exact when ``s`` divides ``p - left``. Extra zeros on
        the right only add outputs past the end, which are cut off.
        """
        left, right = self.padding
        p = max(left, right)
        if (p - left) % self.stride == 0:
            return p, (p - left) // self.stride, None
        return 0, 0, (left, right)  # an even kernel with a stride: pad the input explicitly

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        if x.device.type == "cpu":
            return self.forward_channels_first(x, lengths)
        # torch.where, not masked_fill: masked_fill copies its input first (an extra pass forward
        # and backward); where reads and writes once, and keeps the padding zero even for inf/nan
        padded = lengths_to_mask(lengths, x.shape[1], valid=False)  # (B, T): past the end
        y = self._conv(x if self.input_masked else torch.where(padded[..., None], 0.0, x))
        if self.stride > 1:
            lengths = strided_lengths(lengths, self.stride)
            padded = lengths_to_mask(lengths, y.shape[1], valid=False)
        y = self.dropout(torch.relu(self.norm(y)))
        return torch.where(padded[..., None], 0.0, y), lengths

    def forward_channels_first(self, x: torch.Tensor, lengths: torch.Tensor):
        """The CPU path: Conv1d over `(B, C, T)` after a padded copy, as oneDNN likes it.

        With the channels-last view on the CPU the cost of an op depends more on its neighbours
        (layout conversions land in whichever op comes next), and latency tables add up less well:
        st_nas, 1 thread, three checks of 20 architectures each, within 10% was 0.65-0.95 with the
        view and 0.85-1.00 with this path. The bench's "legacy tdnn" rows time this path on the GPU.
        """
        x = F.pad((x if self.input_masked else mask_padding(x, lengths)).transpose(1, 2), self.padding)
        x = self._block(x)
        lengths = strided_lengths(lengths, self.stride)
        return mask_padding(x, lengths), lengths

    def _block(self, padded: torch.Tensor) -> torch.Tensor:
        """Padded `(B, C_in, T)` -> `(B, T', C_out)`: conv (no padding of its own), norm, ReLU,
        dropout; the CPU path and the streaming path (over a `Window`) both run it."""
        x = self.conv(self.depthwise(padded) if self.separable else padded)
        norm = self.norm.norm
        x = norm(x) if self.norm.kind == "bn" else norm(x.transpose(1, 2)).transpose(1, 2)
        return self.dropout(torch.relu(x)).transpose(1, 2)

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        """The last frames the kernel still reads are kept (under `span + stride`); an output
        comes once its `lookahead` frames have."""
        state = stream_state(state)
        window, _ = self.window.step(state, x.transpose(1, 2), final)
        return (no_frames(x, self.out_dim) if window is None else self._block(window)), state

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, T, C_in)` -> `(B, ceil(T / s), C_out)`, channels last."""
        frames = -(-x.shape[1] // self.stride)
        image = x.transpose(1, 2).unsqueeze(2)  # (B, C, 1, T): an NHWC view of (B, T, C), no copy
        if self.pad_input is not None:
            image = F.pad(image, self.pad_input)
        stride, dilation, padding = (1, self.stride), (1, self.dilation), (0, self.conv_padding)
        if self.separable:
            image = F.conv2d(
                image, self.depthwise.weight.unsqueeze(2), None, stride, padding, dilation, self.in_dim
            )
            image = F.conv2d(image, self.conv.weight.unsqueeze(2), self.conv.bias)
        else:
            image = F.conv2d(image, self.conv.weight.unsqueeze(2), self.conv.bias, stride, padding, dilation)
        y = image.squeeze(2).transpose(1, 2)  # (B, T', C_out), contiguous when the output is NHWC
        if self.first_output or y.shape[1] != frames:
            y = y[:, self.first_output : self.first_output + frames]
        return y

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
        norm=spec.word(("bn", "ln"), "bn"),
        separable=separable,
        dropout=dropout,
    )


@register("tdnn", numbers=TDNN_NUMBERS, words=TDNN_WORDS)
def build_tdnn(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    return _build(spec, in_dim, out_dim, dropout, separable=False)


@register("septdnn", numbers=TDNN_NUMBERS, words=TDNN_WORDS)
def build_septdnn(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    return _build(spec, in_dim, out_dim, dropout, separable=True)
