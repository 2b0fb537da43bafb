"""How well a short training ranks networks (``rank.rank_by_epoch``, its study.md section and
scripts/rank_by_epoch.py), on made-up curves."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from supernet.study import rank, report

SCRIPT = Path(__file__).parent.parent / "scripts" / "rank_by_epoch.py"


def _row(name, curves, final=None):
    """Each seed's dev CER after every epoch, then the final pass (the last epoch's unless given)."""
    return {
        "name": name,
        "dev_cer_by_epoch": [[*c, c[-1] if final is None else final[s]] for s, c in enumerate(curves)],
    }


def _crossing(networks=4, seeds=2):
    """Network i is ranked i-th by its first epoch, the reverse by its third: curves cross."""
    return [
        _row(f"n{i}", [[0.5 + 0.01 * i, 0.4, 0.3 - 0.01 * i + 0.001 * s] for s in range(seeds)])
        for i in range(networks)
    ]


def test_a_curve_that_lost_its_first_epochs_is_left_out_and_a_network_counts_once():
    rows = [
        _row("full", [[0.5, 0.4, 0.3]]),
        _row("resumed", [[0.4, 0.3]]),
        {"name": "none"},
        {**_row("baseline", [[0.6, 0.5, 0.4]]), "runs": ["r0"]},
        {**_row("baseline-again", [[0.6, 0.5, 0.4]]), "runs": ["r0"]},  # the same runs, another budget
    ]
    assert rank.complete_curves(rows) == {"full": [[0.5, 0.4, 0.3, 0.3]], "baseline": [[0.6, 0.5, 0.4, 0.4]]}


@pytest.mark.parametrize("curves", [[[], []], [[0.3], [0.31]]])
def test_runs_that_logged_no_epoch_give_an_empty_result_not_an_error(curves):
    rows = [{"name": f"n{i}", "dev_cer_by_epoch": curves} for i in range(3)]
    result = rank.rank_by_epoch(rank.complete_curves(rows))
    assert result["epochs"] == 0 and result["by_epoch"] == [] and result["seed_ceiling"] is None
    assert "Not measured" in " ".join(report.rank_by_epoch_lines(result))


def test_curves_that_cross_rank_in_reverse_early_and_exactly_at_the_end():
    result = rank.rank_by_epoch(rank.complete_curves(_crossing()))
    taus = result["by_epoch"]
    assert [t["epoch"] for t in taus] == [1, 2, 3] and result["seeds"] == 2 and result["networks"] == 4
    assert taus[0]["tau"] == pytest.approx(-1.0) and taus[0]["tau_other_seed"] == pytest.approx(-1.0)
    assert taus[1]["tau"] is None  # every network tied after epoch 2
    assert taus[2]["tau"] == pytest.approx(1.0) and result["seed_ceiling"] == pytest.approx(1.0)
    assert result["first_epoch_at_0.5"] == 3
    assert rank.first_epoch_at(taus, -1.0) == 3  # epoch 2's undefined tau breaks "from epoch 1 on"
    assert rank.first_epoch_at(taus, None) is None


def test_the_target_is_the_final_pass_not_the_last_epoch():
    # the last epoch ranks a < b < c; the final pass (the best checkpoint) c < b < a
    rows = [
        _row(n, [[0.5, v], [0.5, v]], final=[f, f])
        for n, v, f in [("a", 0.2, 0.4), ("b", 0.3, 0.3), ("c", 0.4, 0.2)]
    ]
    result = rank.rank_by_epoch(rank.complete_curves(rows))
    assert result["by_epoch"][-1]["tau_other_seed"] == pytest.approx(-1.0)
    assert result["seed_ceiling"] == pytest.approx(1.0)


def test_seeds_that_disagree_lower_the_ceiling():
    rows = [
        _row("a", [[0.5, 0.30], [0.5, 0.33]]),
        _row("b", [[0.5, 0.31], [0.5, 0.32]]),
        _row("c", [[0.5, 0.40], [0.5, 0.41]]),
    ]
    # seed 0 ranks a < b < c, seed 1 b < a < c: one pair of three discordant, both ways
    assert rank.rank_by_epoch(rank.complete_curves(rows))["seed_ceiling"] == pytest.approx(1 / 3)


def test_a_network_with_one_complete_seed_counts_only_where_one_seed_is_enough():
    rows = [*_crossing(networks=3), _row("lone", [[0.9, 0.9, 0.1]])]
    result = rank.rank_by_epoch(rank.complete_curves(rows))
    assert result["networks"] == 4 and result["networks_other_seed"] == 3 and result["seeds"] == 2
    assert result["seed_ceiling"] == pytest.approx(1.0)


def test_the_study_section_says_what_the_supernets_tau_is_worth_or_that_it_was_not_measured():
    result = rank.rank_by_epoch(rank.complete_curves(_crossing()))
    text = "\n".join(report.rank_by_epoch_lines(result, supernet=(0.9, 4)))
    assert "## How early does training alone rank the networks?" in text
    assert "| another seed | -1.00 | undefined | 1.00 |" in text and "0.5 or more from epoch 3 of 3" in text
    assert "The supernet ranks the 4 networks it scored at 0.90" in text and "from epoch 3 on" in text
    never = [{**r, "tau_other_seed": 0.2} for r in result["by_epoch"]]
    text = " ".join(
        report.rank_by_epoch_lines({**result, "by_epoch": never, "first_epoch_at_0.5": None}, (0.9, 4))
    )
    assert "0.5 at no epoch to the end" in text and "does not stay at or above that" in text
    one_seed = rank.rank_by_epoch(rank.complete_curves(_crossing(seeds=1)))
    assert "Not measured" in " ".join(report.rank_by_epoch_lines(one_seed))
    assert "Not measured" in " ".join(report.rank_by_epoch_lines(None))
    assert report._shown_epochs(24) == [1, 2, 3, 4, 6, 8, 12, 16, 18, 24]


def test_the_script_writes_its_report(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"rows": [*_crossing(), _row("short", [[0.3]])]}))
    (tmp_path / "b.json").write_text(json.dumps({"rows": _crossing()}))  # the same names: the first file's
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out)],
        check=True,
    )
    result = json.loads((out / "rank_by_epoch.json").read_text())
    assert result["first_epoch_at_0.5"] == 3 and result["left_out"] == ["short"] and result["networks"] == 4
    assert "| another seed | -1.00 | undefined | 1.00 |" in (out / "rank_by_epoch.md").read_text()
