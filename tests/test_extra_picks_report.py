"""scripts/extra_picks_report.py: another recipe's picks judged against a kept study, on the
committed h200_route study and session 27's weighted-draw picks (known figures, no training)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import extra_picks_report  # noqa: E402

from supernet.latency.table import LatencyTable  # noqa: E402

STUDY = ROOT / "docs/study/h200_route/study.json"
PICKS = sorted((ROOT / "docs/study/h200_route/fullrate_x3").glob("seed*/retrain_archs.json"))


def _picks(prefix=""):
    rows = [row for path in PICKS for row in json.loads(path.read_text())["rows"]]
    return {"rows": [{**row, "name": prefix + row["name"]} for row in rows]}


def test_picks_named_as_the_study_own_are_refused_without_a_prefix():
    study = json.loads(STUDY.read_text())
    table = LatencyTable.load(STUDY.parent / "latency.json")
    with pytest.raises(SystemExit, match="name them apart"):
        extra_picks_report.judged(study, _picks(), table, "uniform+predictor")


def test_the_weighted_picks_verdicts_are_the_committed_ones(tmp_path):
    """The gains the results quote: 2 of 5 past 5% at Conformer-S's latency, 3 of 3 at half of it."""
    out = tmp_path / "verdicts.md"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/extra_picks_report.py"), str(STUDY), *map(str, PICKS),
         "--prefix", "x3-", "--out", str(out)],
        check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    text = out.read_text()
    assert text == (STUDY.parent / "fullrate_x3/verdicts.md").read_text()
    gains = {
        line.split("`")[1]: line.split("(test): +")[1].split("%")[0]
        for line in text.splitlines()
        if line.startswith("| beats the best baseline") and "(test): +" in line and "`x3-" in line
    }
    assert gains == {
        "x3-uniform-s0-any-predictor-budget_conformer_s": "4.4",
        "x3-uniform-s1-any-predictor-budget_conformer_s": "8.4",
        "x3-uniform-s2-any-predictor-budget_conformer_s": "3.8",
        "x3-uniform-s3-any-predictor-budget_conformer_s": "10.1",
        "x3-uniform-s4-any-predictor-budget_conformer_s": "3.4",
        "x3-uniform-s2-any-predictor-0.5xbudget_conformer_s": "14.2",
        "x3-uniform-s4-any-predictor-0.5xbudget_conformer_s": "16.3",
        "x3-uniform-s5-any-predictor-0.5xbudget_conformer_s": "18.3",
    }
    assert "| budget_conformer_s | 3 of 6 |" in text  # the study's own pick and 2 of the 5
    assert "| 0.5xbudget_conformer_s | 4 of 4 |" in text
