"""scripts/more_seeds_report.py: a study's verdicts judged again with more seeds, on known figures."""

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import more_seeds_report  # noqa: E402

BUDGETS = [{"budget": "full", "ms": 0.8}, {"budget": "half", "ms": 0.4}]
DEPTH = {"pick-full": 1, "pick-half": 2, "base": 3, "alias-of-base": 3, "stranger": 30}  # depth: the network


def _arch(name):
    """A network per name (random-B-I: 4 + I layers, 10 more at the half budget), but one for two."""
    depth = DEPTH[name] if name in DEPTH else 4 + int(name[-1]) + (10 if "-half-" in name else 0)
    return {"name": name, "features": "fbank", "feature_dim": 80, "dim": 16, "input": "linear",
            "layers": ["tdnn-k3-d1"] * depth, "head": "linear"}  # fmt: skip


def _retrained(name, test):
    """A row as ``retrain_archs.py`` writes it."""
    dev = [t - 0.01 for t in test]
    return {
        "name": name, "params": 1e6, "retrain_seeds": len(test), "arch": _arch(name),
        "cer": {"dev": statistics.fmean(dev), "test": statistics.fmean(test)},
        "cer_std": {"dev": statistics.stdev(dev), "test": statistics.stdev(test)},
        "cer_by_seed": {"dev": dev, "test": test},
    }  # fmt: skip


def _row(name, kind, budget, test):
    """A study row: a retrained network in one budget."""
    return _retrained(name, test) | {
        "kind": kind, "method": "uniform" if kind == "searched" else None, "budget": budget,
        "budget_ms": 0.8 if budget == "full" else 0.4, "predicted_ms": 0.3,
        "dev_cer_by_epoch": [[0.5, 0.3]] * len(test),
    }  # fmt: skip


def _study():
    """At each budget a pick 10% better than the baseline on 3 seeds; the baseline is a row of
    both budgets, and a random draw of the half budget is the baseline under another name."""
    rows = [
        _row("pick-full", "searched", "full", [0.18, 0.18, 0.18]),
        _row("base", "baseline", "full", [0.20, 0.20, 0.20]),
        _row("pick-half", "searched", "half", [0.18, 0.18, 0.18]),
        _row("base", "baseline", "half", [0.20, 0.20, 0.20]),
        _row("alias-of-base", "random", "half", [0.20, 0.20, 0.20]),
    ]
    rows += [
        _row(f"random-{b}-{i}", "random", b, [0.25 + 0.01 * i] * 3)
        for b in ("full", "half")
        for i in range(8)
    ]
    return {"config": {"retrain": {"seeds": [0, 1, 2]}}, "budgets": BUDGETS, "rows": rows}


def _more(*rows):
    return {"retrain": {"seeds": [3, 4, 5]}, "rows": list(rows)}


def test_extra_seeds_reach_every_row_of_the_network_and_its_verdicts():
    """The full budget's pick gets three seeds at the baseline's level: its 10% gain over 3 seeds
    halves to 5% over 6 (0.19 against 0.20), tested 6 against 6; the baseline's extra seeds reach
    both its budgets and the random draw that is the same network."""
    more = _more(_retrained("pick-full", [0.20, 0.20, 0.20]), _retrained("base", [0.20, 0.20, 0.20]))
    summary, extended = more_seeds_report.rejudged(_study(), [more])
    assert extended == {"pick-full", "base", "alias-of-base"}
    rows = {(r["name"], r["budget"]): r for r in summary["rows"]}
    assert rows["pick-full", "full"]["cer"]["test"] == pytest.approx(0.19)
    for name, budget in (("base", "full"), ("base", "half"), ("alias-of-base", "half")):
        assert rows[name, budget]["cer_by_seed"]["test"] == [0.20] * 6
        assert "dev_cer_by_epoch" not in rows[name, budget]  # 3 seeds' curves no longer describe it
    assert rows["pick-half", "half"]["retrain_seeds"] == 3  # no extra seeds: as the study had it
    assert "dev_cer_by_epoch" in rows["pick-half", "half"]

    gains = {v["subject"]: v for v in summary["verdicts"] if "best baseline" in v["target"]}
    assert gains["pick-full"]["value"] == pytest.approx(0.05) and gains["pick-full"]["seeds"] == [6, 6]
    assert gains["pick-half"]["value"] == pytest.approx(0.10) and gains["pick-half"]["seeds"] == [3, 6]


def test_a_network_whose_extra_retrains_failed_stays_as_the_study_had_it():
    failed = {"name": "pick-half", "params": 1e6, "retrain_seeds": 0, "arch": _arch("pick-half")}
    summary, extended = more_seeds_report.rejudged(_study(), [_more(failed)])
    assert extended == set()
    assert next(r for r in summary["rows"] if r["name"] == "pick-half")["retrain_seeds"] == 3


def test_the_markdown_lists_each_extended_row_and_the_picks_verdicts():
    text = more_seeds_report.markdown(_study(), [_more(_retrained("base", [0.21, 0.21, 0.21]))])
    table = [line for line in text.splitlines() if line.startswith("| ") and "CER %" not in line]
    assert [line.split(" | ")[:4] for line in table[:3]] == [
        ["| full", "`base`", "baseline", "6"], ["| half", "`base`", "baseline", "6"],
        ["| half", "`alias-of-base`", "random", "6"],
    ]  # fmt: skip
    assert "| 20.5 ± 0.5 |" in table[0]  # test: 0.20 x 3 and 0.21 x 3
    verdicts = text.split("## Does the search win? (the targets)")[1]
    assert "`pick-full`" in verdicts and "`pick-half`" in verdicts and "Kendall" not in verdicts


def test_extra_seeds_of_a_network_the_study_lacks_are_an_error():
    with pytest.raises(ValueError, match="not rows of the study: \\['stranger'\\]"):
        more_seeds_report.rejudged(_study(), [_more(_retrained("stranger", [0.2, 0.2, 0.2]))])


def test_seeds_the_study_has_already_or_files_without_seeds_are_an_error():
    again = {"retrain": {"seeds": [2, 3, 4]}, "rows": [_retrained("base", [0.2, 0.2, 0.2])]}
    with pytest.raises(ValueError, match="retrain seeds \\[2\\] are in two files"):
        more_seeds_report.rejudged(_study(), [again])
    with pytest.raises(ValueError, match="retrain seeds"):
        more_seeds_report.rejudged(_study(), [{"rows": [_retrained("base", [0.2, 0.2, 0.2])]}])
