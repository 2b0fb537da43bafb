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
the module dropped these options until session 24). ``h200_route`` ships
``{former: 3, down: 0.3333}`` (attention blocks at the full frame rate 3x, downsampled ones 1x):
over five GPU supernets its picks beat Conformer-S by 6.0% on average, against 0.6% for even
draws (docs/results.md, session 27).
``stage_depth: true`` draws depth as Once-for-All's elastic depth does: in each stage (a run of
consecutive edges with a ``skip`` candidate, between fixed layers) the number of layers kept is
uniform over 0..n, which ones uniform over the subsets of that size, and each kept layer's op
uniform over its other candidates. Why: per-edge draws drop all three of ``budget``'s front layers
in 1 step of 27, so the shared subsampling layer seldom trains on unprocessed input, and a path
that drops them is under-rated (docs/results.md, session 24); here it is 1 step in 4. On one CPU
supernet of the route it ranked worse than even draws (tau 0.042 against 0.147): deep paths train
less, and the attention-free networks, deep TDNN stacks, lost their good ranking.
"""

from __future__ import annotations

import math

import torch

from supernet.errors import UserError
from supernet.search.mixed_op import EdgePlan
from supernet.search.relaxations.base import Relaxation, check_phase, register
from supernet.space import Choice


@register
class Uniform(Relaxation):
    name = "uniform"
    picks_architecture = False

    def __init__(
        self, fair: bool = False, draw_weights: dict[str, float] | None = None, stage_depth: bool = False
    ):
        self.fair = bool(fair)
        self.draw_weights = {str(k): v for k, v in (draw_weights or {}).items()}
        self.stage_depth = bool(stage_depth)
        bad = {k: v for k, v in self.draw_weights.items() if not _positive(v)}
        if bad:
            raise UserError(f"model.method_options draw_weights {bad}: each weight must be a positive number")
        chosen = [name for name, on in (("fair", self.fair), ("draw_weights", self.draw_weights),
                                         ("stage_depth", self.stage_depth)) if on]  # fmt: skip
        if len(chosen) > 1:
            raise UserError(
                f"model.method_options: {' and '.join(chosen)} exclude each other (each is a way to draw)"
            )
        self._probs: dict[str, torch.Tensor] | None = None
        self._stages: list[list[str]] | None = None  # stage_depth's stages, from ``use_space``

    def use_space(self, space) -> None:
        if not self.stage_depth:
            return
        stages, current = [], []
        for layer in space.layers:
            if isinstance(layer, Choice) and "skip" in layer.candidates:
                current.append(layer.name)
            elif current:  # a fixed layer, or an edge without skip, ends the stage
                stages.append(current)
                current = []
        self._stages = stages + ([current] if current else [])
        if not self._stages:
            raise UserError(
                f"{space.source}: model.method_options stage_depth: no edge has a skip candidate, so "
                "there is no depth to draw"
            )

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

    def describe(self, arch) -> str | None:
        """Each candidate that ``draw_weights`` reweights, with its weight: patterns match by
        substring, so one can reach a candidate it was not meant for (``former`` also matches the
        narrow ``res-conformer-...-e96``, which session 28 found its picks trade full-width blocks
        for). Shown once, so that such a match is seen before the supernet trains."""
        if not self.draw_weights:
            return None
        probs = self.edge_probs(arch)
        weights = {
            c: float(w) for edge, cands in arch.labels.items() for c, w in zip(cands, probs[edge]) if w != 1
        }
        listed = ", ".join(
            f"{c} x{round(w, 3):g}" for c, w in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        reach = f"{listed} (the rest x1)" if listed else "no candidate reweighted"
        return f"uniform draw_weights {self.draw_weights}: {reach}"

    def plan(self, arch, phase, step, host_probs=None):
        check_phase(phase)
        if self.fair:  # ``step`` is the generator stream's index, 2 x the step for a weight pass
            path = arch.fair_sample(step // 2)
        elif self.stage_depth:
            path = self.depth_sample(arch, step)
        elif self.draw_weights:
            path = arch.sample(step, probs=self.edge_probs(arch))
        else:
            path = arch.sample(step, uniform=True)
        return {n: EdgePlan("single", index=i) for n, i in path.items()}

    def depth_sample(self, arch, step: int) -> dict[str, int]:
        """One path with each stage's depth drawn uniformly; from (seed, step) alone, as every
        sampler (the same path on every DDP rank and after a resume)."""
        if self._stages is None:
            raise ValueError("uniform stage_depth draws from the space's stages: call use_space first")
        gen = arch.generator(step)

        def draw(n: int) -> int:
            return int(torch.randint(n, (1,), generator=gen))

        # every edge gets a draw; a stage's edges are drawn again below (this order of draws is
        # what the measured supernet ran: changing it would change each seed's paths)
        path = {name: draw(len(cands)) for name, cands in arch.labels.items()}
        for stage in self._stages:
            kept = set(torch.randperm(len(stage), generator=gen)[: draw(len(stage) + 1)].tolist())
            for i, name in enumerate(stage):
                skip = arch.labels[name].index("skip")
                others = [j for j in range(len(arch.labels[name])) if j != skip]
                path[name] = others[draw(len(others))] if i in kept else skip
        return path


def _positive(value) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )
