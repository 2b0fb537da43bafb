"""scripts/paired_picks.py: each seed's own pick against its size pick, on known figures."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import paired_picks  # noqa: E402


def _seed(tmp_path, name, own, size=None, log=None):
    folder = tmp_path / name
    folder.mkdir()
    rows = [{"name": f"uniform-{name}-any-predictor-big", "cer": {"dev": own}}]
    if size is not None:
        rows.append({"name": f"uniform-{name}-any-predictor-size-big", "cer": {"dev": size}})
    (folder / "retrain_archs.json").write_text(json.dumps({"rows": rows}))
    if log:
        (folder / "size_repick.txt").write_text(log)
    return folder


def test_pairs_ties_and_seeds_left_out(tmp_path):
    assert paired_picks.seed_pair(_seed(tmp_path, "s0", 0.20, 0.19), "big") == (0.20, 0.19)
    same = "budget 1: ...\n  size pick: the same as the select's; none written\n"
    assert paired_picks.seed_pair(_seed(tmp_path, "s1", 0.21, log=same), "big") == (0.21, 0.21)
    assert "no retrained size pick" in paired_picks.seed_pair(_seed(tmp_path, "s2", 0.18), "big")
    # a call cut before the size pick's retrain: the log's "the same" is another budget's, not a tie
    cut = _seed(tmp_path, "s3", 0.22, log=same)
    (cut / "arch_size").mkdir()
    (cut / "arch_size" / "uniform-s3-any-predictor-size-big.yaml").write_text("name: x\n")
    assert "not retrained" in paired_picks.seed_pair(cut, "big")


def test_the_sign_flip_p():
    # three positive differences: only the observed signs reach the sum, 1 of 8
    assert paired_picks.sign_flip_p([0.01, 0.02, 0.03]) == pytest.approx(1 / 8)
    # +0.01, a tie and -0.005 (sum 0.005): the flips reaching it are (+, ., +) and (+, ., -), each
    # twice for the tie's two signs: 4 of 8
    assert paired_picks.sign_flip_p([0.01, 0.0, -0.005]) == pytest.approx(0.5)


def test_the_command_prints_the_mean_difference(tmp_path, capsys):
    folders = [
        _seed(tmp_path, "s0", 0.20, 0.19),
        _seed(tmp_path, "s1", 0.21, 0.20),
        _seed(tmp_path, "s2", 0.18),
    ]
    sys.argv = ["paired_picks.py", *map(str, folders), "--budget", "big"]
    paired_picks.main()
    out = capsys.readouterr().out
    assert (
        "s2: left out" in out and "2 seeds" in out and "+1.00 points on average (the size picks lower)" in out
    )
    assert "sign-flip p 0.250" in out
