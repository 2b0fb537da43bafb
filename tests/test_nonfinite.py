"""A run that diverges stops with a NonFiniteError naming what diverged, and writes no result."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import pytorch_lightning as pl
import torch
import yaml

from supernet.asr_module import ASRModule
from supernet.data.tokenizer import CharTokenizer
from supernet.divergence import FiniteWatch, nonfinite_tensors
from supernet.errors import NonFiniteError
from supernet.latency import LatencyTable, LatencyTableError, make_settings
from supernet.search.arch_params import ArchParams, NotADistributionError
from supernet.search.module import SearchModule

TINY_ARCH = {
    "name": "tiny",
    "features": "fbank",
    "feature_dim": 20,
    "dim": 16,
    "input": "linear",
    "layers": ["tdnn-k3-d1", "tdnn-k3-d1-s2"],
    "head": "linear",
    "dropout": 0.0,
}
TINY_SPACE = {
    "name": "tiny",
    "features": "fbank",
    "feature_dim": 20,
    "dim": 16,
    "input": "linear",
    "layers": [
        {"name": "a", "choice": ["tdnn-k3-d1", "skip"]},
        "tdnn-k3-d1-s2",
        {"name": "b", "choice": ["tdnn-k3-d1", "tdnn-k3-d2"]},
    ],
    "head": "linear",
    "dropout": 0.0,
}
VOCAB = CharTokenizer.build(["abc"]).vocab  # ids: a=2, b=3, c=4


def token_batch(seqs=((2, 3, 4, 2), (4, 3), (2, 2, 4), (3,)), dim=20) -> dict:
    """Each token is 6 frames of its own pattern, 10 frames apart (learnable in a few steps)."""
    g = torch.Generator().manual_seed(0)
    patterns = 2 * torch.randn(5, dim, generator=g)
    width = max(map(len, seqs))
    features = 0.1 * torch.randn(len(seqs), 10 * width, dim, generator=g)
    targets = torch.zeros(len(seqs), width, dtype=torch.long)
    for b, seq in enumerate(seqs):
        for i, token in enumerate(seq):
            features[b, 10 * i + 2 : 10 * i + 8] += patterns[token]
            targets[b, i] = token
    lengths = torch.tensor([10 * len(seq) for seq in seqs])
    texts = ["".join("abc"[t - 2] for t in seq) for seq in seqs]
    return {
        "features": features,
        "feature_lengths": lengths,
        "targets": targets,
        "target_lengths": lengths // 10,
        "texts": texts,
    }


def loader(batches: int, search: bool = False) -> torch.utils.data.DataLoader:
    batch = token_batch()
    item = {"train": batch, "arch": batch} if search else batch
    return torch.utils.data.DataLoader([item] * batches, batch_size=None)


def trainer(epochs: int = 2, callbacks=(), log_every_n_steps: int = 50, accelerator="cpu") -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        log_every_n_steps=log_every_n_steps,
        logger=False,
        callbacks=list(callbacks),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )


def search_module(method: str = "darts", **kwargs) -> SearchModule:
    torch.manual_seed(0)
    return SearchModule(TINY_SPACE, vocab=VOCAB, method=method, warmup_steps=1, warmup_epochs=0, **kwargs)


class PoisonAlpha(pl.Callback):
    """Writes NaN into one alpha at the start of an epoch (before the module's own hook)."""

    def __init__(self, edge: str, epoch: int):
        self.edge, self.epoch = edge, epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                pl_module.arch.alphas[self.edge][0] = float("nan")


# --- retrain --------------------------------------------------------------------------------------
def test_retrain_with_a_huge_learning_rate_stops_within_the_epoch_naming_the_loss():
    torch.manual_seed(0)
    module = ASRModule(TINY_ARCH, vocab=VOCAB, lr=1e3, warmup_steps=1)
    fit = trainer(epochs=3)
    with pytest.raises(NonFiniteError) as err:
        fit.fit(module, train_dataloaders=loader(8))
    message = str(err.value)
    assert message.startswith("retrain: the training loss became NaN at step ")
    assert "(epoch 0): the weights diverged; lower --model.lr (now 1000.0)" in message
    assert "--trainer.gradient_clip_val" in message
    assert fit.current_epoch == 0  # found within the first epoch, not after the run


def test_validation_refuses_a_model_with_nan_weights_naming_the_tensor():
    """A NaN model must not be scored: its WER of 1.0 would look like an ordinary bad result."""
    module = ASRModule(TINY_ARCH, vocab=VOCAB)
    with torch.no_grad():
        module.net.layers[1].conv.weight[0, 0, 0] = float("inf")
    names = [n for n, _ in module.net.named_parameters(prefix="net")]
    bad = names.index("net.layers.1.conv.weight")
    with pytest.raises(NonFiniteError, match=r"weights: 1 tensor holds NaN/inf before validation .*first net\.layers\.1\.conv\.weight"):  # fmt: skip
        pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).validate(
            module, dataloaders=loader(1), verbose=False
        )
    assert bad >= 0


