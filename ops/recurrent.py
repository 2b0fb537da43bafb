"""Recurrent ops: `lstm` (causal, streamable) and `blstm` (`out_dim // 2` units each direction).

Padded frames never enter the recurrence, and the backward direction of a BLSTM starts at each
utterance's own last frame. Training and evaluation run packed sequences (``pack_padded_sequence``).
While ``torch.export`` traces the op (ONNX export), which packed sequences defeat (their batch
sizes are read on the host), it runs the same weights unpacked (``LSTM.unpacked``), to the same
numbers on the valid frames:

- a forward LSTM's output at frame ``t`` depends on frames ``<= t`` only, so running it over the
  padding too leaves every valid output as it was (the padded ones are masked after);
- the backward direction of a BLSTM runs as a forward LSTM with the ``_reverse`` weights over each
  utterance reversed within its own length (``reverse_within``: frame ``t < len`` reads
  ``len - 1 - t``, the padding stays after), and its output is reversed back the same way.

Each direction is then one forward LSTM. Eagerly it is a unidirectional ``nn.LSTM`` run on this
op's own parameters (``torch.func.functional_call``); traced, it is an ONNX ``LSTM`` node
(``torch.onnx.ops.symbolic``, gates reordered to ONNX's i, o, f, c), because ``torch.export``
decomposes ``aten.lstm`` into a Python loop over frames that fixes the time axis at the
example's length.

The unpacked form runs only while exporting: it matches the packed one to ~1e-16 in float64 and
~6e-7 in float32, not bit for bit, and was not timed on a GPU (on a 2-core CPU it took 0.2-0.6x the
packed form's time, B 8, T 300, dim 256), so training keeps the packed numbers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ops.base import UNBOUNDED, Op, mask_padding
from ops.registry import Spec, register
from ops.streaming import NotStreamable, stream_state


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` (B, T, D) with each row's first ``lengths[b]`` frames in reverse order and its padding
    left in place; its own inverse. Tensor ops only (a gather), so it traces with a dynamic T."""
    t = torch.arange(x.shape[1], device=x.device)
    last = lengths.to(t.device)[:, None] - 1
    index = torch.where(t < last + 1, last - t, t)
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def onnx_lstm(
    x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> torch.Tensor:
    """A forward LSTM over ``x`` (B, T, in) from a zero state, as one ONNX ``LSTM`` node (export
    only: eagerly the node is a placeholder of zeros). PyTorch stacks the gates i, f, g, o; ONNX
    wants i, o, f, c (c = g), and both biases in one row."""
    hidden = w_hh.shape[1]
    order = torch.arange(4 * hidden, device=x.device).view(4, hidden)[[0, 3, 1, 2]].flatten()
    weights = (w_ih[order][None], w_hh[order][None], torch.cat([b_ih[order], b_hh[order]])[None])
    steps = x.transpose(0, 1)  # ONNX's default layout: (T, B, in)
    y = torch.onnx.ops.symbolic(
        "LSTM",
        (steps, *weights),
        {"hidden_size": hidden, "direction": "forward"},
        dtype=x.dtype,
        shape=(steps.shape[0], 1, steps.shape[1], hidden),  # (T, directions, B, hidden)
    )
    return y[:, 0].transpose(0, 1)


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
        y = self.unpacked(x, lengths) if torch.compiler.is_exporting() else self.packed(x, lengths)
        return mask_padding(self.dropout(y), lengths), lengths

    def packed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The recurrence over packed sequences (B, T, directions * hidden); padded frames zero."""
        # pack_padded_sequence rejects empty utterances: run them one frame long and mask after.
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        y, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[1])
        return y

    def unpacked(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``packed``'s valid frames without packed sequences (what the ONNX export traces); the
        padded frames hold other numbers, which ``forward`` masks. Each direction is one forward
        LSTM (``direction``)."""
        forward = self.direction(x, "")
        if self.directions == 1:
            return forward
        backward = reverse_within(self.direction(reverse_within(x, lengths), "_reverse"), lengths)
        return torch.cat([forward, backward], dim=-1)

    def direction(self, x: torch.Tensor, suffix: str) -> torch.Tensor:
        """One direction of ``self.rnn`` (``suffix`` "" or "_reverse") as a forward LSTM over ``x``
        (B, T, in_dim) from a zero state: (B, T, hidden)."""
        rnn = self.rnn
        if rnn.num_layers != 1 or rnn.proj_size or not rnn.bias or not rnn.batch_first:
            raise NotImplementedError(
                "the unpacked LSTM runs one batch-first layer with biases, no projection"
            )
        names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        params = {name: getattr(rnn, name + suffix) for name in names}
        if torch.compiler.is_exporting():
            return onnx_lstm(x, *params.values())
        view = nn.LSTM(rnn.input_size, rnn.hidden_size, batch_first=True, device="meta")
        return torch.func.functional_call(view, params, (x,))[0]

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
