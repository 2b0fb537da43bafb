"""`supernet search` and `supernet retrain` under DDP from the command line (two CPU processes,
gloo), as the guide and benchmarks.md tell users to run them. They stopped before the first step:
Lightning tried to rebuild the data module's bucket samplers with its DistributedSampler from
constructor arguments it had not recorded. The samplers shard by rank themselves; the CLIs turn
Lightning's injection off (``TRAINER_DEFAULTS``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_search import TINY_SPACE

SUPERNET = Path(sys.executable).with_name("supernet")  # Lightning's DDP launcher re-runs this argv


@pytest.mark.skipif(not SUPERNET.exists(), reason="the supernet console script is not installed")
def test_search_then_retrain_on_two_ddp_processes(tmp_path):
    from supernet.data.corpus import build_corpus

    corpus = build_corpus(tmp_path / "corpus", langs=("en",), minutes=0.6, seed=3, workers=1)
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    common = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu",
              "--logger", "csv", "--trainer.enable_progress_bar", "false", "--data.num_workers", "0",
              "--data.max_frames", "6000", "--data"]  # fmt: skip
    env = {**os.environ, "SUPERNET_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}

    def run(*argv: str) -> str:
        proc = subprocess.run(
            [str(SUPERNET), *argv], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    search = run("search", *common, str(corpus), "--model.space", str(space), "--trainer.max_epochs", "2",
                 "--model.warmup_epochs", "1", "--out", str(tmp_path / "search"))  # fmt: skip
    assert "batches/epoch per rank (2 rank(s))" in search  # each rank reads its own shard
    arch = tmp_path / "search" / "arch.yaml"
    assert arch.is_file() and json.loads((tmp_path / "search" / "run.json").read_text())["status"] == "done"
    run("retrain", *common, str(corpus), "--arch", str(arch), "--trainer.max_epochs", "1",
        "--out", str(tmp_path / "retrain"))  # fmt: skip
    metrics = json.loads((tmp_path / "retrain" / "metrics.json").read_text())
    assert json.loads((tmp_path / "retrain" / "run.json").read_text())["status"] == "done"
    assert 0.0 <= metrics["dev_cer"] <= 1.5 and metrics["epochs"] == 1
