"""FeasibleSampler: paths within a budget drawn directly, uniformly or by a prior, with per-rate
costs after a stride edge; known answers by enumeration, and evolution that now starts at a budget
where rejection finds nothing."""

from __future__ import annotations

import collections
import itertools
import random

import pytest

from supernet.latency import SpaceCosts
from supernet.select.feasible import FeasibleSampler
from supernet.select.problem import Problem, key_of
from supernet.select.strategies.base import build_strategy


def frequencies(sampler: FeasibleSampler, draws: int) -> dict[str, float]:
    rng = random.Random(0)
    counts = collections.Counter(key_of(sampler(rng)) for _ in range(draws))
    return {key: n / draws for key, n in counts.items()}


def test_uniform_over_exactly_the_paths_within_the_budget():
    costs = SpaceCosts("ms", 1.0, {"a": [0.0, 1.0, 2.5], "b": [0.0, 1.5, 3.0], "c": [0.2, 0.7, 1.1]})
    budget = 3.4
    paths = [dict(zip("abc", p)) for p in itertools.product(range(3), repeat=3)]
    fits = {key_of(p) for p in paths if costs.at(p) <= budget}
    assert 3 < len(fits) < 27
    seen = frequencies(FeasibleSampler(costs, budget, bins=16), 6000)  # a coarse grid: rounding is redrawn
    assert set(seen) == fits
    assert all(abs(f - 1 / len(fits)) < 0.12 / len(fits) for f in seen.values())  # 3 sigma: 0.1


def test_costs_after_a_stride_edge_depend_on_the_rate_and_a_prior_weighs_the_draws():
    # s: stride 1 (cost 1.0) or 2 (0.5); a after it costs less at rate 2
    costs = SpaceCosts("ms", 0.0, {"s": [1.0, 0.5], "a": {1: [2.0, 0.0], 2: [1.0, 0.0]}}, {"s": [1, 2]})
    # within 2.0: (s0, a1) 1.0, (s1, a0) 1.5, (s1, a1) 0.5; (s0, a0) costs 3.0
    seen = frequencies(FeasibleSampler(costs, 2.0), 6000)
    assert set(seen) == {"0-1", "1-0", "1-1"} and all(abs(f - 1 / 3) < 0.03 for f in seen.values())
    # prior s (0.9, 0.1), a uniform: weights 0.45, 0.05, 0.05 -> 9/11, 1/11, 1/11
    seen = frequencies(FeasibleSampler(costs, 2.0, weights={"s": [0.9, 0.1], "a": [0.5, 0.5]}), 6000)
    assert seen["0-1"] == pytest.approx(9 / 11, abs=0.02) and seen["1-0"] == pytest.approx(1 / 11, abs=0.02)
    assert FeasibleSampler(costs, 0.4)(random.Random(0)) is None  # the cheapest path costs 0.5
    free = SpaceCosts("ms", 1.0, {"a": [0.0, 0.5], "b": [0.3, 0.0]})  # a budget of the fixed part alone
    assert set(frequencies(FeasibleSampler(free, 1.0), 200)) == {"0-1"}


def test_evolution_starts_where_rejection_finds_no_path():
    # 8 edges of 10 candidates: 81 of 10^8 paths fit (at most one dear candidate): 1 in 1.2 million
    costs = SpaceCosts("ms", 0.0, {f"e{i}": [1.0] + [10.0] * 9 for i in range(8)})
    budget = 17.0

    def scored(sampler) -> int:
        problem = Problem({f"e{i}": 10 for i in range(8)}, lambda p: float(sum(p.values())), costs.at, budget,
                          sampler=sampler)  # fmt: skip
        build_strategy("evolution", {}).run(problem, 20, seed=0)
        return problem.evaluations

    assert scored(None) == 0
    assert scored(FeasibleSampler(costs, budget)) == 20


def test_a_draw_the_sampler_gives_up_on_is_a_miss_not_the_end():
    draws = iter([None, {"a": 1}])
    problem = Problem({"a": 2}, lambda p: 0.0, lambda p: float(p["a"]), 5.0, sampler=lambda rng: next(draws))
    assert problem.random_feasible(random.Random(0), tries=3) == {"a": 1}


@pytest.mark.parametrize("bins", [16, 2048])
def test_a_floor_draws_uniformly_over_exactly_the_band(bins):
    costs = SpaceCosts("ms", 1.0, {"a": [0.0, 1.0, 2.5], "b": [0.0, 1.5, 3.0], "c": [0.2, 0.7, 1.1]})
    budget, floor = 4.6, 3.2
    paths = [dict(zip("abc", p)) for p in itertools.product(range(3), repeat=3)]
    band = {key_of(p) for p in paths if floor <= costs.at(p) <= budget}
    assert 3 < len(band) < len({key_of(p) for p in paths if costs.at(p) <= budget})
    seen = frequencies(FeasibleSampler(costs, budget, bins=bins, floor=floor), 6000)
    assert set(seen) == band  # the paths at the floor's edge too (rounding admits, the exact cost judges)
    assert all(abs(f - 1 / len(band)) < 0.12 / len(band) for f in seen.values())
    empty = FeasibleSampler(costs, budget, floor=budget + 1.0)
    assert empty(random.Random(0)) is None and not empty.any_fits  # an empty band
    edge = FeasibleSampler(SpaceCosts("ms", 1.0, {"e0": [0.6, 0.8]}), 1.8, floor=1.6)
    assert {key_of(edge(random.Random(s))) for s in range(20)} == {"0", "1"}  # 1.6: exactly at the floor
    p = Problem({"a": 3, "b": 3, "c": 3}, lambda path: 0.0, costs.at, budget, floor=floor)
    assert [p.outside(c) for c in (floor - 0.5, floor, budget, budget + 0.25)] == [0.5, 0.0, 0.0, 0.25]
    assert all(p.feasible(dict(zip("abc", map(int, key.split("-"))))) for key in band)
