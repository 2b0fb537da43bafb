"""The search end to end on a tiny corpus: files written, extract, same seed, resume."""

import json

import pytest
import torch
import yaml

from supernet.archspec import ArchSpec, ArchSpecError
from supernet.commands.search import main as search_main
from supernet.search.extract import extract
from supernet.space import SearchSpace

TINY_SPACE = {
    "name": "tiny",
    "features": "fbank",
    "feature_dim": 80,
    "dim": 32,
    "input": "linear",
    "layers": [
        {"name": "a", "choice": ["tdnn-k3-d1", "tdnn-k5-d2", "skip"]},
        "tdnn-k3-d1-s3",
        {"name": "b", "choice": ["tdnn-k3-d1", "tdnn-k3-d2"]},
    ],
    "head": "linear",
    "dropout": 0.0,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from supernet.data.corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"), langs=("en",), minutes=0.6, seed=3, workers=1)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return path


def run_search(corpus, space_file, out, epochs, method="st", extra=()):
    argv = [
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--model.space",
        str(space_file),
        "--model.method",
        method,
        "--trainer.max_epochs",
        str(epochs),
        "--model.warmup_epochs",
        "1",
        "--logger",
        "csv",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--data.num_workers",
        "0",
        "--data.max_frames",
        "6000",
        "--model.arch_lr",
        "0.05",
        "--trainer.limit_val_batches",
        "1",
        *extra,
    ]
    assert search_main(argv) == 0
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def alphas_of(ckpt):
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("arch.alphas.")}


@pytest.mark.parametrize(
    "layer,message",
    [
        ({"choice": ["tdnn-k3-d1"]}, "at least two"),
        ({"choice": ["tdnn-k3-d1", "tdnn-q3"]}, "layers[0].choice[1]"),
        ({"pick": ["tdnn-k3-d1", "skip"]}, "layers[0]"),
        ({"choice": ["skip", "zero"], "nme": "x"}, "unknown key 'nme'"),
    ],
)
def test_space_errors_name_the_layer(layer, message):
    bad = {**TINY_SPACE, "layers": [layer]}
    with pytest.raises(ArchSpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SearchSpace(bad, source="bad.yaml")


def test_space_derive_and_baseline_in_st_nas():
    space = SearchSpace.from_yaml("st_nas")
    assert space.num_paths == 4096
    tdnn_d = ArchSpec.from_yaml("tdnn_d")
    choices = space.index_of(tdnn_d)
    assert space.derive(choices).layers == tdnn_d.layers


def test_search_writes_arch_extract_agrees_and_same_seed_same_arch(corpus, space_file, tmp_path):
    first = run_search(corpus, space_file, tmp_path / "a", epochs=3)
    run = tmp_path / "a"
    summary = json.loads((run / "search.json").read_text())
    arch = ArchSpec.from_yaml(run / "arch.yaml")
    assert summary["steps"] > 0 and summary["choices"]["a"] in TINY_SPACE["layers"][0]["choice"]
    assert (run / "alpha_history.jsonl").read_text().count("\n") == 3
    assert list((run / "alphas").glob("*.png"))
    # the alphas moved away from uniform during the search epochs
    assert any(v.abs().max() > 1e-3 for v in alphas_of(first).values())
    extracted, _, _ = extract(run / "checkpoints" / "last.ckpt")
    assert extracted.layers == arch.layers
    picked, tiny = summary["picked"], SearchSpace(TINY_SPACE)  # printed as "architecture:"
    assert set(picked) == set(summary["choices"])  # and it is arch.yaml, edge by edge:
    assert tiny.derive({e: tiny.edges[e].index(label) for e, label in picked.items()}).layers == arch.layers

    second = run_search(corpus, space_file, tmp_path / "b", epochs=3)
    for k, v in alphas_of(first).items():
        assert torch.equal(v, alphas_of(second)[k]), k


@pytest.mark.parametrize(
    "method, extra",
    # st samples from the alphas one update old, which the checkpoint keeps; a large arch lr makes
    # a path drawn from other alphas show (the test fails if the checkpoint loses them)
    [("darts", ()), ("st", ("--model.method_options", "{sample_ahead: true}", "--model.arch_lr", "3"))],
    ids=["darts", "st-sample-ahead"],
)
def test_resume_equals_uninterrupted(corpus, space_file, tmp_path, method, extra):
    straight = run_search(corpus, space_file, tmp_path / "straight", epochs=3, method=method, extra=extra)
    run_search(corpus, space_file, tmp_path / "cut", epochs=2, method=method, extra=extra)
    resumed = run_search(
        corpus,
        space_file,
        tmp_path / "cut",
        epochs=3,
        method=method,
        extra=(*extra, "--ckpt_path", str(tmp_path / "cut" / "checkpoints" / "last.ckpt")),
    )
    assert int(resumed["state_dict"]["search_step"]) == int(straight["state_dict"]["search_step"])
    for k, v in alphas_of(straight).items():
        torch.testing.assert_close(resumed["state_dict"][k], v, rtol=0, atol=1e-6)