def test_the_watch_is_read_only_at_log_steps_and_epoch_ends(monkeypatch):
    """The host reads the recorded values where it reads the logs anyway (every
    ``log_every_n_steps``) and at each epoch's last batch: never at the other steps, which on a GPU
    must not wait for the device."""
    reads = []
    real = FiniteWatch.first_nonfinite

    def counted(watch):
        reads.append((len(watch), module.global_step))
        return real(watch)

    monkeypatch.setattr(FiniteWatch, "first_nonfinite", counted)
    torch.manual_seed(0)
    module = ASRModule(TINY_ARCH, vocab=VOCAB, warmup_steps=1)
    trainer(epochs=1, log_every_n_steps=4).fit(module, train_dataloaders=loader(10))
    # (records read, optimizer steps done): log steps after batches 4 and 8, the last batch (10),
    # the epoch's end and the training's end (nothing new to read by then)
    assert reads == [(4, 4), (4, 8), (2, 10), (0, 10), (0, 10)]


def test_retrain_command_writes_no_metrics_when_the_weights_diverge(tmp_path, tiny_corpus):
    from supernet.commands.retrain import main as retrain_main

    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump({**TINY_ARCH, "feature_dim": 80}))
    run = tmp_path / "run"
    argv = [
        "--arch", str(arch), "--data", str(tiny_corpus), "--out", str(run), "--logger", "csv",
        "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--data.num_workers", "0", "--data.max_frames", "6000",
        "--model.warmup_steps", "1", "--model.lr", "1e3",
    ]  # fmt: skip
    with pytest.raises(NonFiniteError, match=r"retrain: .*--model\.lr \(now 1000\.0\)"):
        retrain_main(argv)
    assert not (run / "metrics.json").exists()


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from supernet.data.corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"), langs=("en",), minutes=0.6, seed=3, workers=1)


# --- search ---------------------------------------------------------------------------------------
def test_darts_search_with_an_overflowing_arch_lr_names_the_alpha():
    """Adam moves each alpha by about arch_lr a step: at 1e38 they overflow (Adam's second moment of
    the weight decay's gradient first, which makes them NaN)."""
    module = search_module("darts", arch_lr=1e38)
    with pytest.raises(NonFiniteError) as err:
        trainer(epochs=2).fit(module, train_dataloaders=loader(8, search=True))
    message = str(err.value)
    assert message.startswith("search: alpha 'a' became ") or message.startswith("search: alpha 'b' became ")
    assert "lower --model.arch_lr (now 1e+38)" in message
    assert "--model.lr" not in message


@pytest.mark.parametrize("method", ["darts", "gumbel", "st"])
def test_nan_put_into_the_alphas_is_blamed_on_the_alphas_not_the_weights(method):
    """darts and gumbel mix with the NaN probabilities (the losses go NaN too), st cannot sample:
    either way the first non-finite value is the alpha, and the message names it."""
    module = search_module(method)
    with pytest.raises(NonFiniteError) as err:
        trainer(epochs=3, callbacks=[PoisonAlpha("b", epoch=1)]).fit(
            module, train_dataloaders=loader(4, search=True)
        )
    message = str(err.value)
    assert message.startswith("search: alpha 'b' became NaN at step 4 (epoch 1): the alphas diverged; ")
    assert "--model.arch_lr (now 0.003)" in message and "--model.lr" not in message
    if method == "st":  # found by the sampler, which asked what diverged
        assert isinstance(err.value.__context__, NotADistributionError)


