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

from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from ops.attention import MultiHeadSelfAttention
from supernet.accel.cuda_graphs import OpGraphs, run_op, scorable

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
    sampled candidate's output is reused; the others are recomputed under ``no_grad`` (see
    ``_recompute_mode``). Returning
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
        edge, graphs, graph_inputs = ctx.edge, ctx.edge.graphs, None
        scores = []
        with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
            if graphs is not None:  # the whole edge in one replay, where its inputs can be read in place
                whole = graphs.edge_scores(
                    edge,
                    edge.candidates,
                    ctx.index,
                    x,
                    lengths,
                    grad_out,
                    sampled_out,
                    _score,
                    edge.recompute_mode,
                )
                if whole is not None:
                    return whole, grad_out, None, None, None, None
            for k, cand in enumerate(edge.candidates):
                mode = edge.recompute_mode(k)
                if k == ctx.index:
                    scores.append(_score(grad_out, sampled_out))
                elif graphs is not None and scorable(cand, x):  # one replay per candidate
                    graph_inputs = graph_inputs or graphs.score_inputs(x, lengths, grad_out)
                    scores.append(graphs.score(cand, graph_inputs, _score, mode))
                else:
                    with mode():
                        scores.append(_score(grad_out, cand(x, lengths)[0]))
        return torch.stack(scores), grad_out, None, None, None, None


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
    """A choice between candidate ops that share stride and shapes.

    With CUDA graphs on (``Encoder.use_cuda_graphs``), the candidate that runs alone is replayed
    from its graphs; the candidates share one memory pool, since only one of them runs per pass.
    A sum over candidates runs eagerly."""

    graphs: OpGraphs | None = None

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
        # each candidate's dropouts and BatchNorms, set aside while ST recomputes its output
        self.dropouts = [[m for m in c.modules() if isinstance(m, DROPOUTS)] for c in candidates]
        self.norms = [[m for m in c.modules() if isinstance(m, _BatchNorm)] for c in candidates]
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
        y, out_lengths = self._run_alone(self.candidates[plan.index], x, lengths)
        if plan.mode == "single":
            return (y if plan.weights is None else plan.weights[plan.index] * y), out_lengths
        if plan.mode == "st":
            return _StraightThroughScores.apply(plan.probs, y, x, lengths, self, plan.index), out_lengths
        raise ValueError(f"edge {self.name!r}: unknown plan mode {plan.mode!r}")

    def recompute_mode(self, k: int):
        """The context ST recomputes candidate ``k``'s output in (``_recompute_mode``)."""
        return partial(_recompute_mode, self.dropouts[k], self.norms[k])

    def _run_alone(self, cand: nn.Module, x: torch.Tensor, lengths: torch.Tensor):
        return run_op(self.graphs, cand, x, lengths, self, f"edge {self.name!r}")
