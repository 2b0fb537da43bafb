"""scripts/draw_cost.py: a recipe's expected cost of a drawn path, checked against whole paths
priced by the table one by one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import draw_cost  # noqa: E402

from supernet.latency import LatencyTable  # noqa: E402
from supernet.space import SearchSpace  # noqa: E402

STUDY = Path(__file__).resolve().parents[1] / "docs" / "study" / "h200_route"


@pytest.fixture(scope="module")
def space_table():
    return SearchSpace.load(STUDY / "space.yaml"), LatencyTable.load(STUDY / "latency.json")


def test_a_recipe_that_draws_only_skips_costs_the_path_that_drops_every_layer(space_table):
    space, table = space_table
    costs = draw_cost.recipe_costs(space, table, {"even": {}, "skips": {"skip": 1e12}})
    dropped = space.derive({edge: "skip" for edge in space.droppable()})
    assert costs["skips"]["flops"] == pytest.approx(table.predict(dropped, "flops"), rel=1e-6)
    assert costs["even"]["flops_ratio"] == 1.0
    assert costs["skips"]["flops_ratio"] < 0.5


def test_even_draws_cost_the_mean_over_every_path(space_table):
    """By linearity the expectation is the mean over all paths: exact on the space cut to two
    edges (a front layer before the subsampling and a block after it, 3 x 10 paths)."""
    space, table = space_table
    data = space.to_dict()
    kept = {"front1", "block1"}
    data["layers"] = [
        layer if not isinstance(layer, dict) or layer.get("name") in kept else layer["choice"][0]
        for layer in data["layers"]
    ]
    small = SearchSpace.load(data)
    assert small.num_paths == 30
    paths = [small.derive({"front1": f, "block1": b}) for f in range(3) for b in range(10)]
    mean = sum(table.predict(p, "flops") for p in paths) / len(paths)
    expected = draw_cost.recipe_costs(small, table, {"even": {}})["even"]["flops"]
    assert expected == pytest.approx(mean, rel=1e-9)


def test_heavier_attention_draws_cost_more_per_step(space_table):
    space, table = space_table
    recipes = {"x3": {"former": 3, "down": 1 / 3}, "x8": {"former": 8, "down": 0.125, "e96": 0.125}}
    costs = draw_cost.recipe_costs(space, table, recipes)
    assert costs["x8"]["flops_ratio"] > 1.2


def test_a_recipe_without_a_mapping_is_refused_by_name():
    with pytest.raises(SystemExit, match="recipe 'x3=oops'"):
        draw_cost.parse_recipe("x3=oops")
    with pytest.raises(SystemExit, match="NAME=YAML_MAPPING"):
        draw_cost.parse_recipe("x3")
