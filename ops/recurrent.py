"""Recurrent ops: `lstm` (causal, streamable) and `blstm` (`out_dim // 2` units each direction).

Sequences are packed, so padded frames never enter the recurrence (and the backward direction of
a BLSTM starts at each utterance's own last frame).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ops.base import UNBOUNDED, Op, mask_padding
from ops.registry import Spec, register
from ops.streaming import NotStreamable, stream_state


class LSTM(Op):
    def __init__(self, in_dim: int, out_dim: int, bidirectional: bool = False, dropout: float = 0.1):
        super().__init__()
        directions = 2 if bidirectional else 1
        if out_dim % directions:
            raise ValueError(f"blstm needs an even out_dim (half a direction), got {out_dim}")
        self.hidden = out_dim // directions
        self.rnn = nn.LSTM(in_dim, self.hidden, batch_first=True, bidirectional=bidirectional)
        self.dropout = nn.Dropout(dropout)
        self.in_dim, self.directions = in_dim, directions
        if bidirectional:
            self.lookahead, self.streamable = UNBOUNDED, False

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        # pack_padded_sequence rejects empty utterances: run them one frame long and mask after.
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        y, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[1])
        return mask_padding(self.dropout(y), lengths), lengths

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        """The LSTM's own state `(h, c)` carries the stream; a BLSTM's backward pass starts at the end."""
        if self.directions > 1:
            raise NotStreamable("a BLSTM reads the utterance backwards from its last frame")
        state = stream_state(state)
        if x.shape[1]:
            y, state["hx"] = self.rnn(x, state.get("hx"))
            x = self.dropout(y)
        else:
            x = x.new_zeros(x.shape[0], 0, self.hidden)
        return x, state

    def flops(self, T: int) -> int:
        return self.directions * T * 4 * self.hidden * (self.in_dim + self.hidden)


@register("lstm")
def build_lstm(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    return LSTM(in_dim, in_dim if out_dim is None else out_dim, bidirectional=False, dropout=dropout)


@register("blstm")
def build_blstm(spec: Spec, in_dim: int, out_dim: int | None, dropout: float = 0.1) -> Op:
    return LSTM(in_dim, in_dim if out_dim is None else out_dim, bidirectional=True, dropout=dropout)
