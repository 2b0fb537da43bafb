"""scripts/paired_picks.py: each seed's own pick against its size pick, on known figures."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import paired_picks  # noqa: E402


def _seed(tmp_path, name, own, size=None, log=None):
    """A seed's folder as ``route_seed.sh SIZE=1`` leaves it: the own pick in arch/, the retrains
    (``own`` or ``size`` None: not retrained) and size_repick.py's log."""
    folder = tmp_path / name
    (folder / "arch").mkdir(parents=True)
    (folder / "arch" / f"uniform-{name}-any-predictor-big.yaml").write_text("name: x\n")
    rows = [] if own is None else [{"name": f"uniform-{name}-any-predictor-big", "cer": {"dev": own}}]
    if size is not None:
        rows.append({"name": f"uniform-{name}-any-predictor-size-big", "cer": {"dev": size}})
    rows = [{**row, "retrain_seeds": 3} for row in rows]
    (folder / "retrain_archs.json").write_text(json.dumps({"rows": rows}))
    if log:
        (folder / "size_repick.txt").write_text(log.format(name=name))
    return folder


# size_repick.py's log when this budget's size pick is the select's own, and when only the other
# budget's is (``big``'s was written to arch_size/)
SAME = (
    "budget 1 (uniform-{name}-any-predictor-big): ...\n  size pick: the same as the select's; none written\n"
)
OTHER_SAME = (
    "budget 1 (uniform-{name}-any-predictor-big): ...\n  written: arch_size/x.yaml\n"
    "budget 0.5: ...\n  size pick: the same as the select's; none written\n"
)


def test_pairs_ties_and_seeds_left_out(tmp_path):
    assert paired_picks.seed_pair(_seed(tmp_path, "s0", 0.20, 0.19), "big", {}) == (0.20, 0.19, False)
    # two different picks that retrain to the same CER are not the same pick
    assert paired_picks.seed_pair(_seed(tmp_path, "s5", 0.20, 0.20), "big", {}) == (0.20, 0.20, False)
    assert paired_picks.seed_pair(_seed(tmp_path, "s1", 0.21, log=SAME), "big", {}) == (0.21, 0.21, True)
    # a tie needs no retrain: its difference is 0 whatever the pick's CER
    assert paired_picks.seed_pair(_seed(tmp_path, "s4", None, log=SAME), "big", {}) == (None, None, True)
    assert "not retrained" in paired_picks.seed_pair(_seed(tmp_path, "s2", 0.18), "big", {})
    # a call that brought back only the log (8 files at most): the tie is read from its section head
    only_log = tmp_path / "s6"
    only_log.mkdir()
    (only_log / "size_repick.txt").write_text(SAME.format(name="s6"))
    assert paired_picks.seed_pair(only_log, "big", {}) == (None, None, True)
    (only_log / "size_repick.txt").write_text(OTHER_SAME.format(name="s6"))
    assert "not retrained" in paired_picks.seed_pair(only_log, "big", {})
    # a call cut before the size pick's retrain: the log's "the same" is the other budget's
    cut = _seed(tmp_path, "s3", 0.22, log=OTHER_SAME)
    (cut / "arch_size").mkdir()
    (cut / "arch_size" / "uniform-s3-any-predictor-size-big.yaml").write_text("name: x\n")
    assert "written but not retrained" in paired_picks.seed_pair(cut, "big", {})
    # ... retrained in a call of its own (--retrained), with other seeds' picks beside it
    later = {f"uniform-{s}-any-predictor-{k}big": {"cer": {"dev": c}} for s, k, c in
             [("s3", "size-", 0.21), ("s9", "", 0.5), ("s9", "size-", 0.4)]}  # fmt: skip
    assert paired_picks.seed_pair(cut, "big", later) == (0.22, 0.21, False)
    # a retrain cut short (fewer seeds than the study's, or none) counts as not retrained
    rows = [
        {"name": "a", "retrain_seeds": 0},
        {"name": "b", "retrain_seeds": 2},
        {"name": "c", "retrain_seeds": 3},
    ]
    assert list(paired_picks.finished(rows, 3)) == ["c"]


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
        _seed(tmp_path, "s3", None, log=SAME),
    ]
    sys.argv = ["paired_picks.py", *map(str, folders), "--budget", "big"]
    paired_picks.main()
    out = capsys.readouterr().out
    assert (
        "s2: left out" in out
        and "3 seeds, 2 whose picks differ (1 the same)" in out
        and "+0.67 points on average (the size picks lower)" in out
    )
    # differences 0.01, 0.01, 0 (the tie): 2 of the 8 flips (+, +, either) reach the sum 0.02
    assert "s3: the same pick (not retrained), a tie" in out and "sign-flip p 0.250" in out
