"""scripts/head_refit.py: re-fitting the shared head to one path lowers that path's loss on the
batches it was fitted on, the replayed head's temperature is the head's weights scaled, and the
supernet is left as it was."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import head_refit  # noqa: E402


def test_a_refitted_head_fits_its_batches_better_and_the_supernet_keeps_its_own(tmp_path):
    from supernet.data.corpus import build_corpus
    from supernet.select.score import SupernetScorer
    from tests.test_search import TINY_SPACE, run_search

    corpus = build_corpus(tmp_path / "corpus", langs=("en",), minutes=0.6, seed=3, workers=1)
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    run_search(corpus, space, tmp_path / "run", 1, method="uniform")
    scorer = SupernetScorer(tmp_path / "run" / "checkpoints" / "last.ckpt", corpus, batches=1, split="dev",
                            arch_fraction=0.0, metric="loss", weights="trained", device="cpu")  # fmt: skip
    net, path = scorer.module.net, {"a": 0, "b": 1}
    scorer.measure(path)  # the path fixed, its BatchNorm statistics re-estimated
    train = scorer.batches_of("train")

    def train_loss() -> float:
        with torch.no_grad():
            return sum(float(scorer.module.ctc_loss(b, net)[0]) for b in train)

    before, head = train_loss(), {k: v.clone() for k, v in net.head.state_dict().items()}
    inputs = head_refit.head_inputs(scorer, train)
    assert len(train) == 1 and head_refit.replayed_loss(scorer, train, inputs) == pytest.approx(
        before, rel=1e-5
    )
    head_refit.fit_head(scorer, train, inputs, steps=30, lr=3e-2)
    assert train_loss() < before
    net.head.load_state_dict(head)

    warm = head_refit.replayed_loss(scorer, train, inputs, temperature=2.0)
    with torch.no_grad():
        for p in net.head.parameters():
            p.div_(2.0)  # a linear head: weights and bias halved halve the logits
    assert head_refit.replayed_loss(scorer, train, inputs) == pytest.approx(warm, rel=1e-5)
    net.head.load_state_dict(head)

    scores, rms = head_refit.scores_of(scorer, path, steps=5, lr=3e-2)
    assert set(scores) == {*head_refit.MEASURES, "fitted_temperature", "fitted_gain"}
    assert scores["fitted_temperature"] in head_refit.GRID and scores["fitted_gain"] in head_refit.GRID
    fitted = head_refit.replayed_loss(scorer, train, inputs, temperature=scores["fitted_temperature"])
    assert fitted <= head_refit.replayed_loss(scorer, train, inputs)  # the grid holds 1.0
    assert len(rms) == len(net.layers) and all(v > 0 for v in rms)
    for k, v in net.head.state_dict().items():  # every variant put the supernet's head back
        assert torch.equal(v, head[k]), k
    measured = scorer.measure
    scorer.measure = lambda *a, **k: {**measured(*a, **k), "loss": measured(*a, **k)["loss"] + 0.5}
    with pytest.raises(RuntimeError, match="is not the measured"):  # a replay that drifted is refused
        head_refit.scores_of(scorer, path, steps=1, lr=3e-2)
