"""CTC training of a fixed net: schedule, a loss that falls, `supernet retrain` and `evaluate` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from losses import ctc_loss
from supernet.archspec import ArchSpec
from supernet.asr_module import ASRModule, lr_factor
from supernet.commands.cli import main as cli_main
from supernet.commands.retrain import expand_shortcuts
from supernet.data.tokenizer import CharTokenizer
from supernet.decoding import greedy_ctc_ids
from supernet.derived import DerivedNet

TINY_ARCH = {
    "name": "tiny",
    "features": "fbank",
    "feature_dim": 20,
    "dim": 32,
    "input": "linear",
    "layers": ["tdnn-k3-d1", "tdnn-k3-d1-s2", "tdnn-k3-d1"],
    "head": "linear",
    "dropout": 0.0,
}
TONES = {"do": 300.0, "mi": 650.0, "so": 1100.0, "ti": 1900.0}  # a "word" is 0.25 s of its tone


def test_lr_schedule_known_values():
    assert lr_factor(0, warmup_steps=4, total_steps=14, schedule="cosine") == pytest.approx(0.25)
    assert lr_factor(3, 4, 14, "cosine") == pytest.approx(1.0)
    assert lr_factor(8, 4, 14, "cosine") == pytest.approx(0.5)  # half-way through the decay
    assert lr_factor(13, 4, 14, "cosine", min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(15, 4, 14, "noam") == pytest.approx(0.5)  # sqrt(4 / 16)
    assert lr_factor(99, 4, 14, "constant") == 1.0


def test_ctc_loss_known_answer():
    # One frame, target "1": loss = -log p(1) / target length 1.
    probs = torch.tensor([[[0.2, 0.5, 0.3]]])
    loss = ctc_loss(probs.log(), torch.tensor([1]), torch.tensor([[1]]), torch.tensor([1]))
    assert loss.item() == pytest.approx(-math.log(0.5), rel=1e-5)
    # bf16 input is computed in float32 and gives the same answer to bf16 precision.
    loss16 = ctc_loss(probs.log().bfloat16(), torch.tensor([1]), torch.tensor([[1]]), torch.tensor([1]))
    assert loss16.dtype == torch.float32 and loss16.item() == pytest.approx(-math.log(0.5), rel=1e-2)


def test_host_lengths_match_the_network_and_give_the_same_loss():
    """CTC with lengths computed on the host (no device read) == CTC with the network's own."""
    spec = ArchSpec.from_dict(
        {
            "name": "s",
            "features": "fbank",
            "feature_dim": 80,
            "input": "conv2d4x",
            "layers": ["tdnn-k3-d1-s3", "skip"],
            "head": "linear",
            "dim": 16,
        }
    )
    torch.manual_seed(0)
    net = DerivedNet(spec, 7).double()
    assert net.total_stride == 12
    feature_lengths = [97, 60, 13, 12, 1]
    features = torch.randn(5, 97, spec.feature_dim, dtype=torch.float64)
    log_probs, out_lengths = net(features, torch.tensor(feature_lengths))
    host = net.host_out_lengths(feature_lengths)
    assert host.tolist() == out_lengths.tolist() == [9, 5, 2, 1, 1]
    targets, target_lengths = torch.randint(1, 7, (5, 3)), torch.tensor([3, 2, 1, 1, 1])
    device_loss = ctc_loss(log_probs, out_lengths, targets, target_lengths)
    host_loss = ctc_loss(log_probs, out_lengths, targets, target_lengths, host_lengths=(host, target_lengths))
    assert torch.equal(device_loss, host_loss)
    wrong = ctc_loss(log_probs, out_lengths, targets, target_lengths, host_lengths=(host - 1, target_lengths))
    assert not torch.equal(device_loss, wrong)  # the host lengths are really the ones used


def test_ctc_reduction_is_pytorchs_mean_with_unequal_and_empty_targets():
    """Our per-utterance division (by the device target lengths) == F.ctc_loss(reduction="mean")."""
    torch.manual_seed(0)
    log_probs = torch.randn(4, 20, 6, dtype=torch.float64).log_softmax(-1)
    out_lengths, target_lengths = (
        torch.tensor([20, 14, 9, 5]),
        torch.tensor([7, 3, 0, 6]),
    )  # the last: infeasible
    targets = torch.randint(1, 6, (4, 7))
    expected = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, out_lengths, target_lengths, reduction="mean", zero_infinity=True
    )
    ours = ctc_loss(log_probs, out_lengths, targets, target_lengths)
    host = ctc_loss(
        log_probs, out_lengths, targets, target_lengths, host_lengths=(out_lengths, target_lengths)
    )
    torch.testing.assert_close(ours.double(), expected)
    torch.testing.assert_close(host.double(), expected)


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    ids = torch.tensor([[2, 2, 0, 2, 3, 3, 0, 4], [3, 0, 0, 3, 3, 2, 2, 2]])
    log_probs = torch.nn.functional.one_hot(ids, 5).float().log()
    assert greedy_ctc_ids(log_probs, torch.tensor([8, 5])) == [[2, 2, 3, 4], [3, 3]]


