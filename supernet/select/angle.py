"""How far a path's weights turned away from their initial values while the supernet trained:
the angle-based score of ABS (Hu et al., "Angle-based Search Space Shrinking for Neural
Architecture Search", ECCV 2020).

A path's weights are the matrices (weight tensors of two or more dimensions: linear, convolution,
attention projections) it runs with, concatenated into one vector; ABS ranks paths by the angle
between that vector at initialisation and after training, larger meaning better. It needs no data
and no BatchNorm statistics, and it does not read how well the shared weights fit the path today,
which is where the loss-based score under-rates networks that learn slowly but end better
(docs/results.md). Biases and normalisation scales are left out, as ABS leaves them: they start
at zero or one, where an angle says little.

Kept here as its cosine, ``init_cosine`` (lower is better, as every score of a scorer): the
same order as minus the angle.
"""

from __future__ import annotations

import math

import torch

from supernet.errors import UserError
from supernet.search.network import Supernet, initial_matrices

__all__ = ["init_cosine", "initial_matrices", "require_initial_weights"]


def require_initial_weights(kept: bool, ckpt, what: str) -> None:
    """Refuses ``what`` (the option asking for ``init_cosine``) for a checkpoint that kept no
    initial weights, naming the search option that keeps them."""
    if not kept:
        raise UserError(
            f"{what} (the ABS angle) needs the search's initial weights, which {ckpt} did not keep: "
            "search with --model.keep_initial_weights true"
        )


@torch.no_grad()
def init_cosine(net: Supernet, initial: dict[str, torch.Tensor], choices: dict[str, int]) -> float:
    """The cosine of the angle between path ``choices``' weight matrices at initialisation
    (``initial``, from ``initial_matrices``) and in ``net`` now; summed in float64."""
    dot = start = now = 0.0
    for name, param in net.path_parameters(choices):
        if param.dim() < 2:
            continue
        if name not in initial:
            raise KeyError(f"the kept initial weights have no {name!r}: not this network's")
        w0 = initial[name].to(param.device, torch.float64)
        w = param.detach().to(torch.float64)
        dot, start, now = (
            dot + float((w0 * w).sum()),
            start + float((w0 * w0).sum()),
            now + float((w * w).sum()),
        )
    if not start or not now:
        raise ValueError("the path has no weight matrix that is not zero: its angle is undefined")
    return dot / math.sqrt(start * now)
