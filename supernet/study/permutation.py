"""A one-sided permutation test on the retrain seeds of two networks: is the first one's mean
CER lower? Few seeds (3 against 3) make this coarse, which is the point of reporting it: a gain
read off means alone can be one lucky seed. (Written here: scipy is not a dependency, and the
splits need no library.)"""

from __future__ import annotations

import itertools
import math
import random


def permutation_p(
    lower: list[float], other: list[float], exact_limit: int = 100_000, draws: int = 100_000
) -> float:
    """One-sided permutation p-value that ``lower`` has the smaller mean: the share of the splits
    of the pooled values into ``len(lower)`` and ``len(other)`` whose first part sums no higher. With 3 seeds against 3 the
    smallest possible is 1/20, which is why three seeds can suggest but not settle it. Exact over
    every split up to ``exact_limit`` of them (6 against 6: 924); beyond, ``draws`` seeded random
    splits (12 against 12 would be 2.7 million)."""
    pooled, observed, size = lower + other, sum(lower), len(lower)
    if math.comb(len(pooled), size) <= exact_limit:
        splits = itertools.combinations(range(len(pooled)), size)
        counts = [sum(pooled[i] for i in split) <= observed + 1e-12 for split in splits]
        return sum(counts) / len(counts)
    rng = random.Random(0)
    hits = sum(sum(rng.sample(pooled, size)) <= observed + 1e-12 for _ in range(draws))
    return (hits + 1) / (draws + 1)


def least_p(n: int, m: int, exact_limit: int = 100_000, draws: int = 100_000) -> float:
    """The smallest p ``permutation_p`` can give for ``n`` against ``m`` values: one split of all
    of them, or one draw more than the draws when it samples."""
    splits = math.comb(n + m, n)
    return 1 / splits if splits <= exact_limit else 1 / (draws + 1)
