"""The ABS angle score (``supernet.select.angle``): a path's own parameters, the cosine's known
values, and a search that keeps its initial weights through a resume for the scorer to read."""

from __future__ import annotations

import pytest
import torch
import yaml

from supernet.search.module import SearchModule
from supernet.select.angle import init_cosine, initial_matrices
from tests.test_search import TINY_SPACE, run_search

VOCAB = ["<blank>", "<unk>", "a"]


@pytest.fixture(scope="module")
def corpus_and_space(tmp_path_factory):
    """A tiny corpus and TINY_SPACE's file."""
    from supernet.data.corpus import build_corpus

    folder = tmp_path_factory.mktemp("angle")
    corpus = build_corpus(folder / "corpus", langs=("en",), minutes=0.6, seed=3, workers=1)
    space = folder / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    return corpus, space


@pytest.fixture(scope="module")
def unkept(corpus_and_space, tmp_path_factory):
    """``(corpus, space, checkpoint)`` of a one-epoch uniform search that kept no initial weights."""
    corpus, space = corpus_and_space
    out = tmp_path_factory.mktemp("unkept") / "run"
    run_search(corpus, space, out, 1, method="uniform")
    return corpus, space, out / "checkpoints" / "last.ckpt"


def tiny_net():
    torch.manual_seed(0)
    return SearchModule(TINY_SPACE, vocab=VOCAB, method="uniform").net


def test_a_path_runs_with_its_chosen_candidates_parameters_and_every_fixed_layers():
    net = tiny_net()
    names = {name for name, _ in net.path_parameters({"a": 1, "b": 0})}
    assert any(n.startswith("layers.0.candidates.1.") for n in names)
    assert not any(n.startswith(("layers.0.candidates.0.", "layers.2.candidates.1.")) for n in names)
    assert any(n.startswith("layers.1.") for n in names)  # the fixed stride-3 TDNN
    assert any(n.startswith("input.") for n in names) and any(n.startswith("head.") for n in names)
    skipped = {name for name, _ in net.path_parameters({"a": 2, "b": 0})}  # skip has none
    assert skipped == {n for n in names if not n.startswith("layers.0.")}


def test_the_cosine_is_one_unmoved_or_rescaled_minus_one_reversed_and_blind_to_other_paths():
    net = tiny_net()
    initial = initial_matrices(net)
    assert all(t.dim() >= 2 for t in initial.values())
    path = {"a": 0, "b": 1}
    assert init_cosine(net, initial, path) == pytest.approx(1.0)
    with torch.no_grad():
        for _, p in net.path_parameters(path):
            p.mul_(3.0)  # the angle ignores the norm
    assert init_cosine(net, initial, path) == pytest.approx(1.0)
    with torch.no_grad():
        for _, p in net.path_parameters(path):
            p.neg_()
        for p in net.layers[0].candidates[1].parameters():  # another path's
            p.add_(5.0)
    assert init_cosine(net, initial, path) == pytest.approx(-1.0)
    assert init_cosine(net, initial, {"a": 1, "b": 1}) > -1.0 + 1e-3  # that one moved elsewhere


def test_the_cosine_of_half_the_weights_turned_a_right_angle():
    """Two matrices of equal norm, one kept and one replaced by a vector orthogonal to its start:
    cos = |w1|^2 / (sqrt(2) |w1| * sqrt(2) |w1|) = 1/2."""
    net = SearchModule(
        {**TINY_SPACE, "layers": [{"name": "a", "choice": ["tdnn-k3-d1", "skip"]}]},
        vocab=VOCAB,
        method="uniform",
    ).net
    matrices = [p for _, p in net.path_parameters({"a": 0}) if p.dim() >= 2]
    with torch.no_grad():
        for p in matrices:
            p.zero_()
        matrices[0].view(-1)[0] = 1.0
        matrices[1].view(-1)[0] = 1.0
    initial = initial_matrices(net)
    with torch.no_grad():
        matrices[1].view(-1)[0] = 0.0
        matrices[1].view(-1)[1] = 1.0
    assert init_cosine(net, initial, {"a": 0}) == pytest.approx(0.5)


