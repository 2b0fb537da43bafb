"""SNAS (soft Gumbel-softmax mixture) and GDAS (``hard``: one candidate runs, straight-through).

The temperature is annealed exponentially from ``tau_start`` to ``tau_end`` over the search
epochs; it is a function of the epoch, so a resumed search anneals as an uninterrupted one.
"""

from __future__ import annotations

import torch

from supernet.search.mixed_op import EdgePlan
from supernet.search.relaxations.base import Relaxation, check_phase, register


@register
class Gumbel(Relaxation):
    name = "gumbel"

    def __init__(self, hard: bool = False, tau_start: float = 5.0, tau_end: float = 0.5):
        if not (tau_start > 0 and tau_end > 0):
            raise ValueError(
                f"gumbel: temperatures must be positive, got tau_start={tau_start}, tau_end={tau_end}"
            )
        self.hard, self.tau_start, self.tau_end = bool(hard), float(tau_start), float(tau_end)
        self.tau = self.tau_start

    @property
    def single_path(self):
        """GDAS runs the argmax candidate alone (its one-hot weight carries the gradient); SNAS sums."""
        return self.hard

    def schedule(self, progress):
        self.tau = self.tau_start * (self.tau_end / self.tau_start) ** min(1.0, max(0.0, progress))
        return {"search/tau": self.tau}

    def plan(self, arch, phase, step, host_probs=None):
        learn = check_phase(phase)
        noise = arch.gumbel_noise(step)
        softs = {}
        for name, alpha in arch.alphas.items():
            soft = torch.softmax((alpha + noise[name]) / self.tau, dim=-1)
            softs[name] = soft if learn else soft.detach()
        if not self.hard:
            return {name: EdgePlan("sum", weights=soft) for name, soft in softs.items()}
        # GDAS: run one candidate, straight-through one-hot weight; every edge's argmax in one copy
        indices = torch.stack([soft.detach().argmax() for soft in softs.values()]).tolist()
        plans = {}
        for (name, soft), index in zip(softs.items(), indices):
            one_hot = torch.zeros_like(soft)
            one_hot[index] = 1.0  # a fill on the device: no host-to-device copy
            plans[name] = EdgePlan("single", weights=one_hot - soft.detach() + soft, index=index)
        return plans
