"""One searchable edge: its candidate ops and the three ways to run them.

The edge does not know which search method is running. Before each forward pass, a relaxation
(``supernet/search/relaxations.py``) hands every edge an ``EdgePlan`` that says how to combine the
candidates:

- ``sum``: ``sum_k w_k * o_k(x)`` (DARTS softmax, SNAS soft Gumbel);
- ``single``: only candidate ``i`` runs, optionally scaled by ``w_i`` so that a straight-through
  one-hot (GDAS) carries a gradient to alpha; uniform warm-up and ST weight steps use ``w=None``;
- ``st``: only candidate ``i`` runs forward, and alpha gets the ST-NAS straight-through gradient
  ``dL/dalpha_j = sum_k <dL/dy, o_k(x)> * dp_k/dalpha_j`` (ST-NAS, Eq. 10). The unsampled
  candidates' outputs are recomputed in backward without their weight graphs, so the step keeps
  about one model's activations. They are recomputed without dropout (the score's expectation
  over dropout masks is the same, inverted dropout keeps the mean; its variance is lower) and
  without updating their BatchNorm running statistics (they did not run in this step).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from ops.attention import MultiHeadSelfAttention
from supernet.runner import EAGER, OpRunner

# modules whose training flag means "drop": nn.Dropout*, and attention's fused dropout
DROPOUTS = (_DropoutNd, MultiHeadSelfAttention)


@dataclass
class EdgePlan:
    mode: str  # "sum" | "single" | "st"
    weights: torch.Tensor | None = None  # (K,) mixing weights for "sum"; one-hot-ish for "single"
    index: int | None = None  # the candidate that runs, for "single" and "st"
    probs: torch.Tensor | None = None  # (K,) softmax(alpha) with its graph, for "st"


class _StraightThroughScores(torch.autograd.Function):
    """Identity on the sampled output ``y``; its backward also gives d loss / d probs.

    ``d loss / d p_k = <g, o_k(x)>`` where ``g`` is the gradient arriving at the edge output. The
    sampled candidate's output is reused; the others are recomputed under ``no_grad``
    (``MixedOp.eager_scores``), run by the edge's runner where it takes them (``edge_scores``: one
    CUDA graph replay). Returning ``y`` itself (a view) rather than ``y + zeros`` keeps the edge
    output and ``y`` one tensor, so the saved ``y`` of one edge is the saved ``x`` of the next: less
    memory, no extra pass.
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
        edge = ctx.edge
        with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
            scores = edge.runner.edge_scores(edge, ctx.index, x, lengths, grad_out, sampled_out)
            if scores is None:
                scores = edge.eager_scores(ctx.index, x, lengths, grad_out, sampled_out)
        return scores, grad_out, None, None, None, None


