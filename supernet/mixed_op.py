"""One searchable edge: its candidate ops and the three ways to run them.

The edge does not know which search method is running. Before each forward pass, a relaxation
(``supernet/relaxations.py``) hands every edge an ``EdgePlan`` that says how to combine the
candidates:

- ``sum``: ``sum_k w_k * o_k(x)`` (DARTS softmax, SNAS soft Gumbel);
- ``single``: only candidate ``i`` runs, optionally scaled by ``w_i`` so that a straight-through
  one-hot (GDAS) carries a gradient to alpha; uniform warm-up and ST weight steps use ``w=None``;
- ``st``: only candidate ``i`` runs forward, and alpha gets the ST-NAS straight-through gradient
  ``dL/dalpha_j = sum_k <dL/dy, o_k(x)> * dp_k/dalpha_j`` (ST-NAS, Eq. 10). The unsampled
  candidates' outputs are recomputed in backward without their weight graphs, so the step keeps
  about one model's activations. They are recomputed without dropout: the score's expectation
  over dropout masks is the same (inverted dropout keeps the mean), its variance is lower and the
  recompute does one pass less per candidate.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd


@dataclass
class EdgePlan:
    mode: str  # "sum" | "single" | "st"
    weights: torch.Tensor | None = None  # (K,) mixing weights for "sum"; one-hot-ish for "single"
    index: int | None = None  # the candidate that runs, for "single" and "st"
    probs: torch.Tensor | None = None  # (K,) softmax(alpha) with its graph, for "st"


class _StraightThroughScores(torch.autograd.Function):
    """Identity on the sampled output ``y``; its backward also gives d loss / d probs.

    ``d loss / d p_k = <g, o_k(x)>`` where ``g`` is the gradient arriving at the edge output. The
    sampled candidate's output is reused; the others are recomputed under ``no_grad`` without
    dropout. Each score is one product in the gradient's dtype summed in float32 (at least): no
    float32 copy of ``g``, and bf16 rounding of single products averages out in the sum. Returning
    ``y`` itself (a view) rather than ``y + zeros`` keeps the edge output and ``y`` one tensor, so
    the saved ``y`` of one edge is the saved ``x`` of the next: less memory, no extra pass.
    """

    @staticmethod
    def forward(ctx, probs, sampled_out, x, lengths, edge, index):
        ctx.save_for_backward(x, lengths, sampled_out)
        ctx.edge, ctx.index = edge, index
        ctx.autocast = (
            x.device.type,
            torch.is_autocast_enabled(x.device.type),
            torch.get_autocast_dtype(x.device.type),
        )
        return sampled_out.view_as(sampled_out)

    @staticmethod
    def backward(ctx, grad_out):
        x, lengths, sampled_out = ctx.saved_tensors
        device_type, enabled, dtype = ctx.autocast
        acc = torch.promote_types(grad_out.dtype, torch.float32)  # fp32 at least, fp64 stays fp64
        scores = []
        with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
            for k, cand in enumerate(ctx.edge.candidates):
                if k == ctx.index:
                    out = sampled_out
                else:
                    with _dropout_off(ctx.edge.dropouts[k]):
                        out = cand(x, lengths)[0]
                scores.append(torch.sum(grad_out * out.to(grad_out.dtype), dtype=acc))
        return torch.stack(scores), grad_out, None, None, None, None


@contextmanager
def _dropout_off(dropouts: list[nn.Module]):
    """Run with these dropout modules in eval mode, then restore their mode."""
    modes = [m.training for m in dropouts]
    for m in dropouts:
        m.training = False
    try:
        yield
    finally:
        for m, mode in zip(dropouts, modes):
            m.training = mode


class MixedOp(nn.Module):
    """A choice between candidate ops that share stride and shapes."""

    def __init__(self, name: str, candidates: list[nn.Module], labels: list[str]):
        super().__init__()
        if len(candidates) < 2:
            raise ValueError(f"edge {name!r}: a choice needs at least two candidates, got {labels}")
        strides = {int(getattr(c, "stride", 1)) for c in candidates}
        if len(strides) != 1:
            raise ValueError(f"edge {name!r}: candidates {labels} have different strides {sorted(strides)}")
        self.name = name
        self.labels = list(labels)
        self.candidates = nn.ModuleList(candidates)
        # each candidate's dropout modules, switched off while ST recomputes its output
        self.dropouts = [[m for m in c.modules() if isinstance(m, _DropoutNd)] for c in candidates]
        self.stride = strides.pop()
        self.lookahead = max(int(getattr(c, "lookahead", 0)) for c in candidates)
        self.streamable = all(bool(getattr(c, "streamable", True)) for c in candidates)
        self.parameter_free = False
        self.plan: EdgePlan | None = None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        plan = self.plan
        if plan is None:
            raise RuntimeError(
                f"edge {self.name!r} has no plan: call Supernet.apply_plan(...) before forward"
            )
        if plan.mode == "sum":
            out, out_lengths = None, None
            for w, cand in zip(plan.weights, self.candidates):
                y, out_lengths = cand(x, lengths)
                out = w * y if out is None else out + w * y
            return out, out_lengths
        y, out_lengths = self.candidates[plan.index](x, lengths)
        if plan.mode == "single":
            return (y if plan.weights is None else plan.weights[plan.index] * y), out_lengths
        if plan.mode == "st":
            return _StraightThroughScores.apply(plan.probs, y, x, lengths, self, plan.index), out_lengths
        raise ValueError(f"edge {self.name!r}: unknown plan mode {plan.mode!r}")
