"""ST-NAS: a sampled path runs; the arch pass adds the straight-through gradient (Eq. 10).

A step's two paths (arch and weight) are drawn on the host from ONE read of the alphas at the
step's start (``host_probs``). That copy is started right after the previous arch update
(``after_arch_update``), so the host waits for that update only, not for the work queued behind
it. With ``sample_ahead`` the paths come from the alphas one update old, whose copy is done: the
host never waits, and on several GPUs it does not wait for the other ranks' alpha all-reduce
either. The paper's recipe (off) samples from the current alphas.

Stride edges (candidates that subsample differently) cannot take Eq. 10: its scores
``<dL/dy, o_k(x)>`` need every candidate's output at the shape of the sampled one. There the arch
pass runs the sampled candidate alone, and the alphas get a score-function (REINFORCE) estimate
of the gradient of the expected loss, as ProxylessNAS does for choices it cannot differentiate:
``(L - b) * d log p_k / d alpha``, ``b`` a moving average of the arch pass's loss
(``baseline_decay``) that lowers its variance and keeps it unbiased. With ``sample_ahead`` the
candidate was drawn from the alphas one update old: the term is then weighted by
``p_now(k) / p_then(k)`` (importance sampling), so it still estimates the gradient at the current
alphas. The term is added with value
zero, so the logged loss is the CTC loss. The baseline is kept in checkpoints; under DDP each rank
keeps its own (the alphas' gradients are averaged as usual), so a resume on several ranks restarts
the others from rank 0's.
"""

from __future__ import annotations

import math

import torch

from supernet.search.mixed_op import EdgePlan
from supernet.search.relaxations.base import Relaxation, check_phase, register


@register
class StraightThrough(Relaxation):
    name = "st"
    runs_stride_edges = True

    def __init__(self, sample_ahead: bool = False, baseline_decay: float = 0.9):
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"st: baseline_decay must be in [0, 1), got {baseline_decay}")
        self.sample_ahead = bool(sample_ahead)
        self.baseline_decay = float(baseline_decay)
        self._restored = None  # sample_ahead's host copies from a checkpoint, put back at the first read
        self.stride_edges: list[str] = []
        self._sampled: dict[str, int] = {}  # the arch pass's candidate at each stride edge
        self._drawn_from: float = 0.0  # sample_ahead: ln P(those candidates) under the lagged alphas
        self.baseline: torch.Tensor | None = None  # moving average of the arch pass's loss

    def use_stride_edges(self, names):
        self.stride_edges = list(names)

    def arch_loss(self, arch, loss):
        """``loss`` plus the score-function term of the stride edges (value zero, see the module)."""
        if not self._sampled:
            return loss
        value = loss.detach().float()
        baseline = value if self.baseline is None else self.baseline.to(value.device)
        log_prob = sum(torch.log_softmax(arch.alphas[n], -1)[k] for n, k in self._sampled.items())
        surrogate = (value - baseline) * log_prob
        if self.sample_ahead:  # drawn from the alphas one update old: weight by p_now / p_then
            surrogate = surrogate * torch.exp(log_prob.detach() - self._drawn_from)
        self.baseline = self.baseline_decay * baseline + (1.0 - self.baseline_decay) * value
        self._sampled = {}
        return loss + (surrogate - surrogate.detach())

    def host_probs(self, arch):
        if self._restored is not None:
            arch.restore_host_copies(self._restored)
            self._restored = None
        return arch.lagged_host_probs() if self.sample_ahead else arch.host_probs()

    def after_arch_update(self, arch, alphas):
        arch.prefetch(alphas)  # copied to the host while the step's weight update runs

    def state_dict(self, arch):
        """sample_ahead: the alphas one update old, which the next step samples from; with stride
        edges, the score-function baseline."""
        state = {"sampling_alphas": arch.host_copies()} if self.sample_ahead else {}
        if self.baseline is not None:
            state["stride_baseline"] = self.baseline.detach().cpu()
        return state

    def load_state_dict(self, state):
        # put back at the first read: loading the state dict, which comes next, forgets the copies
        self._restored = state.get("sampling_alphas")
        self.baseline = state.get("stride_baseline")

    def plan(self, arch, phase, step, host_probs=None):
        learn = check_phase(phase)
        choices = arch.sample(step, probs=host_probs)
        if not learn:
            return {n: EdgePlan("single", index=i) for n, i in choices.items()}
        probs = arch.probs()
        self._sampled = {n: choices[n] for n in self.stride_edges}  # scored in arch_loss instead
        if self.sample_ahead and self._sampled:  # host copies: no device read
            self._drawn_from = sum(math.log(float(host_probs[n][k])) for n, k in self._sampled.items())
        return {
            n: EdgePlan("single", index=i) if n in self._sampled else EdgePlan("st", index=i, probs=probs[n])
            for n, i in choices.items()
        }