def test_a_search_keeps_its_initial_weights_through_a_resume_and_the_scorer_reads_the_angle(
    tmp_path, corpus_and_space, unkept
):
    from supernet.select.score import SupernetScorer

    corpus, space = corpus_and_space
    keep = ["--model.keep_initial_weights", "true"]
    first = run_search(corpus, space, tmp_path / "run", 1, method="uniform", extra=keep)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    resumed = run_search(
        corpus, space, tmp_path / "run", 2, method="uniform", extra=[*keep, "--ckpt_path", str(ckpt)]
    )
    assert int(resumed["state_dict"]["search_step"]) > int(first["state_dict"]["search_step"])
    for name, start in first["initial_weights"].items():  # the resume kept the first run's start
        assert torch.equal(resumed["initial_weights"][name], start), name
    module = SearchModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert set(module.initial_weights) == {n for n, p in module.net.named_parameters() if p.dim() >= 2}

    scorer = SupernetScorer(ckpt, corpus, batches=1, metric="loss", device="cpu", weights="trained")
    measures = scorer.measure({"a": 0, "b": 0})
    assert 0.0 < measures["init_cosine"] < 1.0  # trained: turned away from the start, not reversed

    assert "initial_weights" not in torch.load(unkept[2], map_location="cpu", weights_only=False)
    plain_scorer = SupernetScorer(unkept[2], corpus, batches=1, device="cpu", weights="trained")
    assert "init_cosine" not in plain_scorer.measure({"a": 0, "b": 0})


def test_a_resume_from_a_search_that_kept_no_initial_weights_cannot_keep_them(tmp_path, unkept):
    from supernet.errors import UserError

    corpus, space, ckpt = unkept
    with pytest.raises(UserError, match="model.keep_initial_weights: this search resumes at step 1 from"):
        run_search(corpus, space, tmp_path / "resumed", 2, method="uniform",
                   extra=["--model.keep_initial_weights", "true", "--ckpt_path", str(ckpt)])  # fmt: skip


def test_a_study_that_ranks_by_the_angle_must_keep_the_initial_weights():
    from supernet.study.config import StudyConfigError, load_config

    study = load_config("tiny")
    raw = {k: v for k, v in study.items() if k != "name"}
    with pytest.raises(StudyConfigError, match=r"ranking\.metric.*keep_initial_weights: true"):
        load_config({**raw, "ranking": {"batches": 1, "metric": "init_cosine"}})
    kept = {**raw["search"], "options": {**raw["search"]["options"], "model.keep_initial_weights": True}}
    assert load_config({**raw, "search": kept, "ranking": {"batches": 1, "metric": "init_cosine"}})
    select = {"methods": raw["search"]["methods"], "metric": "init_cosine"}
    with pytest.raises(StudyConfigError, match=r"select\.metric.*keep_initial_weights: true"):
        load_config({**raw, "select": select})
    assert load_config({**raw, "search": kept, "select": select})["select"]["metric"] == "init_cosine"


def test_the_scorer_refuses_the_angle_of_a_search_that_kept_no_initial_weights(tmp_path, capsys, unkept):
    from supernet.errors import UserError
    from supernet.select.score import SupernetScorer

    corpus, _, ckpt = unkept
    with pytest.raises(UserError, match="did not keep: search with --model.keep_initial_weights true"):
        SupernetScorer(ckpt, corpus, metric="init_cosine", device="cpu")

    from supernet.commands.cli import main as cli_main

    argv = ["select", str(ckpt), "--data", str(corpus), "--strategy", "random", "--target", "params",
            "--budget", "1e9", "--evaluations", "2", "--metric", "init_cosine", "--out", str(tmp_path / "sel")]  # fmt: skip
    assert cli_main(argv) != 0
    assert (
        "--metric init_cosine (the ABS angle) needs the search's initial weights" in capsys.readouterr().err
    )
    assert not (
        tmp_path / "sel"
    ).exists()  # refused before the folder was claimed: a rerun needs no --overwrite
