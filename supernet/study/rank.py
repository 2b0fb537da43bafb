"""How well a supernet ranks architectures: each one scored with the supernet's inherited weights
(its path fixed, BatchNorm recalibrated) against its CER when trained alone; Kendall's tau.

Scoring a path with inherited weights (BatchNorm re-estimated on ``batches`` train batches of the
path alone) is ``supernet.select.score.SupernetScorer``, shared with ``supernet select``. Dev
only: test sets never choose anything.
"""

from __future__ import annotations

import math
from pathlib import Path

from supernet.archspec import ArchSpec


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b (ties in either list are allowed, as scipy's default); None when undefined
    (fewer than two items, or every item tied in one list)."""
    concordance, untied_x, untied_y = 0, 0, 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            a = (x[i] > x[j]) - (x[i] < x[j])
            b = (y[i] > y[j]) - (y[i] < y[j])
            concordance, untied_x, untied_y = concordance + a * b, untied_x + (a != 0), untied_y + (b != 0)
    return concordance / math.sqrt(untied_x * untied_y) if untied_x and untied_y else None


def ranking_quality(
    scores: dict[str, dict[str, float]], standalone: dict[str, float]
) -> tuple[list[dict], float | None]:
    """Kendall's tau of each search's scores (``{search: {arch: dev CER}}``) against the stand-alone
    dev CER of the same architectures, and the mean of those that are defined."""
    ranking = []
    for search, score in scores.items():
        names = sorted(set(score) & set(standalone))
        tau = kendall_tau([score[n] for n in names], [standalone[n] for n in names])
        ranking.append({"search": search, "kendall_tau": tau, "archs": len(names)})
    taus = [r["kendall_tau"] for r in ranking if r["kendall_tau"] is not None]
    return ranking, sum(taus) / len(taus) if taus else None


def supernet_cer(
    ckpt: str | Path, data: Path, archs: dict[str, ArchSpec], batches: int, max_frames: int = 20000
) -> dict[str, float]:
    """Dev CER of each architecture of ``archs`` that is a path of the search's space, with the
    weights of the search checkpoint ``ckpt`` (architectures outside the space are left out)."""
    from supernet.select.score import SupernetScorer

    scorer = SupernetScorer(ckpt, data, batches, split="dev", arch_fraction=0.0, max_frames=max_frames)
    paths = {}
    for name, spec in archs.items():
        try:
            paths[name] = scorer.space.index_of(spec)
        except ValueError:
            continue
    return {name: scorer(path) for name, path in paths.items()}
