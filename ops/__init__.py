"""Candidate operations for speech NAS, built by name: `ops.build("tdnn-k3-d2", 256)`.

One family a file; importing this package registers them all, and the `res-` prefix and `e<int>`
width of `ops.wrappers`, and the `down2-`/`down4-` frame-rate prefixes of `ops.downsampled`. See `ops.base.Op` for the contract (shapes, lengths, zeroed padding,
declared stride and look-ahead) and `ops.registry` for the spec grammar.
"""

from ops import (  # noqa: F401  (registers)
    attention,
    basic,
    conformer,
    downsampled,
    ebranchformer,
    frontend,
    recurrent,
    subsample,
    tdnn,
    wrappers,
)
from ops.base import UNBOUNDED, Op, lengths_to_mask, mask_padding, strided_lengths
from ops.registry import Spec, available, build, parse_spec

__all__ = [
    "UNBOUNDED",
    "Op",
    "Spec",
    "available",
    "build",
    "lengths_to_mask",
    "mask_padding",
    "parse_spec",
    "strided_lengths",
]