def test_st_sampler_blames_the_weights_when_the_weights_diverged():
    """NaN weights make the loss (and through it the alphas' gradient) NaN; the sampler then meets
    NaN alphas, but the message names the weights, which diverged first."""
    module = search_module("st", lr=1e3)
    with pytest.raises(NonFiniteError) as err:
        trainer(epochs=1).fit(module, train_dataloaders=loader(30, search=True))
    message = str(err.value)
    assert isinstance(err.value.__context__, NotADistributionError)  # the sampler found it
    assert "loss became NaN" in message or "gradient of alpha" in message, message
    assert "the weights diverged; lower --model.lr (now 1000.0)" in message
    assert "arch_lr" not in message


def test_a_finished_search_checks_the_alphas_before_its_result_is_read():
    """NaN put into the alphas after the last step is still found before the command reads them."""

    class PoisonAtTheEnd(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.is_last_batch:
                with torch.no_grad():
                    pl_module.arch.alphas["a"][1] = float("nan")

    with pytest.raises(NonFiniteError, match=r"search: alpha 'a' holds NaN/inf after step 3 \(epoch 0\)"):
        trainer(epochs=1, callbacks=[PoisonAtTheEnd()]).fit(
            search_module("darts"), train_dataloaders=loader(3, search=True)
        )


# --- alphas that never moved ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """Checkpoints of a darts search with arch_lr 0 and of one with the default arch_lr."""
    tmp = tmp_path_factory.mktemp("searched")
    out = {}
    for name, arch_lr in (("still", 0.0), ("moved", 3e-3)):
        module = search_module("darts", arch_lr=arch_lr)
        fit = trainer(epochs=1)
        fit.fit(module, train_dataloaders=loader(3, search=True))
        fit.save_checkpoint(tmp / f"{name}.ckpt")
        out[name] = (module, tmp / f"{name}.ckpt")
    return out


def test_alphas_moved_is_false_after_an_arch_lr_0_search_and_true_after_a_search(searched):
    assert searched["still"][0].alphas_moved() is False
    assert searched["moved"][0].alphas_moved() is True


def test_moved_compares_with_the_start_made_again_from_the_seed():
    arch = ArchParams({"e": list("abc")}, seed=5, init_std=0.5)
    assert not arch.moved()  # a non-zero start that has not moved
    again = ArchParams({"e": list("abc")}, seed=5, init_std=0.5)
    again.load_state_dict(arch.state_dict())
    assert not again.moved()
    with torch.no_grad():
        arch.alphas["e"][2] += 1e-3
    assert arch.moved() and not arch.moved(atol=1e-2)


def extract_args(ckpt, output) -> argparse.Namespace:
    return argparse.Namespace(ckpt=str(ckpt), output=str(output), name=None, pick=None)


def test_extract_warns_when_the_alphas_never_moved(searched, tmp_path, capsys):
    from supernet.commands.extract import run

    assert run(extract_args(searched["still"][1], tmp_path / "still.yaml")) == 0
    assert "the alphas never moved from their start" in capsys.readouterr().err
    assert (tmp_path / "still.yaml").is_file()
    assert run(extract_args(searched["moved"][1], tmp_path / "moved.yaml")) == 0
    assert "never moved" not in capsys.readouterr().err


def test_extract_refuses_a_checkpoint_with_a_nan_alpha_and_writes_nothing(searched, tmp_path):
    from supernet.commands.extract import run

    state = torch.load(searched["moved"][1], map_location="cpu", weights_only=False)
    state["state_dict"]["arch.alphas.b"][1] = float("nan")
    ckpt = tmp_path / "diverged.ckpt"
    torch.save(state, ckpt)
    output = tmp_path / "arch.yaml"
    with pytest.raises(NonFiniteError, match=rf"{ckpt}: alpha 'b' holds NaN/inf \(\[.*nan\]\)"):
        run(extract_args(ckpt, output))
    assert not output.exists()


# --- latency tables ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field,value",
    [("ms", math.nan), ("ms", math.inf), ("ms", -0.5), ("params", -3), ("bytes", math.nan), ("flops", -1)],
)
def test_a_latency_table_with_a_nan_infinite_or_negative_entry_is_refused_naming_the_key(
    tmp_path, field, value
):
    good = {"ms": 1.0, "params": 10, "bytes": 40}
    entries = {"linear|20>16|T400": dict(good), "tdnn-k3-d1|16>16|T400": dict(good)}
    path = tmp_path / "lut.json"
    LatencyTable(make_settings(), entries).save(path)
    data = json.loads(path.read_text())
    data["entries"]["tdnn-k3-d1|16>16|T400"][field] = value
    path.write_text(json.dumps(data))  # JSON lets NaN and Infinity through
    with pytest.raises(LatencyTableError, match=rf"{path}: entry 'tdnn-k3-d1\|16>16\|T400': '{field}' is"):
        LatencyTable.load(path)


