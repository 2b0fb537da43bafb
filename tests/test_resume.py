"""Nothing lost: a search or retrain killed with SIGKILL and resumed from RUN/checkpoints/last.ckpt
ends exactly where the uninterrupted run does, on a small st_nas with dropout and SpecAugment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from supernet.space import resolve_space_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from supernet.data.corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"), langs=("en",), minutes=0.6, seed=3, workers=1)


@pytest.fixture(scope="module")
def small_st_nas(tmp_path_factory):
    """The shipped st_nas at width 32: its dropout stays on."""
    space = yaml.safe_load(resolve_space_path("st_nas").read_text())
    assert space["dropout"] > 0
    path = tmp_path_factory.mktemp("space") / "st_nas_small.yaml"
    path.write_text(yaml.safe_dump({**space, "dim": 32, "name": "st_nas_small"}))
    return path


def common(corpus) -> list[str]:
    return [
        "--data", str(corpus),
        "--logger", "csv",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--data.num_workers", "0",
        "--data.max_frames", "3000",
        "--data.spec_augment", "true",
        "--trainer.limit_val_batches", "1",
    ]  # fmt: skip


def search_args(corpus, space, out) -> list[str]:
    return [
        *common(corpus),
        "--out", str(out),
        "--model.space", str(space),
        "--trainer.max_epochs", "3",
        "--model.warmup_epochs", "1",
        "--model.arch_lr", "0.05",
    ]  # fmt: skip


def retrain_args(corpus, out) -> list[str]:
    arch = ROOT / "supernet" / "configs" / "arch" / "tdnn_d.yaml"
    spec = yaml.safe_load(arch.read_text())
    small = out.parent / f"{out.name}_arch.yaml"
    small.write_text(yaml.safe_dump({**spec, "dim": 32}))
    return [*common(corpus), "--out", str(out), "--arch", str(small), "--trainer.max_epochs", "5"]


def start(argv: list[str]) -> subprocess.Popen:
    """``supernet ARGV`` in a fresh process: every run compared bit for bit starts from the same
    process state (an earlier test in this process may have changed threads or backend flags)."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "supernet", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run(argv: list[str]) -> None:
    proc = start(argv)
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]


def kill_when(argv: list[str], ready, timeout: float = 240) -> None:
    """Run ``supernet ARGV`` in a subprocess and SIGKILL it once ``ready()`` holds."""
    proc = start(argv)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"finished before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the run never reached the point to kill it at")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def state_of(run: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["state_dict"]


def after_epoch_checkpoint(run: Path, epochs: int):
    """True once epoch ``epochs - 1``'s checkpoint is written (after its alpha-history line)."""
    history, last = run / "alpha_history.jsonl", run / "checkpoints" / "last.ckpt"

    def ready() -> bool:
        return lines(history) >= epochs and last.is_file() and last.stat().st_mtime >= history.stat().st_mtime

    return ready


def after_history_line(run: Path, epochs: int):
    """True as soon as ``epochs`` alpha-history lines exist: the last one's checkpoint may not."""
    return lambda: lines(run / "alpha_history.jsonl") >= epochs


@pytest.fixture(scope="module")
def straight_search(corpus, small_st_nas, tmp_path_factory):
    straight = tmp_path_factory.mktemp("straight") / "run"
    run(["search", *search_args(corpus, small_st_nas, straight)])
    return straight


@pytest.mark.parametrize(
    "kill_point",
    [lambda run: after_epoch_checkpoint(run, 1), lambda run: after_history_line(run, 2)],
    ids=["in-an-epoch", "at-an-epoch-end"],
)
def test_search_killed_and_resumed_equals_uninterrupted(
    corpus, small_st_nas, straight_search, tmp_path, kill_point
):
    straight, cut = straight_search, tmp_path / "cut"

    kill_when(["search", *search_args(corpus, small_st_nas, cut)], kill_point(cut))
    last = cut / "checkpoints" / "last.ckpt"
    assert last.is_file(), "an end-of-epoch checkpoint must exist before training ends"
    assert not (cut / "search.json").exists()

    run(["search", *search_args(corpus, small_st_nas, cut), "--ckpt_path", str(last)])
    a, b = state_of(straight), state_of(cut)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    assert (cut / "arch.yaml").read_text() == (straight / "arch.yaml").read_text()
    history = [
        yaml.safe_load(line)["epoch"] for line in (cut / "alpha_history.jsonl").read_text().splitlines()
    ]
    assert history == [0, 1, 2]  # no epoch twice after the resume


def test_retrain_killed_and_resumed_equals_uninterrupted(corpus, tmp_path):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    run(["retrain", *retrain_args(corpus, straight)])
    last = cut / "checkpoints" / "last.ckpt"

    def second_epoch_started() -> bool:  # last.ckpt of epoch 0 written, then a moment into epoch 1
        if not last.is_file():
            return False
        time.sleep(0.03)  # an epoch of this tiny run takes about 0.12 s on a 2-core machine
        return True

    kill_when(["retrain", *retrain_args(corpus, cut)], second_epoch_started)
    assert not (cut / "metrics.json").exists()
    run(["retrain", *retrain_args(corpus, cut), "--ckpt_path", str(last)])
    a, b = state_of(straight), state_of(cut)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    metrics = [yaml.safe_load((run / "metrics.json").read_text()) for run in (straight, cut)]
    assert metrics[0]["cer"] == metrics[1]["cer"] and metrics[0]["dev_cer"] == metrics[1]["dev_cer"]
