"""DARTS: every candidate runs, mixed by softmax(alpha) (Liu et al., 2019)."""

from __future__ import annotations

from supernet.search.mixed_op import EdgePlan
from supernet.search.relaxations.base import Relaxation, check_phase, register


@register
class Darts(Relaxation):
    name = "darts"

    def plan(self, arch, phase, step, host_probs=None):
        learn = check_phase(phase)
        return {n: EdgePlan("sum", weights=p if learn else p.detach()) for n, p in arch.probs().items()}
