"""ST-NAS: a sampled path runs; the arch pass adds the straight-through gradient (Eq. 10).

A step's two paths (arch and weight) are drawn on the host from ONE read of the alphas at the
step's start (``host_probs``). That copy is started right after the previous arch update
(``after_arch_update``), so the host waits for that update only, not for the work queued behind
it. With ``sample_ahead`` the paths come from the alphas one update old, whose copy is done: the
host never waits, and on several GPUs it does not wait for the other ranks' alpha all-reduce
either. The paper's recipe (off) samples from the current alphas.
"""

from __future__ import annotations

from supernet.search.mixed_op import EdgePlan
from supernet.search.relaxations.base import Relaxation, check_phase, register


@register
class StraightThrough(Relaxation):
    name = "st"

    def __init__(self, sample_ahead: bool = False):
        self.sample_ahead = bool(sample_ahead)
        self._restored = None  # sample_ahead's host copies from a checkpoint, put back at the first read

    def host_probs(self, arch):
        if self._restored is not None:
            arch.restore_host_copies(self._restored)
            self._restored = None
        return arch.lagged_host_probs() if self.sample_ahead else arch.host_probs()

    def after_arch_update(self, arch, alphas):
        arch.prefetch(alphas)  # copied to the host while the step's weight update runs

    def state_dict(self, arch):
        """sample_ahead: the alphas one update old, which the next step samples from."""
        return {"sampling_alphas": arch.host_copies()} if self.sample_ahead else {}

    def load_state_dict(self, state):
        # put back at the first read: loading the state dict, which comes next, forgets the copies
        self._restored = state.get("sampling_alphas")

    def plan(self, arch, phase, step, host_probs=None):
        learn = check_phase(phase)
        choices = arch.sample(step, probs=host_probs)
        if not learn:
            return {n: EdgePlan("single", index=i) for n, i in choices.items()}
        probs = arch.probs()
        return {n: EdgePlan("st", index=i, probs=probs[n]) for n, i in choices.items()}
