"""The allocator A/B behind supernet/latency/allocator.py: six conformer paths measured twice,
with glibc's default malloc, then (in a second process) with its thresholds pinned.

    python scripts/allocator_ab.py default; python scripts/allocator_ab.py pinned
"""

from __future__ import annotations

import statistics
import sys

from supernet.commands.latency_check import sample_archs
from supernet.latency import allocator, make_settings, measure_networks
from supernet.space import SearchSpace

if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "default"
    if mode == "default":  # leave glibc's own (dynamic) thresholds: as if pinning were impossible
        allocator._PINNED = "system"
    settings = make_settings("cpu", "fp32", 1, 1, 4.0, None, 64, "cpu", False)  # pins, unless default
    print(f"allocator: {settings['allocator']}")
    archs = sample_archs(SearchSpace.load("conformer"), 6, 3)
    first = measure_networks(archs, settings, 3, 10, 3)
    again = measure_networks(archs, settings, 3, 10, 3)
    pairs = " ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(first, again))
    self_mape = statistics.fmean(abs(a - b) / a for a, b in zip(first, again))
    print(f"{mode}: ms (first/again) {pairs}; self_mape {self_mape:.3f}")
