"""`conv2d4x`: the ESPnet/Conformer front subsampling, two stride-2 3x3 Conv2d + ReLU over
(time, feature), then a Linear from `channels * ceil(F / 4)` to `out_dim`.

Unlike ESPnet's `Conv2dSubsampling` (no padding, `T' = ((T-1)//2 - 1)//2`) both axes are padded
by one so that `T' = ceil(T / 4)` as the Op contract requires; output frame `j` then reads input
frames up to `4j + 3` (look-ahead 3). A TDNN with stride 3 is `tdnn-k3-d1-s3`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ops.base import Op, mask_padding, strided_lengths
from ops.registry import Spec, register
from ops.streaming import Window, stream_state


class Conv2dSubsampling4(Op):
    stride = 4
    lookahead = 3
    graph_safe = True

    def __init__(self, in_dim: int, out_dim: int, channels: int | None = None, dropout: float = 0.1):
        super().__init__()
        channels = out_dim if channels is None else channels
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.half_freq = math.ceil(in_dim / 2)
        self.freq = math.ceil(self.half_freq / 2)
        self.out = nn.Linear(channels * self.freq, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.channels, self.out_dim = channels, out_dim
        self.window = Window(span=2, stride=2, left=1, dim=2)  # either conv's time axis: 3 taps, stride 2

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        half = strided_lengths(lengths, 2)
        x = torch.relu(self.conv1(mask_padding(x, lengths)[:, None]))  # (B, C, T/2, F/2)
        x = torch.relu(self.conv2(mask_padding(x.transpose(1, 2), half).transpose(1, 2)))
        lengths = strided_lengths(half, 2)
        x = self.dropout(self.out(rearrange(x, "b c t f -> b t (c f)")))  # channels x frequency per frame
        return mask_padding(x, lengths), lengths

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        """Each conv keeps the frames its next window reads; the time padding comes from the
        stream (its `Window`), the frequency padding from the conv's own setting."""
        state = stream_state(state)
        x = x[:, None]  # (B, 1, T, F)
        for name, conv, freq in (("conv1", self.conv1, self.half_freq), ("conv2", self.conv2, self.freq)):
            window, _ = self.window.step(state.setdefault(name, {}), x, final)
            if window is None:  # nothing new; the next conv may still have frames to flush
                x = x.new_zeros(x.shape[0], self.channels, 0, freq)
            else:
                x = torch.relu(F.conv2d(window, conv.weight, conv.bias, conv.stride, (0, conv.padding[1])))
        return self.dropout(self.out(rearrange(x, "b c t f -> b t (c f)"))), state

    def flops(self, T: int) -> int:
        quarter_t = self.out_frames(T)
        conv1 = math.ceil(T / 2) * self.half_freq * 9 * self.channels
        conv2 = quarter_t * self.freq * 9 * self.channels * self.channels
        return conv1 + conv2 + quarter_t * self.channels * self.freq * self.out_dim


@register("conv2d4x")
def build_conv2d4x(
    spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1, channels: int | None = None
) -> Op:
    return Conv2dSubsampling4(in_dim, in_dim if out_dim is None else out_dim, channels, dropout)
