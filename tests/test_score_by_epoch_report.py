"""scripts/score_by_epoch_report.py's arithmetic on made-up scores (the GPU part,
scripts/device/score_by_epoch.py, needs a trained supernet)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
sys.path.insert(0, str(Path(__file__).parent.parent / "scripts" / "device"))
import score_by_epoch  # noqa: E402
import score_by_epoch_report as sbe  # noqa: E402

SCRIPT = Path(__file__).parent.parent / "scripts" / "score_by_epoch_report.py"


def _result():
    """Three networks; at epoch 20 the score ranks them backwards, but the one that improved most
    late (c) is the best retrained: carried on far enough, the curve ranks them right."""
    cer = {"a": 0.30, "b": 0.25, "c": 0.20}
    early = {"a": {"loss": 2.0, "cer": 0.5}, "b": {"loss": 2.4, "cer": 0.6}, "c": {"loss": 3.0, "cer": 0.8}}
    late = {"a": {"loss": 1.9, "cer": 0.45}, "b": {"loss": 2.0, "cer": 0.5}, "c": {"loss": 2.1, "cer": 0.55}}
    return {
        "retrained_dev_cer": cer,
        "by_epoch": [{"epoch": 10, "scores": early}, {"epoch": 20, "scores": late}],
    }


def test_extrapolation_carries_each_path_on_by_its_late_change():
    assert sbe.extrapolated({"a": {"loss": 3.0}}, {"a": {"loss": 2.0}}, 0.5) == {"a": {"loss": 1.5}}
    assert sbe.extrapolated({"a": {"loss": 3.0}}, {"a": {"loss": 2.0}}, 0.0) == {"a": {"loss": 2.0}}


def test_tau_by_epoch_and_of_the_carried_on_curves():
    analysis = sbe.analyse(_result())
    assert analysis["last_epoch"] == 20 and analysis["networks"] == 3
    assert [r["loss"] for r in analysis["by_epoch"]] == [pytest.approx(-1.0), pytest.approx(-1.0)]
    by_factor = {r["factor"]: r for r in analysis["extrapolated"]}
    # loss carried on by c: a 1.9 - 0.1c, b 2.0 - 0.4c, c 2.1 - 0.9c; at c = 0.5: 1.85, 1.8, 1.65
    assert by_factor[0.5]["loss"] == pytest.approx(1.0)
    # CER carried on by c: a 0.45 - 0.05c, b 0.5 - 0.1c, c 0.55 - 0.25c; at c = 0.5: 0.425, 0.45,
    # 0.425: a-b discordant, b-c concordant, a-c tied: tau 0
    assert by_factor[0.5]["cer"] == pytest.approx(0.0)
    assert all(r["from_epoch"] == 10 for r in analysis["extrapolated"])


def test_the_script_writes_its_table_and_json(tmp_path):
    result = tmp_path / "score_by_epoch.json"
    result.write_text(json.dumps(_result()))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(result), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "| 20 | -1.000 | -1.000 |" in done.stdout
    saved = json.loads((tmp_path / "out" / "score_by_epoch_report.json").read_text())
    assert saved["by_epoch"][1]["epoch"] == 20


def test_checkpoints_are_found_by_epochs_trained(tmp_path):
    """Lightning names them epoch=E (from 0); last.ckpt has no epoch; a rerun epoch's -v1 is newer."""
    import os

    for name in ["epoch=0-step=10.ckpt", "epoch=19-step=200.ckpt", "last.ckpt", "epoch=19-step=200-v1.ckpt"]:
        (tmp_path / name).write_text(name)
    os.utime(tmp_path / "epoch=19-step=200.ckpt", (1, 1))
    found = score_by_epoch.checkpoints_by_epoch(tmp_path)
    assert sorted(found) == [1, 20]
    assert found[20].name == "epoch=19-step=200-v1.ckpt"
