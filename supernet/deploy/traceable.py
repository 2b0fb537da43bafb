"""Export-time stand-ins for eager helpers of ``ops`` that ``torch.export`` cannot trace with a
dynamic time axis. Each computes the same numbers as the helper it replaces, and is swapped in
only while a module is being exported (``traceable_ops``); training and evaluation never see it.

- ``ops.attention.sinusoid`` sizes its table with ``len(positions)``: a Python int, which pins the
  traced time axis to the example's length (``torch.export``: "specialized value of 16000").
  The stand-in builds the same interleaved sin/cos table from tensor shapes alone.
- ``F.scaled_dot_product_attention``: ``torch.export`` records the fused CPU kernel's output
  strides, then the ONNX exporter decomposes the kernel into matmuls with other strides, and the
  ``view`` that ``rearrange`` made of the heads fails ("Cannot view a tensor with shape ..."). The
  stand-in is the same attention written out (scores, mask or bias, softmax, weighted sum), which
  is what the ONNX graph computes either way (opset 18 has no attention op).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import torch
import torch.nn.functional as F

import ops.attention


def sinusoid(positions: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``ops.attention.sinusoid`` without ``len()``: columns ``2i`` hold ``sin(p * f_i)`` and
    ``2i + 1`` hold ``cos(p * f_i)``, cut to ``dim`` columns (an odd ``dim`` ends on a sine)."""
    freqs = torch.exp(
        torch.arange(0, dim, 2, device=positions.device, dtype=dtype) * (-math.log(10000.0) / dim)
    )
    angles = positions.to(dtype)[:, None] * freqs
    table = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(1)
    return table[:, :dim]


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` in eval mode (no dropout) as plain tensor ops: a boolean
    mask keeps the True entries, a float mask is added to the scores."""
    if dropout_p or is_causal:
        raise ValueError("the export stand-in of scaled_dot_product_attention takes no dropout or is_causal")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)


@contextmanager
def traceable_ops() -> Iterator[None]:
    """The stand-ins in place of ``ops``' helpers, for the duration of an export."""
    with (
        mock.patch.object(ops.attention, "sinusoid", sinusoid),
        mock.patch.object(F, "scaled_dot_product_attention", attention),
    ):
        yield