def token_batch(seqs: list[list[int]], dim: int = 20) -> dict:
    """Features in which each token is 6 frames of its own pattern, 10 frames apart: learnable fast."""
    g = torch.Generator().manual_seed(0)
    patterns = 2 * torch.randn(5, dim, generator=g)
    features = 0.1 * torch.randn(len(seqs), 10 * max(map(len, seqs)), dim, generator=g)
    targets = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    for b, seq in enumerate(seqs):
        for i, token in enumerate(seq):
            features[b, 10 * i + 2 : 10 * i + 8] += patterns[token]
        targets[b, : len(seq)] = torch.tensor(seq)
    lengths = torch.tensor([10 * len(seq) for seq in seqs])
    return {
        "features": features,
        "feature_lengths": lengths,
        "targets": targets,
        "target_lengths": lengths // 10,
    }


def test_tiny_training_loss_falls():
    torch.manual_seed(0)
    tokenizer = CharTokenizer.build(["abc"])  # ids: a=2, b=3, c=4
    module = ASRModule(TINY_ARCH, vocab=tokenizer.vocab)
    batch = token_batch([[2, 3, 4, 2], [4, 3], [2, 2, 4], [3]])
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss, _, _ = module.ctc_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses
    module.eval()
    with torch.no_grad():
        log_probs, lengths = module(batch["features"], batch["feature_lengths"])
    assert module.decode(log_probs, lengths) == ["abca", "cb", "aac", "b"]


def test_shortcuts_expand():
    argv = ["--arch", "a.yaml", "--data=corpus", "--out", "run", "--data.max_frames", "5", "--trainer.max_epochs=2"]  # fmt: skip
    assert expand_shortcuts(argv) == [
        "--model.arch", "a.yaml", "--data.data=corpus", "--trainer.default_root_dir", "run",
        "--data.max_frames", "5", "--trainer.max_epochs=2",
    ]  # fmt: skip


def write_tone_corpus(root, n_train=16, n_other=4):
    """Utterances of 2-3 tone "words" (each word one sine frequency), as a corpus folder."""
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    words, sr = list(TONES), 16000
    t = np.arange(int(0.25 * sr)) / sr

    def utterance(split, i):
        text = " ".join(rng.choice(words, size=rng.integers(2, 4)))
        gap = np.zeros(int(0.05 * sr))
        parts = [gap]
        for word in text.split():
            parts += [0.5 * np.sin(2 * np.pi * TONES[word] * t), gap]
        audio = np.concatenate(parts).astype(np.float32)
        name = f"audio/{split}_{i}.flac"
        sf.write(root / name, audio, sr)
        return {"audio_filepath": name, "duration": len(audio) / sr, "text": text, "id": f"{split}_{i}"}

    for split, n in (("train", n_train), ("dev", n_other), ("test", n_other)):
        rows = [utterance(split, i) for i in range(n)]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retrain")
    corpus = write_tone_corpus(tmp / "corpus")
    arch = tmp / "tiny.yaml"
    arch.write_text(yaml.safe_dump(TINY_ARCH))
    run = tmp / "run"
    argv = [
        "retrain", "--arch", str(arch), "--data", str(corpus), "--out", str(run), "--logger", "csv",
        "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--data.num_workers", "0", "--data.max_frames", "400", "--model.warmup_steps", "2",
    ]  # fmt: skip
    assert cli_main(argv) == 0
    return corpus, run


def test_retrain_writes_metrics_arch_and_tokenizer(trained_run):
    corpus, run = trained_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["arch"] == "tiny" and metrics["epochs"] == 2
    assert set(metrics["wer"]) == set(metrics["cer"]) == {"test"}
    for value in (metrics["wer"]["test"], metrics["cer"]["test"], metrics["dev_wer"], metrics["dev_cer"]):
        assert isinstance(value, float) and value >= 0
    assert metrics["train_seconds"] > 0
    assert yaml.safe_load((run / "arch.yaml").read_text()) == TINY_ARCH
    tokenizer = CharTokenizer.load(run / "tokenizer.json")
    assert set(tokenizer.chars) == set("domisti ")
    # The module rebuilt from the checkpoint alone has the same size as the model trained.
    assert (run / "checkpoints" / "last.ckpt").is_file()
    module = ASRModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    assert sum(p.numel() for p in module.net.parameters()) == metrics["params"]
    assert module.tokenizer.vocab == tokenizer.vocab and module.spec.to_dict() == TINY_ARCH


