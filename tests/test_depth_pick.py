"""The depth-first pick (``model.pick depth``, ``extract --pick depth``): a layer is kept when its ops
together outweigh ``skip``, then takes its op; under a budget, cheaper ops at that depth first, then
the narrowest vote is dropped. Known answers on hand-set alphas."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from supernet.archspec import ArchSpec
from supernet.commands import extract as extract_command
from supernet.errors import UserError
from supernet.latency import SpaceCosts, choose_path
from supernet.search.extract import extract
from supernet.search.module import SearchModule
from supernet.space import SearchSpace

SKIP = {"a": 2, "b": 2}


def alphas(**probs: list[float]) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(p).log() for name, p in probs.items()}


def test_a_layer_whose_ops_outvote_skip_is_kept_with_its_best_op():
    split = alphas(a=[0.35, 0.25, 0.40], b=[0.2, 0.1, 0.7], c=[0.4, 0.6])  # c: no skip, argmax
    assert choose_path(split, None, None) == {"a": 2, "b": 2, "c": 1}
    assert choose_path(split, None, None, SKIP) == {"a": 0, "b": 2, "c": 1}


def test_under_a_budget_cheaper_ops_come_before_a_shallower_path():
    costs = SpaceCosts("ms", 0.0, {"a": [3.0, 1.0, 0.0], "b": [3.0, 1.0, 0.0]})
    # both kept (keep 0.7 and 0.6); the ops' own votes a0 0.6, b0 0.5
    probs = alphas(a=[0.6, 0.1, 0.3], b=[0.5, 0.1, 0.4])
    assert choose_path(probs, costs, 6.0, SKIP) == {"a": 0, "b": 0}  # fits as it is
    # both kept, within 4: (a0, b1) log 0.06 beats (a1, b0) log 0.05
    assert choose_path(probs, costs, 4.0, SKIP) == {"a": 0, "b": 1}
    # within 3 both layers stay, with cheap ops; the argmax rule drops b for a's best op instead
    assert choose_path(probs, costs, 3.0, SKIP) == {"a": 1, "b": 1}
    assert choose_path(probs, costs, 3.0) == {"a": 0, "b": 2}
    # within 1.5 no ops keep both: b, the narrower vote (0.6 against 0.4), is dropped
    assert choose_path(probs, costs, 1.5, SKIP) == {"a": 1, "b": 2}
    assert choose_path(probs, costs, 0.5, SKIP) == {"a": 2, "b": 2}
    with pytest.warns(UserWarning, match="no path of the space costs at most the budget"):
        assert choose_path(probs, costs, -1.0, SKIP) == {"a": 0, "b": 0}  # nothing fits: the argmax


def test_a_tie_keeps_the_layer_and_tied_votes_drop_in_edge_order():
    tied = alphas(a=[0.5, 0.5], b=[0.5, 0.5])  # skip is index 1 of both: every vote a tie
    drop = {"a": 1, "b": 1}
    assert choose_path(tied, None, None, drop) == {"a": 0, "b": 0}
    costs = SpaceCosts("ms", 0.0, {"a": [1.0, 0.0], "b": [1.0, 0.0]})
    assert choose_path(tied, costs, 1.0, drop) == {"a": 1, "b": 0}  # one layer fits: a goes first


def test_an_all_ruled_out_edge_has_no_path_within():
    costs = SpaceCosts("ms", 0.0, {"a": [1.0, 0.0]})
    assert costs.most_probable_within({"a": [-math.inf, -math.inf]}, 5.0) is None


THREE = {
    "name": "three",
    "features": "fbank",
    "feature_dim": 8,
    "dim": 16,
    "input": "linear",
    "layers": [{"name": "a", "choice": ["tdnn-k3-d1", "tdnn-k3-d2", "skip"]}, "tdnn-k3-d1"],
}


def test_the_search_and_extract_pick_depth_first_when_asked(tmp_path, capsys):
    space = SearchSpace(THREE)
    assert space.droppable() == {"a": 2}
    module = SearchModule(THREE, vocab=["<blank>", "<unk>", "a"], method="st")  # depth: the default
    with torch.no_grad():
        module.arch.alphas["a"].copy_(torch.tensor([0.35, 0.25, 0.40]).log())
    assert module.chosen_path() == {"a": 0}
    ckpt = tmp_path / "search.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    assert space.index_of(extract(ckpt)[0]) == {"a": 0}  # the search's own rule
    assert space.index_of(extract(ckpt, pick="argmax")[0]) == {"a": 2}
    older = {k: v for k, v in module.hparams.items() if k != "pick"}  # searched before the setting
    torch.save({"hyper_parameters": older, "state_dict": module.state_dict()}, tmp_path / "older.ckpt")
    assert space.index_of(extract(tmp_path / "older.ckpt")[0]) == {"a": 2}  # keeps the argmax it had
    loaded = SearchModule(THREE, vocab=["<blank>", "<unk>", "a"], method="st")
    loaded.load_state_dict(module.state_dict())
    loaded.on_load_checkpoint({"hyper_parameters": older})  # a search resumed or loaded from it
    assert loaded.hparams.pick == "argmax" and loaded.chosen_path() == {"a": 2}
    args = argparse.Namespace(ckpt=str(ckpt), output=str(tmp_path / "arch.yaml"), name=None, pick="argmax")
    assert extract_command.run(args) == 0 and "a: skip  (p=0.40)" in capsys.readouterr().out
    with pytest.raises(UserError, match="model.pick: unknown pick rule 'widest'"):
        SearchModule(THREE, vocab=["<blank>", "<unk>", "a"], pick="widest")


def test_repick_reads_a_search_json_and_picks_by_either_rule(tmp_path):
    """scripts/repick.py: the pick of a search whose checkpoint is elsewhere, from search.json."""
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(THREE))
    search = tmp_path / "search.json"
    search.write_text(json.dumps({"probs": {"a": [0.35, 0.25, 0.40]}}))
    script = Path(__file__).parent.parent / "scripts" / "repick.py"

    def repick(rule: str) -> str:
        out = tmp_path / f"{rule}.yaml"
        argv = [sys.executable, script, search, "--space", space_file, "--pick", rule, "-o", out]
        subprocess.run(list(map(str, argv)), check=True, capture_output=True)
        return ArchSpec.load(out).layers[0]

    assert repick("depth") == "tdnn-k3-d1" and repick("argmax") == "skip"
    search.write_text(json.dumps({"probs": {"b": [1.0]}}))
    failed = subprocess.run([sys.executable, str(script), str(search), "--space", str(space_file), "-o", "x.yaml"],
                            capture_output=True, text=True)  # fmt: skip
    assert failed.returncode != 0 and "lack edge(s) a" in failed.stderr
