"""scripts/select_strategies.py --replay: the strategies run again from a cache scored elsewhere
(no checkpoint), and a run that needs a path the cache lacks is left out, not made up."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import yaml

from supernet.latency import LatencyTable, make_settings, space_slots
from supernet.select.problem import key_of
from supernet.space import SearchSpace

SPACE = {
    "name": "two", "features": "fbank", "feature_dim": 8, "dim": 16, "input": "linear",
    "layers": [{"name": "a", "choice": ["tdnn-k3-d1", "tdnn-k3-d2", "skip"]},
               {"name": "b", "choice": ["tdnn-k3-d1", "tdnn-k3-d2", "skip"]}],
}  # fmt: skip
SCRIPT = Path(__file__).parent.parent / "scripts" / "select_strategies.py"


def test_a_replay_from_a_full_cache_runs_every_strategy_and_a_gap_leaves_a_run_out(tmp_path):
    space = SearchSpace(SPACE)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    settings = make_settings(device="cpu", threads=1, seconds=0.2, vocab=5)
    slots = [s for position in space_slots(space, settings)[0] for s in position]
    LatencyTable(settings, {s.key: {"ms": 1.0, "params": 0, "bytes": 0} for s in slots}).save(
        tmp_path / "lut.json"
    )
    paths = [dict(zip(space.edges, c)) for c in itertools.product(range(3), repeat=2)]
    scores = {key_of(p): float(p["a"] + 2 * p["b"]) for p in paths}  # (0, 0) is the best
    out = tmp_path / "bench"
    out.mkdir()

    def replay(cache: dict) -> tuple[subprocess.CompletedProcess, dict]:
        (out / "scores.json").write_text(
            json.dumps({"settings": {"ckpt": "gone.ckpt", "metric": "loss"}, "scores": cache})
        )
        argv = ["gone.ckpt", "--data", "gone", "--lut", tmp_path / "lut.json", "--budget", "100",
                "--evaluations", "9", "--strategies", "random", "evolution", "--seeds", "0", "1",
                "--out", out, "--replay", tmp_path / "space.yaml"]  # fmt: skip
        done = subprocess.run(
            [sys.executable, SCRIPT, *map(str, argv)], capture_output=True, text=True, check=True
        )
        return done, json.loads((out / "strategies.json").read_text())

    done, result = replay(scores)
    assert result["unfinished"] == [] and result["ckpt"] == "gone.ckpt"  # the settings it was scored with
    assert all(p["score"] == 0.0 for p in result["picks"])  # 9 evaluations cover the 9 paths: all find (0, 0)
    gap = dict(scores)
    del gap[key_of({"a": 2, "b": 2})]
    done, result = replay(gap)
    # every run must score all 9 paths: each stops at the missing one
    assert len(result["unfinished"]) == 4 and "left out, their paths not all in the cache" in done.stdout
