"""scripts/size_repick.py: a select's finalists picked again by objective rank + size rank."""

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import size_repick  # noqa: E402

from supernet.space import SearchSpace  # noqa: E402


def _finalist(objective, steps=48):
    return {"finetuned_objective": objective, "finetune_steps": steps, "cost": 1.0}


def test_the_rank_sum_and_its_ties():
    # objective places 0, 1, 2; size places 2, 0, 1: sums 2, 1, 3 -> the second finalist
    assert size_repick.size_pick([_finalist(1.0), _finalist(1.1), _finalist(1.2)], [10, 30, 20]) == 1
    # sums tie (0 + 1, 1 + 0): the better objective wins
    assert size_repick.size_pick([_finalist(1.0), _finalist(1.1)], [10, 30]) == 0
    # a diverged fine-tune places last by objective, whatever its size
    assert size_repick.size_pick([_finalist(None), _finalist(1.1), _finalist(1.2)], [99, 30, 20]) == 1
    # successive halving: one that left at an earlier rung places after the last rung's, though
    # its objective (of fewer steps) reads lower: places 1 + 0 and 0 + 1 tie, the survivor wins
    assert size_repick.size_pick([_finalist(0.9, steps=48), _finalist(1.1, steps=96)], [30, 10]) == 1


def test_the_size_name_keeps_the_longest_label():
    labels = ["budget_conformer_s", "0.5xbudget_conformer_s"]
    name = size_repick.size_name("uniform-s0-any-predictor-0.5xbudget_conformer_s", labels)
    assert name == "uniform-s0-any-predictor-size-0.5xbudget_conformer_s"
    with pytest.raises(SystemExit, match="ends with none of the study's budgets"):
        size_repick.size_name("uniform-s0-any-predictor-other", labels)


def _labels(space, picks):
    """Every edge's candidate at ``picks`` (an edge -> index map; the rest take their first)."""
    return [cands[picks.get(edge, 0)] for edge, cands in space.edges.items()]


def test_a_select_json_repicked_and_written(tmp_path, capsys):
    """Two finalists of ``budget``: the select's has the better objective and the smaller
    network (two front layers skipped), the other is larger with a close objective: the rank sums
    tie (0 + 1, 1 + 0), so the select's stays the pick. With a third of middle size (one front
    layer skipped) and the worst objective, the sums are 0 + 2, 1 + 0, 2 + 1: the larger one wins."""
    space = SearchSpace.load("budget")
    small = _labels(space, {"front1": 2, "front2": 2})  # two front layers skipped
    large = _labels(space, {})
    middle = _labels(space, {"front1": 2})
    pick = space.derive(dict(zip(space.edges, small)), name="uniform-s0-any-predictor-big")
    pick_file = tmp_path / "uniform-s0-any-predictor-big.yaml"
    pick_file.write_text(yaml.safe_dump(pick.to_dict(), sort_keys=False))
    finalists = [{"labels": small, **_finalist(1.0)}, {"labels": large, **_finalist(1.01)}]
    select = {"best": [{"budget": 1.0, "labels": small, "finalists": finalists}]}
    (entry,) = size_repick.repick(select, space, [pick_file], vocab=32)
    assert entry["params"][1] > entry["params"][0] and entry["own"] == 0 and entry["size"] == 0
    select["best"][0]["finalists"].append({"labels": middle, **_finalist(1.2)})
    (entry,) = size_repick.repick(select, space, [pick_file], vocab=32)
    assert entry["params"][0] < entry["params"][2] < entry["params"][1]
    assert entry["size"] == 1 and entry["own"] == 0 and entry["pick_file"] == pick_file
    select_file = tmp_path / "select.json"
    select_file.write_text(json.dumps(select))
    sys.argv = ["size_repick.py", str(select_file), "--space", "budget", "--picks", str(pick_file),
                "--labels", "big", "--out", str(tmp_path / "size")]  # fmt: skip
    size_repick.main()
    assert (
        "budget 1 (uniform-s0-any-predictor-big): finalists" in capsys.readouterr().out
    )  # paired_picks' key
    written = yaml.safe_load((tmp_path / "size" / "uniform-s0-any-predictor-size-big.yaml").read_text())
    assert written["name"] == "uniform-s0-any-predictor-size-big" and written["layers"][0] == large[0]


def test_a_select_json_from_before_halving_has_one_rung():
    """Finalists of a select.json without ``finetune_steps`` (written before successive halving)
    are ordered by their fine-tuned objective alone."""
    old = [{"finetuned_objective": 1.0, "cost": 1.0}, {"finetuned_objective": 1.1, "cost": 1.0}]
    assert size_repick.size_pick(old, [10, 30]) == 0 and size_repick.size_pick(old, [10, 10]) == 0
