"""A run folder belongs to one run; one seed option; user errors as one line (exit 2); results
that are not results (uniform, a search without its schedule) say so."""

from __future__ import annotations

import json

import pytest
import yaml

from supernet import run_folder
from supernet.commands.cli import main as cli_main
from supernet.errors import UserError

TINY_SPACE = {
    "name": "tiny",
    "features": "fbank",
    "feature_dim": 80,
    "dim": 16,
    "input": "linear",
    "layers": [{"name": "a", "choice": ["tdnn-k3-d1", "skip"]}, "tdnn-k3-d1-s3"],
    "head": "linear",
    "dropout": 0.1,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from supernet.data.corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"), langs=("en",), minutes=0.3, seed=5, workers=1)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return path


def search_argv(corpus, space_file, out, *extra):
    return [
        "search",
        "--data", str(corpus),
        "--out", str(out),
        "--model.space", str(space_file),
        "--trainer.max_epochs", "2",
        "--model.warmup_epochs", "1",
        "--logger", "csv",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--data.num_workers", "0",
        "--data.max_frames", "6000",
        "--trainer.limit_val_batches", "1",
        *extra,
    ]  # fmt: skip


def test_second_search_into_a_run_folder_is_refused_and_overwrite_replaces(
    corpus, space_file, tmp_path, capsys
):
    out = tmp_path / "run"
    assert cli_main(search_argv(corpus, space_file, out, "--seed_everything", "7")) == 0
    marker = json.loads((out / "run.json").read_text())
    assert marker["command"] == "search" and marker["status"] == "done"
    summary = json.loads((out / "search.json").read_text())
    assert summary["alphas_moved"] is True and summary["data"]["ctc"]["stride"] == 3
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()

    last = str(out / "checkpoints" / "last.ckpt")
    assert cli_main(search_argv(corpus, space_file, out, "--seed_everything", "8", "--ckpt_path", last)) == 2
    assert "resume with --seed_everything 7" in capsys.readouterr().err  # another seed would mix two runs
    assert cli_main(search_argv(corpus, space_file, out, "--seed_everything", "8")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("supernet search: error: ")
    assert "--ckpt_path" in err[0] and "--overwrite" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing touched

    (out / "notes.txt").write_text("mine")  # not a run's file: --overwrite keeps it
    assert cli_main(search_argv(corpus, space_file, out, "--seed_everything", "8", "--overwrite")) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert len((out / "alpha_history.jsonl").read_text().splitlines()) == 2  # one run's epochs, not both
    assert json.loads((out / "run.json").read_text())["argv"][-2:] == ["8", "--overwrite"]


def test_retrain_over_a_finished_run_is_refused(corpus, tmp_path, capsys):
    out = tmp_path / "derived"
    (out / "checkpoints").mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump({"name": "t", "features": "fbank", "feature_dim": 80, "dim": 16,
                                    "input": "linear", "layers": ["tdnn-k3-d1-s3"], "head": "linear"}))  # fmt: skip
    argv = ["retrain", "--arch", str(arch), "--data", str(corpus), "--out", str(out), "--logger", "none"]
    assert cli_main(argv) == 2
    assert "not a supernet run's" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == "{}"
    assert not (out / "arch.yaml").exists()


def test_a_search_killed_by_an_error_is_marked_failed(tmp_path):
    out = tmp_path / "run"
    run_folder.claim(out, "search")
    with pytest.raises(RuntimeError), run_folder.failing(out):
        raise RuntimeError("boom")
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == "boom"


def test_argument_errors_are_one_line_and_debug_shows_the_traceback(corpus, space_file, tmp_path, capsys):
    assert cli_main(search_argv(corpus, space_file, tmp_path / "a", "--model.methd", "st")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model.methd" in err[0] and "--help" in err[0]
    assert cli_main(search_argv(corpus, space_file, tmp_path / "b", "--model.method", "foo")) == 2
    assert "unknown 'foo'" in capsys.readouterr().err
    with pytest.raises(UserError, match="unknown 'foo'"):
        cli_main([*search_argv(corpus, space_file, tmp_path / "c", "--model.method", "foo"), "--debug"])


def test_claim_refuses_a_missing_resume_checkpoint_and_a_file_as_folder(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        run_folder.claim(tmp_path / "r", "search", resume_from=str(tmp_path / "nope.ckpt"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        run_folder.claim(tmp_path / "f", "search")


def test_retrain_refuses_an_architecture_that_leaves_ctc_nothing_to_train_on(corpus, tmp_path, capsys):
    arch = tmp_path / "stride9.yaml"
    arch.write_text(yaml.safe_dump({"name": "stride9", "features": "fbank", "feature_dim": 80, "dim": 16, "input": "linear",
                                    "layers": ["tdnn-k3-d1-s3", "tdnn-k3-d1-s3"], "head": "linear"}))  # fmt: skip
    out = tmp_path / "run"
    argv = ["retrain", "--arch", str(arch), "--data", str(corpus), "--out", str(out), "--logger", "none",
            "--data.num_workers", "0", "--trainer.max_epochs", "1"]  # fmt: skip
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "stride 9" in err and "stride9" in err
    assert not (out / "metrics.json").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_a_search_whose_alphas_never_moved_says_so(corpus, space_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(search_argv(corpus, space_file, out, "--model.arch_lr", "0")) == 0
    assert json.loads((out / "search.json").read_text())["alphas_moved"] is False
    assert "never moved" in capsys.readouterr().out


def test_uniform_trains_a_supernet_and_picks_no_architecture(corpus, space_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(search_argv(corpus, space_file, out, "--model.method", "uniform")) == 0
    assert not (out / "arch.yaml").exists() and not list(out.glob("arch_epoch_*.yaml"))
    summary = json.loads((out / "search.json").read_text())
    assert "arch" not in summary and "picks no architecture" in summary["note"]
    assert "picks no architecture" in capsys.readouterr().out
    assert cli_main(["extract", str(out / "checkpoints" / "last.ckpt"), "-o", str(tmp_path / "a.yaml")]) == 2
    assert "picks no architecture" in capsys.readouterr().err and not (tmp_path / "a.yaml").exists()


def test_a_plain_trainer_runs_the_warmup_then_the_search(corpus, space_file):
    """The warm-up is the module's schedule, not a callback it silently depends on."""
    import pytorch_lightning as pl

    from supernet.data.datamodule import SpeechDataModule
    from supernet.search.module import SearchModule

    data = SpeechDataModule(str(corpus), search=True, num_workers=0, max_frames=6000)
    module = SearchModule(str(space_file), vocab=list(data.tokenizer.vocab), method="st", warmup_epochs=1)
    seen = []

    class Stages(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append((pl_module.stage, pl_module.alphas_moved()))

    trainer = pl.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[Stages()],
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    assert seen == [("warmup", False), ("search", True)]


def test_overwrite_never_empties_a_folder_that_is_not_a_supernet_run(tmp_path):
    out = tmp_path / "project"
    (out / "lightning_logs").mkdir(parents=True)
    (out / "config.yaml").write_text("mine")
    with pytest.raises(UserError, match="not a supernet run"):
        run_folder.claim(out, "search", overwrite=True)
    assert (out / "config.yaml").read_text() == "mine" and (out / "lightning_logs").is_dir()


def test_resuming_another_runs_checkpoint_into_a_run_folder_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for run in (a, b):
        run_folder.claim(run, "search")
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
        run_folder.finish(run)
    with pytest.raises(UserError, match="another run's checkpoint"):
        run_folder.claim(b, "search", resume_from=str(a / "checkpoints" / "last.ckpt"))
    assert (b / "checkpoints" / "last.ckpt").is_file()
    run_folder.claim(a, "search", resume_from=str(a / "checkpoints" / "last.ckpt"))  # its own: fine
