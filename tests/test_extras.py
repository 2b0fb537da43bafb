"""wandb and matplotlib are extras: without them runs log to CSV and plots are skipped, each said in
one line; asking for W&B explicitly is a one-line user error naming the extra.

A missing package is simulated with ``sys.modules[NAME] = None``, which makes ``import NAME`` raise
ImportError and ``importlib.util.find_spec(NAME)`` return None.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from callbacks.alpha_logger import AlphaLogger
from supernet.archspec import ArchSpec
from supernet.commands import cli, pareto
from supernet.errors import UserError
from supernet.loggers import can_plot, make_logger, pyplot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_wandb(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)


@pytest.fixture
def no_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_pyproject_has_the_extras_and_dev_takes_both():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "wandb" not in core and "matplotlib" not in core
    extras = project["optional-dependencies"]
    assert any(r.startswith("wandb") for r in extras["wandb"])
    assert any(r.startswith("matplotlib") for r in extras["plots"])
    assert any(r.startswith("optuna") for r in extras["select"])
    dev_extras = next(r for r in extras["dev"] if r.startswith("supernet["))
    assert {"wandb", "plots", "select"} <= set(dev_extras[len("supernet[") : -1].split(","))


def test_the_default_logger_falls_back_to_csv_in_one_line(no_wandb, tmp_path, capsys):
    from pytorch_lightning.loggers import CSVLogger

    logger = make_logger("auto", tmp_path, name="run")
    assert isinstance(logger, CSVLogger)
    err = one_line(capsys.readouterr().err)
    assert "wandb is not installed" in err and str(tmp_path / "csv" / "metrics.csv") in err
    assert "pip install 'supernet[wandb]'" in err


def test_the_default_logger_is_wandb_when_installed(tmp_path, capsys):
    pytest.importorskip("wandb")
    assert type(make_logger("auto", tmp_path, name="run")).__name__ == "WandbLogger"
    assert capsys.readouterr().err == ""


def test_csv_and_none_need_no_wandb_and_say_nothing(no_wandb, tmp_path, capsys):
    from pytorch_lightning.loggers import CSVLogger

    assert isinstance(make_logger("csv", tmp_path, name="run"), CSVLogger)
    assert make_logger("none", tmp_path, name="run") is False
    assert capsys.readouterr().err == ""


def test_a_resumed_run_keeps_the_csv_rows_of_its_earlier_part(tmp_path):
    """Lightning's CSV logger deleted metrics.csv on a resume; the rows before it must stay, under
    their header: the earlier part's keys (dev/wer) need not come back in the resumed part's first
    rows, and a key new after the resume (train/loss) widens the header without losing a row."""
    import csv
    import pickle

    first = make_logger("csv", tmp_path, name="run")
    first.log_metrics({"dev/cer": 0.9, "dev/wer": 1.0, "epoch": 0}, step=1)
    first.save()
    resumed = make_logger("csv", tmp_path, name="run")  # a new process on the same run folder
    resumed.log_metrics({"dev/cer": 0.7, "epoch": 1}, step=2)
    resumed.save()
    resumed.log_metrics({"train/loss": 2.5, "epoch": 2}, step=3)
    resumed.save()
    with open(tmp_path / "csv" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["epoch"], r["dev/cer"]) for r in rows] == [("0", "0.9"), ("1", "0.7"), ("2", "")]
    assert [r["dev/wer"] for r in rows] == ["1.0", "", ""] and rows[2]["train/loss"] == "2.5"
    pickle.dumps(resumed)  # ddp_spawn pickles the Trainer's loggers


def test_an_explicit_wandb_logger_without_wandb_is_a_user_error(no_wandb, tmp_path):
    with pytest.raises(UserError, match=r"--logger wandb needs wandb: `pip install 'supernet\[wandb\]'`"):
        make_logger("wandb", tmp_path, name="run")
    with pytest.raises(UserError, match="unknown logger 'mlflow'"):
        make_logger("mlflow", tmp_path, name="run")


@pytest.mark.slow
def test_retrain_with_logger_wandb_without_wandb_prints_one_line(no_wandb, tmp_path, capsys):
    from supernet.data.corpus import build_corpus

    corpus = build_corpus(tmp_path / "corpus", langs=("en",), minutes=0.1, seed=0, workers=1)
    argv = ["retrain", "--arch", "tdnn_d", "--data", str(corpus), "--out", str(tmp_path / "run")]
    assert cli.main([*argv, "--logger", "wandb", "--data.num_workers", "0"]) == cli.EXIT_USER_ERROR
    err = one_line(capsys.readouterr().err)
    assert err.startswith("supernet retrain: error: --logger wandb needs wandb")
    assert "supernet[wandb]" in err and "--logger csv" in err


def test_commands_run_without_either_extra():
    # torchmetrics imports matplotlib when its distribution is installed: it goes first, and copes
    # by itself where matplotlib is really missing
    code = (
        "import sys, torchmetrics\n"
        "for name in [m for m in sys.modules if m.split('.')[0] in ('wandb', 'matplotlib')]:\n"
        "    del sys.modules[name]\n"
        "sys.modules['wandb'] = sys.modules['matplotlib'] = None\n"
        "from supernet.commands import cli\n"
        "rc = cli.main(['space', 'info', 'st_nas'])\n"
        "import supernet, ops, losses, callbacks.alpha_logger, supernet.commands.pareto\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "space: st_nas" in done.stdout


def test_pyplot_without_matplotlib_is_a_user_error_naming_the_extra(no_matplotlib, capsys):
    with pytest.raises(UserError, match=r"plots need matplotlib: `pip install 'supernet\[plots\]'`"):
        pyplot()
    assert can_plot("the plot x.png") is False
    err = one_line(capsys.readouterr().err)
    assert "the plot x.png skipped: matplotlib is not installed" in err and "supernet[plots]" in err


def test_alpha_heatmaps_are_skipped_in_one_line(no_matplotlib, tmp_path, capsys):
    callback = AlphaLogger(heatmap=True)
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), is_global_zero=True)
    callback.on_train_start(trainer, SimpleNamespace(picks_architecture=True))
    assert callback.heatmap is False
    err = one_line(capsys.readouterr().err)
    assert "alpha heatmaps" in err and "matplotlib is not installed" in err and "supernet[plots]" in err


def test_uniform_search_draws_no_heatmap_and_says_nothing(no_matplotlib, tmp_path, capsys):
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), is_global_zero=True)
    AlphaLogger(heatmap=True).on_train_start(trainer, SimpleNamespace(picks_architecture=False))
    assert capsys.readouterr().err == ""


def test_pareto_prints_its_table_and_skips_the_plot(no_matplotlib, tmp_path, capsys):
    runs = []
    for name, wer, params in (("a", 0.3, 10), ("b", 0.2, 20)):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"wer": {"test": wer}, "params": params}))
        ArchSpec.load("tdnn_d").to_yaml(run / "arch.yaml")
        runs.append(run)
    output = tmp_path / "pareto.png"
    args = argparse.Namespace(runs=runs, lut=None, test_set=None, metric="wer", output=output)
    assert pareto.run(args) == 0
    captured = capsys.readouterr()
    assert "front" in captured.out and "written" not in captured.out
    err = one_line(captured.err)
    assert f"the plot {output} skipped: matplotlib is not installed" in err and "supernet[plots]" in err
    assert not output.exists()
