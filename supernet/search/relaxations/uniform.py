"""Single-path one-shot training: a uniformly drawn candidate per edge, the alphas never learn.

The warm-up of every method, and the first stage of the discrete strategies (train the supernet's
shared weights once, then let a strategy pick paths from it). It picks no architecture itself.
``fair: true`` (``--model.method_options '{fair: true}'``) samples as FairNAS does: every candidate
of an edge once per round of steps, instead of independent draws (``ArchParams.fair_sample``).
"""

from __future__ import annotations

from supernet.search.mixed_op import EdgePlan
from supernet.search.relaxations.base import Relaxation, check_phase, register


@register
class Uniform(Relaxation):
    name = "uniform"
    picks_architecture = False

    def __init__(self, fair: bool = False):
        self.fair = bool(fair)

    @property
    def single_path(self):
        return True

    def plan(self, arch, phase, step, host_probs=None):
        check_phase(phase)
        path = arch.fair_sample(step) if self.fair else arch.sample(step, uniform=True)
        return {n: EdgePlan("single", index=i) for n, i in path.items()}