def _score(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``<g, out>`` accumulated in float32 at least: Eq. 10 uses differences of the scores, which
    products rounded to bf16 would blur (3-8% off on a review's test). Two bf16 tensors on a GPU go
    through one GEMM with float32 output, ``trace(G^T O)`` over ``(frames, channels)`` views: exact
    products, float32 sums, no product tensor in memory. Otherwise one float32 (or float64) product."""
    if g.is_cuda and g.dtype == out.dtype == torch.bfloat16 and g.dim() == 3:
        channels = g.shape[-1]
        gram = torch.mm(g.reshape(-1, channels).t(), out.reshape(-1, channels), out_dtype=torch.float32)
        return gram.diagonal().sum()
    acc = torch.promote_types(g.dtype, torch.float32)  # fp32 at least, fp64 stays fp64
    return (g.to(acc) * out).sum()  # out is promoted inside the kernel: no cast pass


@contextmanager
def _recompute_mode(dropouts: list[nn.Module], norms: list[nn.Module]):
    """Dropout off (dropout modules and attention's own dropout) and BatchNorm running statistics
    frozen (momentum 0: batch statistics still normalise, as in the forward): a recompute for a
    score must not train the running statistics of a candidate that did not run."""
    modes, momenta = [m.training for m in dropouts], [m.momentum for m in norms]
    for m in dropouts:
        m.training = False
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mode in zip(dropouts, modes):
            m.training = mode
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


class MixedOp(nn.Module):
    """A choice between candidate ops of the same width.

    The candidate that runs alone runs through the network's runner (``Encoder.set_runner``),
    with the edge as its group: e.g. replayed from CUDA graphs, the candidates sharing one memory
    pool, since only one of them runs per pass. A sum over candidates runs eagerly.

    Candidates may subsample differently (a stride edge, ``SearchSpace.stride_edges``): then only
    the ``single`` plan runs it (one candidate, its own output length), and ``stride`` is the
    planned candidate's, so the network's output lengths follow the path. ``sum`` and ``st`` plans
    need every candidate's output at one shape and refuse such an edge (nothing is resampled to fake
    it); the ``st`` method plans ``single`` there and scores it another way (``relaxations/st.py``)."""

    runner: OpRunner = EAGER

    def __init__(self, name: str, candidates: list[nn.Module], labels: list[str]):
        super().__init__()
        if len(candidates) < 2:
            raise ValueError(f"edge {name!r}: a choice needs at least two candidates, got {labels}")
        self.name = name
        self.labels = list(labels)
        self.candidates = nn.ModuleList(candidates)
        # each candidate's dropouts and BatchNorms, set aside while ST recomputes its output
        self.dropouts = [[m for m in c.modules() if isinstance(m, DROPOUTS)] for c in candidates]
        self.norms = [[m for m in c.modules() if isinstance(m, _BatchNorm)] for c in candidates]
        self.strides = [int(getattr(c, "stride", 1)) for c in candidates]
        # a stride edge: candidates that subsample differently (``SearchSpace.stride_edges``)
        self.subsamples_differently = len(set(self.strides)) > 1
        self.lookahead = max(int(getattr(c, "lookahead", 0)) for c in candidates)
        self.streamable = all(bool(getattr(c, "streamable", True)) for c in candidates)
        self.parameter_free = False
        self.plan: EdgePlan | None = None

    @property
    def stride(self) -> int:
        """The time stride of the edge as planned: the candidates' common stride, or on a stride
        edge the stride of the candidate the plan runs."""
        if not self.subsamples_differently:
            return self.strides[0]
        plan = self.plan
        if plan is None or plan.mode != "single":
            raise RuntimeError(
                f"edge {self.name!r}: candidates {self.labels} subsample differently "
                f"(strides {self.strides}); its stride is the planned candidate's, and "
                f"{'no plan is set' if plan is None else f'a {plan.mode!r} plan runs none alone'}"
            )
        return self.strides[plan.index]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        plan = self.plan
        if plan is None:
            raise RuntimeError(
                f"edge {self.name!r} has no plan: call Supernet.apply_plan(...) before forward"
            )
        if plan.mode in ("sum", "st") and self.subsamples_differently:
            raise RuntimeError(
                f"edge {self.name!r}: a {plan.mode!r} plan combines the outputs of candidates "
                f"{self.labels}, whose strides {self.strides} differ (their outputs have different "
                "lengths); only single-path plans run a stride edge"
            )
        if plan.mode == "sum":
            out, out_lengths = None, None
            for w, cand in zip(plan.weights, self.candidates):
                y, out_lengths = cand(x, lengths)
                out = w * y if out is None else out + w * y
            return out, out_lengths
        y, out_lengths = self._run_alone(self.candidates[plan.index], x, lengths)
        if plan.mode == "single":
            return (y if plan.weights is None else plan.weights[plan.index] * y), out_lengths
        if plan.mode == "st":
            return _StraightThroughScores.apply(plan.probs, y, x, lengths, self, plan.index), out_lengths
        raise ValueError(f"edge {self.name!r}: unknown plan mode {plan.mode!r}")

    def eager_scores(
        self,
        index: int,
        x: torch.Tensor,
        lengths: torch.Tensor,
        grad: torch.Tensor,
        y: torch.Tensor,
        recompute: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """ST's scores ``<grad, o_k(x)>`` of every candidate ``k``, stacked (called under no grad):
        the sampled candidate ``index``'s from its output ``y``, the others' recomputed by
        ``recompute(k, x, lengths, grad)`` (default ``recompute_score``). A runner calls it with
        its own buffers, or its own ``recompute`` (a replay per candidate)."""
        recompute = recompute or self.recompute_score
        return torch.stack(
            [
                _score(grad, y) if k == index else recompute(k, x, lengths, grad)
                for k in range(len(self.candidates))
            ]
        )

    def recompute_score(self, k: int, x: torch.Tensor, lengths: torch.Tensor, grad: torch.Tensor):
        """Candidate ``k``'s score ``<grad, o_k(x)>``, its output recomputed in
        ``_recompute_mode`` (call it under no grad)."""
        with _recompute_mode(self.dropouts[k], self.norms[k]):
            return _score(grad, self.candidates[k](x, lengths)[0])

    def _run_alone(self, cand: nn.Module, x: torch.Tensor, lengths: torch.Tensor):
        return self.runner.run(cand, x, lengths, self, f"edge {self.name!r}")
