"""Calibration: a table's op sums fitted to whole networks measured beside them.

A table's prediction is the sum of its ops' entries, each timed inside running networks. On a
CPU that sum still drifts from a network's end-to-end time (caches, the allocator, frequency:
the issue measured predictions 10-20% low right after profiling). As kernel-level predictors do
(nn-Meter), a few whole networks chosen to span the space's cost range are timed in the same
rounds as the ops, interleaved, so that a drift hits both alike, and a least-squares line
``measured = scale * sum + offset_ms`` is fitted and stored in the table's settings. Every
prediction (``LatencyTable.predict``, ``LatencyTable.costs`` and so the search's expected
latency) goes through it; the line is linear, so the expectation under the alphas stays exact.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

from supernet.archspec import ArchSpec
from supernet.space import SearchSpace

# Below this spread of the fitted networks' op sums (max / min), a line's slope is noise (a few
# percent of timing noise tilts it, and the offset swings with it): the fit keeps one scale
# through the origin instead, as on st_nas (spread ~1.5), where a line extrapolated badly.
MIN_SPREAD = 2.0


def spanning_archs(
    space: SearchSpace, settings: dict, count: int, seed: int = 0, pool: int = 64
) -> list[ArchSpec]:
    """``count`` paths of the space spread over its cost range: ``pool`` uniform draws sorted by
    FLOPs, taken at evenly spaced ranks (from the cheapest to the dearest). In a streaming table,
    only paths whose every op can stream."""
    rng = random.Random(seed)
    drawn = []
    for i in range(pool):
        spec = space.derive(space.sample_path(rng), f"{space.name}-span{i}")
        if settings.get("chunk_ms") is None or spec.streamable:
            drawn.append(spec)
    drawn.sort(key=lambda spec: spec.flops_per_second())
    if count <= 0 or not drawn:
        return []
    if count == 1:
        return [drawn[len(drawn) // 2]]
    ranks = sorted({round(i * (len(drawn) - 1) / (count - 1)) for i in range(count)})
    return [drawn[r] for r in ranks]


def fit(sums: list[float], measured: list[float]) -> dict[str, Any]:
    """The line from op sums to measured times (ms), and how well it fits: ``raw_mape`` (the sums
    as they are) and ``fit_mape`` (through the line), over the fitted networks.

    Least squares gives a line (with a spread of at least ``MIN_SPREAD``) and a ratio through
    the origin; the one kept is whichever fits the networks best, the sums as they are included,
    and a slope must be positive: a few noisy networks (a tiny space timed once) can tilt a line
    below zero, and the calibration must never make the table worse than its plain sums."""
    n = len(sums)
    if n == 0:
        raise ValueError("calibration needs at least one measured network")
    options = [
        ("none", 1.0, 0.0),
        ("ratio", sum(x * y for x, y in zip(sums, measured)) / sum(x * x for x in sums), 0.0),
    ]
    if n >= 3 and max(sums) / max(min(sums), 1e-12) >= MIN_SPREAD:
        mean_x, mean_y = statistics.fmean(sums), statistics.fmean(measured)
        var = sum((x - mean_x) ** 2 for x in sums)
        scale = sum((x - mean_x) * (y - mean_y) for x, y in zip(sums, measured)) / var
        options.append(("line", scale, mean_y - scale * mean_x))
    scored = [
        (_mape([scale * x + offset for x in sums], measured), kind, scale, offset)
        for kind, scale, offset in options
        if scale > 0
    ]
    fit_mape, kind, scale, offset = min(scored, key=lambda s: s[0])
    return {
        "kind": kind,
        "scale": scale,
        "offset_ms": offset,
        "networks": n,
        "raw_mape": _mape(sums, measured),
        "fit_mape": fit_mape,
    }


def apply(calibration: dict[str, Any] | None, ms: float) -> float:
    """A sum of entries (ms) through the table's line; unchanged without one."""
    if not calibration:
        return ms
    return calibration["scale"] * ms + calibration["offset_ms"]


def _mape(predicted: list[float], measured: list[float]) -> float:
    return statistics.fmean(abs(p - m) / m for p, m in zip(predicted, measured))
