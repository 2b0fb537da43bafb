"""The `Op` contract and the padding helpers every op shares.

An op maps `(B, T, C_in)` with per-utterance lengths to `(B, ceil(T / stride), C_out)` with
`ceil(lengths / stride)`. It zeroes its padded outputs and never lets padded inputs reach a valid
output, so a batch gives the same numbers as one utterance at a time. It also *declares* its time
stride and its look-ahead, so that streaming constraints and latency can be checked without
running it (the tests check the declarations against the real receptive field).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from ops.streaming import NotStreamable

# Look-ahead of full-utterance ops (BLSTM, abs/rel attention): "reads the whole future".
UNBOUNDED = 10**9


# lengths tensor -> (its version, {(what, size): tensor}); an entry goes with its tensor
_DERIVED = WeakIdKeyDictionary()


def _derived(lengths: torch.Tensor, what: str, size: int, make) -> torch.Tensor:
    """``make()``, made once per lengths tensor and ``(what, size)``.

    The ops of one forward pass share one lengths tensor, so its masks and strided lengths are
    made once and reused: at batch 32 a search step is bound by the host's kernel launches, and an
    ST arch step would otherwise rebuild them for every candidate it recomputes. An in-place change
    of the lengths (a new version) drops what was made from the old values; a write that bypasses
    the version counter (``.data``, a shared NumPy array) is not seen, so lengths must not be
    changed that way. Nothing is kept while compiling, while capturing a CUDA graph, or for
    inference tensors (what is made there must not leak into training)."""
    if (
        torch.compiler.is_compiling()
        or torch.is_inference_mode_enabled()
        or lengths.is_inference()
        or (lengths.is_cuda and torch.cuda.is_current_stream_capturing())
    ):
        return make()
    version = lengths._version
    entry = _DERIVED.get(lengths)
    if entry is None or entry[0] != version:
        entry = _DERIVED[lengths] = (version, {})
    made = entry[1]
    if (what, size) not in made:
        made[what, size] = make()
    return made[what, size]


def lengths_to_mask(lengths: torch.Tensor, max_len: int, valid: bool = True) -> torch.Tensor:
    """`(B,)` lengths -> `(B, max_len)` bool: True at valid frames, or past the end (`valid=False`).
    Shared by the ops of a forward pass (see ``_derived``)."""

    def make():
        frames = torch.arange(max_len, device=lengths.device)
        return frames < lengths[:, None] if valid else frames >= lengths[:, None]

    return _derived(lengths, "valid" if valid else "padded", max_len, make)


def mask_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the frames of `x (B, T, ...)` past each utterance's length."""
    valid = lengths_to_mask(lengths, x.shape[1])
    return x.masked_fill(~valid.view(*valid.shape, *([1] * (x.dim() - 2))), 0.0)


def strided_lengths(lengths: torch.Tensor, stride: int) -> torch.Tensor:
    """Lengths after a time stride: `ceil(lengths / stride)` (integer arithmetic, any device).
    The same tensor for every op of a forward pass (see ``_derived``)."""
    if stride == 1:
        return lengths
    return _derived(
        lengths, "stride", stride, lambda: torch.div(lengths + stride - 1, stride, rounding_mode="floor")
    )


def same_padding(kernel: int, dilation: int, causal: bool) -> tuple[int, int]:
    """(left, right) zero padding that keeps `ceil(T / stride)` frames; right is the look-ahead."""
    span = dilation * (kernel - 1)
    left = span if causal else span // 2
    return left, span - left


class Op(nn.Module):
    """Base of every candidate op; subclasses set the attributes and implement `forward`/`flops`."""

    stride: int = 1
    lookahead: int = 0
    streamable: bool = True
    parameter_free: bool = False
    spec: str = ""
    # Set by the network loop (``supernet.derived.Encoder``) on ops whose input is another op's
    # output, whose padding is already zero: such an op may skip re-masking its input (one pass
    # less, and a convolution then saves the previous op's output instead of a masked copy).
    input_masked: bool = False
    # May be replayed from a CUDA graph (``supernet.accel.cuda_graphs``): no host reads, no shapes that
    # depend on values, the same kernels for the same input shape. Checked on a GPU per op family.
    graph_safe: bool = False

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def flops(self, T: int) -> int:
        """Approximate multiply-adds for `T` input frames, batch 1."""
        raise NotImplementedError

    def stream(self, x: torch.Tensor, state: dict | None, final: bool) -> tuple[torch.Tensor, dict]:
        """One chunk of a stream: the output frames now complete and the state for the next chunk
        (``ops.streaming`` has the contract). Ops that can stream override it."""
        raise NotStreamable(f"op {self.spec or type(self).__name__!r} has no streaming path")

    def out_frames(self, T: int) -> int:
        return math.ceil(T / self.stride)

    def extra_repr(self) -> str:
        lookahead = "unbounded" if self.lookahead >= UNBOUNDED else self.lookahead
        return f"spec={self.spec!r}, stride={self.stride}, lookahead={lookahead}"
