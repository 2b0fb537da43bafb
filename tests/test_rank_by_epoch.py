"""scripts/rank_by_epoch.py: how well a short training ranks networks, on made-up curves."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import rank_by_epoch  # noqa: E402


def _row(name, curves):
    return {"name": name, "dev_cer_by_epoch": [[*c, c[-1]] for c in curves]}  # then the final pass


def _crossing(networks=4, seeds=2):
    """Network i is ranked i-th by its first epoch, the reverse by its third: curves cross."""
    return [
        _row(f"n{i}", [[0.5 + 0.01 * i, 0.4, 0.3 - 0.01 * i + 0.001 * s] for s in range(seeds)])
        for i in range(networks)
    ]


def test_a_curve_that_lost_its_first_epochs_is_left_out():
    rows = [_row("full", [[0.5, 0.4, 0.3]]), _row("resumed", [[0.4, 0.3]]), {"name": "none"}]
    assert rank_by_epoch.complete_curves(rows) == {"full": [[0.5, 0.4, 0.3]]}


def test_curves_that_cross_rank_in_reverse_early_and_exactly_at_the_end():
    taus = rank_by_epoch.taus_by_epoch(rank_by_epoch.complete_curves(_crossing()))
    assert [t["epoch"] for t in taus] == [1, 2, 3]
    assert taus[0]["tau"] == pytest.approx(-1.0) and taus[0]["tau_other_seed"] == pytest.approx(-1.0)
    assert taus[1]["tau"] is None  # every network tied after epoch 2
    assert taus[2]["tau"] == pytest.approx(1.0) and taus[2]["tau_other_seed"] == pytest.approx(1.0)
    assert rank_by_epoch.first_epoch(taus, 0.5, "tau_other_seed") == 3


def test_seeds_that_disagree_lower_the_ceiling():
    rows = [
        _row("a", [[0.5, 0.30], [0.5, 0.33]]),
        _row("b", [[0.5, 0.31], [0.5, 0.32]]),
        _row("c", [[0.5, 0.40], [0.5, 0.41]]),
    ]
    result = rank_by_epoch.report_rows(rows)
    # seed 0 ranks a < b < c, seed 1 b < a < c: one pair of three discordant, both ways
    assert result["seed_ceiling"] == pytest.approx(1 / 3)
    assert result["networks"] == 3 and result["epochs"] == 2


def test_the_script_writes_its_report(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"rows": _crossing()}))
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, str(Path(rank_by_epoch.__file__)), str(tmp_path / "a.json"), "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert json.loads((out / "rank_by_epoch.json").read_text())["first_epoch_at_0.5"] == 3
    assert "| 1 | -1.00 | -1.00 |" in (out / "rank_by_epoch.md").read_text()