def test_an_untimed_entry_still_loads(tmp_path):
    """``ms`` None is an op that was not timed (a streaming table's excluded op): not an error."""
    path = tmp_path / "lut.json"
    LatencyTable(make_settings(), {"k": {"ms": None, "params": 1, "bytes": 4}}).save(path)
    assert LatencyTable.load(path).entries["k"]["ms"] is None


# --- the pieces -----------------------------------------------------------------------------------
def test_the_watch_finds_the_first_nonfinite_value_in_recording_order():
    watch = FiniteWatch()
    watch.record("loss", torch.tensor(1.0), step=0, epoch=0)
    watch.record("alpha", torch.tensor([0.0, 1.0, 2.0, float("-inf")]), 0, 0, segments=[("x", 2), ("y", 2)])
    watch.record("loss", torch.tensor(float("nan")), step=1, epoch=0)
    found = watch.first_nonfinite()
    assert (found.kind, found.step, found.part, found.value_name) == ("alpha", 0, "y", "-inf")
    assert len(watch) == 0 and watch.first_nonfinite() is None


def test_nonfinite_tensors_names_each_tensor_with_a_nan_or_an_inf():
    """ "big" is finite though its norm overflows to inf: the exact check of suspects clears it."""
    named = [("ok", torch.ones(3)), ("nan", torch.tensor([1.0, math.nan])), ("big", torch.tensor([3e38, 3e38])),
             ("inf", torch.tensor([-math.inf])), ("steps", torch.tensor([3])),
             ("half", torch.tensor([1.0, math.inf], dtype=torch.bfloat16))]  # fmt: skip
    assert nonfinite_tensors(named) == ["nan", "inf", "half"]


# --- the GPU path stays free of host waits ---------------------------------------------------------
class SyncCounter(pl.Callback):
    """Counts the host waits for the device (``torch.cuda.set_sync_debug_mode``) inside the training
    steps (batch start to batch end, before the module's own batch-end check), by step and the
    place that raised them (``sites``; ``scripts/device/sync_sites.py`` prints them)."""

    def __init__(self):
        import collections

        self.sites = collections.Counter()
        self._catch = None

    @property
    def count(self) -> int:
        return sum(self.sites.values())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self._seen = self._catch.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        torch.cuda.set_sync_debug_mode(0)
        for w in self._seen:
            if "synchroniz" in str(w.message):
                self.sites[f"step {batch_idx}: {w.filename}:{w.lineno}"] += 1
        self._catch.__exit__(None, None, None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", [None, "darts", "st"])
def test_watching_for_divergence_adds_no_host_wait_to_a_gpu_step(method, monkeypatch):
    """The same steps with the watch and with recording switched off wait for the device equally
    often (st waits once per step for its alphas, by design; darts and retrain never)."""

    def run() -> int:
        module = (
            ASRModule(TINY_ARCH, vocab=VOCAB, warmup_steps=1) if method is None else search_module(method)
        )
        counter = SyncCounter()
        fit = trainer(epochs=1, callbacks=[counter], log_every_n_steps=100, accelerator="gpu")
        fit.fit(module, train_dataloaders=loader(12, search=method is not None))
        return counter.count

    run()  # the process's first steps wait once for lazy set-ups (kernels, allocator): not counted
    watched = run()
    monkeypatch.setattr(FiniteWatch, "record", lambda *args, **kwargs: None)
    assert watched == run()
