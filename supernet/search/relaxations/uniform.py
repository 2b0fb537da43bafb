"""Single-path one-shot training: a uniformly drawn candidate per edge, the alphas never learn.

The warm-up of every method, and the first stage of the discrete strategies (train the supernet's
shared weights once, then let a strategy pick paths from it). It picks no architecture itself.
``fair: true`` (``--model.method_options '{fair: true}'``) samples as FairNAS does: every candidate
of an edge once per round of steps, instead of independent draws (``ArchParams.fair_sample``).
``draw_weights: {PATTERN: W, ...}`` draws a candidate W times as often as a plain one when its name
contains PATTERN (weights of several patterns multiply; ``{former: 2, down: 0.5}``: full-rate
attention blocks twice as often, downsampled ones as often as the rest). Why: a uniform supernet
under-rates some attention-heavy networks (docs/results.md, session 11), and drawing their blocks
more often trains them further in the same steps (session 11's measurement of it drew evenly:
the module dropped these options until session 24; docs/results.md has the measurement since).
"""

from __future__ import annotations

import math

import torch

from supernet.errors import UserError
from supernet.search.mixed_op import EdgePlan
from supernet.search.relaxations.base import Relaxation, check_phase, register


@register
class Uniform(Relaxation):
    name = "uniform"
    picks_architecture = False

    def __init__(self, fair: bool = False, draw_weights: dict[str, float] | None = None):
        self.fair = bool(fair)
        self.draw_weights = {str(k): v for k, v in (draw_weights or {}).items()}
        bad = {k: v for k, v in self.draw_weights.items() if not _positive(v)}
        if bad:
            raise UserError(f"model.method_options draw_weights {bad}: each weight must be a positive number")
        if self.fair and self.draw_weights:
            raise UserError(
                "model.method_options: fair and draw_weights exclude each other (fair draws evenly)"
            )
        self._probs: dict[str, torch.Tensor] | None = None

    @property
    def single_path(self):
        return True

    def edge_probs(self, arch) -> dict[str, torch.Tensor]:
        """Each edge's draw weights: a candidate's is the product of the weights of the patterns
        its name contains (1 when none). A pattern that no candidate contains is refused."""
        if self._probs is None:
            names = [c for cands in arch.labels.values() for c in cands]
            unmatched = [p for p in self.draw_weights if not any(p in c for c in names)]
            if unmatched:
                raise UserError(
                    f"model.method_options draw_weights: {unmatched} match no candidate of the space "
                    f"(candidates such as {names[:3]})"
                )
            self._probs = {
                edge: torch.tensor(
                    [math.prod(w for p, w in self.draw_weights.items() if p in c) for c in cands],
                    dtype=torch.float64,
                )
                for edge, cands in arch.labels.items()
            }
        return self._probs

    def plan(self, arch, phase, step, host_probs=None):
        check_phase(phase)
        if self.fair:  # ``step`` is the generator stream's index, 2 x the step for a weight pass
            path = arch.fair_sample(step // 2)
        elif self.draw_weights:
            path = arch.sample(step, probs=self.edge_probs(arch))
        else:
            path = arch.sample(step, uniform=True)
        return {n: EdgePlan("single", index=i) for n, i in path.items()}


def _positive(value) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )
