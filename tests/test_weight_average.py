"""The supernet's weight average (``model.weight_average``): the EMA's known values, its state
across a save and load, and a uniform search that keeps one, scored both ways by ``select``."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch import nn

from supernet.search.weight_average import WeightAverage, ramped_decay


def test_the_decay_ramps_up_to_its_ceiling():
    assert ramped_decay(0.99, 0) == pytest.approx(0.1)  # the untrained start fades at once
    assert ramped_decay(0.99, 10) == pytest.approx(11 / 20)
    assert ramped_decay(0.99, 10_000) == 0.99


def test_each_update_moves_the_average_towards_the_weights_by_one_minus_the_decay():
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    average = WeightAverage(net, decay=0.5)
    expected = 0.0
    for updates, value in enumerate([1.0, 2.0, 4.0]):
        with torch.no_grad():
            net.weight.fill_(value)
        average.update(net)
        decay = min(0.5, (1 + updates) / (10 + updates))
        expected = decay * expected + (1 - decay) * value
        assert average.average.weight.item() == pytest.approx(expected)
    assert int(average.updates) == 3
    assert not average.average.weight.requires_grad  # never trained, never in an optimizer


def test_a_loaded_average_goes_on_from_its_saved_count():
    net = nn.Linear(2, 2)
    first = WeightAverage(net, decay=0.9)
    for _ in range(5):
        first.update(net)
    second = WeightAverage(nn.Linear(2, 2), decay=0.9)
    second.update(net)  # its own host count (1) must not survive the load
    second.load_state_dict(first.state_dict())
    first.update(net), second.update(net)
    assert int(second.updates) == 6
    torch.testing.assert_close(second.average.weight, first.average.weight)
    target = nn.Linear(2, 2)
    second.copy_to(target)
    torch.testing.assert_close(target.weight, first.average.weight)


def test_a_decay_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(nn.Linear(1, 1), decay=1.0)


def test_a_uniform_search_keeps_an_average_that_select_scores_with(tmp_path, capsys):
    from supernet.commands.cli import main as cli_main
    from supernet.data.corpus import build_corpus
    from supernet.errors import UserError
    from supernet.search.module import SearchModule
    from supernet.select.score import SupernetScorer
    from tests.test_search import TINY_SPACE, run_search

    corpus = build_corpus(tmp_path / "corpus", langs=("en",), minutes=0.6, seed=3, workers=1)
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    out = tmp_path / "run"
    run_search(corpus, space, out, 1, method="uniform", extra=["--model.weight_average", "0.9"])
    ckpt = out / "checkpoints" / "last.ckpt"
    module = SearchModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert int(module.net_average.updates) == int(module.search_step) > 0  # one update a weight step
    trained = [p.clone() for p in module.net.parameters()]
    assert module.load_averaged_weights()
    assert any(not torch.equal(a, b) for a, b in zip(trained, module.net.parameters()))

    path = {name: 0 for name in module.space.edges}
    average = SupernetScorer(ckpt, corpus, batches=1, metric="loss", device="cpu")
    plain = SupernetScorer(ckpt, corpus, batches=1, metric="loss", device="cpu", weights="trained")
    assert (average.weights, plain.weights) == ("average", "trained")
    assert average(path) != plain(path)
    with pytest.raises(ValueError, match="weights must be one of"):
        SupernetScorer(ckpt, corpus, weights="ema")
    assert average.norms  # BatchNorm statistics of the trained weights would score the averaged ones:
    with pytest.raises(UserError, match="re-estimated"):
        SupernetScorer(ckpt, corpus, batches=0, device="cpu")
    assert SupernetScorer(ckpt, corpus, batches=0, device="cpu", weights="trained").weights == "trained"

    argv = ["select", str(ckpt), "--data", str(corpus), "--strategy", "random", "--target", "params",
            "--budget", "1e9", "--evaluations", "2", "--batches", "1", "--metric", "loss"]  # fmt: skip
    assert cli_main([*argv, "--out", str(tmp_path / "average")]) == 0
    assert cli_main([*argv, "--weights", "trained", "--out", str(tmp_path / "trained")]) == 0
    results = {w: json.loads((tmp_path / w / "select.json").read_text()) for w in ("average", "trained")}
    assert results["average"]["weights_used"] == "average" and "weights" not in results["average"]
    assert results["trained"]["weights_used"] == "trained" and results["trained"]["weights"] == "trained"
    scores = {w: {c["path"]: c["score"] for c in r["candidates"]} for w, r in results.items()}
    shared = set(scores["average"]) & set(scores["trained"])
    assert shared and all(scores["average"][p] != scores["trained"][p] for p in shared)


def test_the_search_refuses_a_weight_average_outside_zero_to_one():
    from supernet.errors import UserError
    from supernet.search.module import SearchModule
    from tests.test_search import TINY_SPACE

    with pytest.raises(UserError, match="model.weight_average must lie in"):
        SearchModule(TINY_SPACE, vocab=["<blank>", "<unk>", "a"], method="uniform", weight_average=1.5)
    assert SearchModule(TINY_SPACE, vocab=["<blank>", "<unk>", "a"], method="uniform").net_average is None


def test_a_search_with_an_average_pickles_for_spawned_ddp_and_refuses_a_resume_without_it():
    import pickle

    from supernet.errors import UserError
    from supernet.search.module import SearchModule
    from tests.test_search import TINY_SPACE

    vocab = ["<blank>", "<unk>", "a"]
    with_average = SearchModule(TINY_SPACE, vocab=vocab, method="uniform", weight_average=0.9)
    copy = pickle.loads(pickle.dumps(with_average))  # ddp_spawn pickles the module for each process
    copy.net_average.update(copy.net)
    assert int(copy.net_average.updates) == 1
    state = {"state_dict": with_average.state_dict(), "hyper_parameters": {"weight_average": 0.9}}
    plain = SearchModule(TINY_SPACE, vocab=vocab, method="uniform")
    with pytest.raises(UserError, match="searched with model.weight_average 0.9, this run asks for 0.0"):
        plain.on_load_checkpoint(state)
    with pytest.raises(UserError, match="weight_average 0.0, this run asks for 0.9"):
        with_average.on_load_checkpoint({"state_dict": plain.state_dict(), "hyper_parameters": {}})