def test_evaluate_report(trained_run, tmp_path):
    corpus, run = trained_run
    report_path = tmp_path / "report.json"
    argv = ["evaluate", str(run / "checkpoints" / "last.ckpt"), "--data", str(corpus), "-o", str(report_path)]
    assert cli_main([*argv, "--seconds", "1", "--warmup", "1", "--repeats", "2", "--device", "cpu"]) == 0
    report = json.loads(report_path.read_text())
    test = report["test"]["test"]
    assert test["utterances"] == 4
    assert test["hits"] + test["substitutions"] + test["deletions"] == test["reference_words"] > 0
    assert test["wer"] == pytest.approx(
        (test["substitutions"] + test["deletions"] + test["insertions"]) / test["reference_words"]
    )
    assert report["params"] > 0 and report["weights_bytes"] > 4 * report["params"] * 0.9
    assert report["memory"]["peak_rss_mb"] > 0
    cpu = report["latency"]["cpu"]
    assert cpu["median_ms"] > 0 and cpu["rtf"] == pytest.approx(cpu["median_ms"] / 1000 / 1.0)
    assert report["total_stride"] == 2 and report["streamable"] is True


def test_move_batch_moves_every_tensor_and_leaves_plain_lists_alone():
    """The module's batch transfer (a fast path beside Lightning's): tensors in dicts, lists and
    named tuples move; lists of ints or strings (host lengths, texts) come back as the same object."""
    from collections import namedtuple

    from supernet.asr_module import move_batch

    Pair = namedtuple("Pair", "a b")
    texts, lengths = ["a b", "c"], [3, 1]
    batch = {
        "train": {"features": torch.zeros(2, 3), "texts": texts, "host_lengths": {"features": lengths}},
        "list": [torch.ones(1), "x"],
        "pair": Pair(torch.ones(2), 5),
    }
    moved = move_batch(batch, torch.device("meta"))
    assert moved["train"]["features"].device.type == "meta"
    assert moved["train"]["texts"] is texts and moved["train"]["host_lengths"]["features"] is lengths
    assert moved["list"][0].device.type == "meta" and moved["list"][1] == "x"
    assert isinstance(moved["pair"], Pair) and moved["pair"].a.device.type == "meta" and moved["pair"].b == 5


def test_train_loss_is_logged_at_the_steps_lightning_writes(tmp_path):
    """``train/loss`` is logged only at the steps whose logs Lightning writes (every
    ``log_every_n_steps``), and is then in the logger's file at every one of them."""
    import csv

    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    torch.manual_seed(0)
    tokenizer = CharTokenizer.build(["abc"])
    module = ASRModule(TINY_ARCH, vocab=tokenizer.vocab, warmup_steps=1)
    batch = token_batch([[2, 3, 4, 2], [4, 3], [2, 2, 4], [3]])
    logged_at = []
    real_log = module.log
    module.log = lambda name, *a, **k: (logged_at.append(module.global_step), real_log(name, *a, **k))
    trainer = pl.Trainer(
        max_steps=7,
        log_every_n_steps=3,
        logger=CSVLogger(tmp_path, name="run"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch] * 7, batch_size=None))
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    written = [int(r["step"]) for r in rows if r.get("train/loss")]
    assert logged_at == [2, 5]  # batches 3 and 6: every 3rd
    assert written == logged_at


def test_a_callback_monitoring_train_loss_sees_it_at_every_step(tmp_path):
    """Between the steps Lightning writes, ``train/loss`` is still logged when a callback monitors
    it: early stopping on it at the end of an epoch shorter than ``log_every_n_steps`` works."""
    import pytorch_lightning as pl

    torch.manual_seed(0)
    tokenizer = CharTokenizer.build(["abc"])
    module = ASRModule(TINY_ARCH, vocab=tokenizer.vocab, warmup_steps=1)
    batch = token_batch([[2, 3, 4, 2], [4, 3], [2, 2, 4], [3]])
    stop = pl.callbacks.EarlyStopping(monitor="train/loss", check_on_train_epoch_end=True, patience=100)
    trainer = pl.Trainer(
        max_epochs=2,
        log_every_n_steps=50,
        logger=False,
        callbacks=[stop],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch] * 3, batch_size=None))
    assert "train/loss" in trainer.callback_metrics and torch.isfinite(stop.best_score)


def test_evaluate_names_missing_test_audio_before_decoding(trained_run, tmp_path, capsys, monkeypatch):
    import shutil

    import supernet.commands.evaluate as evaluate_module

    corpus, run = trained_run
    broken = tmp_path / "corpus"
    shutil.copytree(corpus, broken)
    (broken / "audio" / "test_2.flac").unlink()
    monkeypatch.setattr(evaluate_module, "score", lambda *a, **k: pytest.fail("decoded before the check"))
    argv = ["evaluate", str(run / "checkpoints" / "last.ckpt"), "--data", str(broken), "--device", "cpu"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "test.jsonl:3" in err and "test_2.flac" in err


def test_retrain_runs_without_any_logger(trained_run, tmp_path):
    """--logger none: no learning-rate monitor either (Lightning's refuses a Trainer without a logger)."""
    corpus, run = trained_run
    argv = [
        "retrain", "--arch", str(run / "arch.yaml"), "--data", str(corpus), "--out", str(tmp_path / "run"),
        "--logger", "none", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", "--data.num_workers", "0", "--data.max_frames", "400",
    ]  # fmt: skip
    assert cli_main(argv) == 0
    assert (tmp_path / "run" / "metrics.json").is_file()
