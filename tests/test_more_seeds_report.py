"""scripts/more_seeds_report.py: a study's verdicts judged again with more seeds, on known figures."""

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import more_seeds_report  # noqa: E402

BUDGETS = [{"budget": "full", "ms": 0.8}, {"budget": "half", "ms": 0.4}]


def _row(name, kind, budget, test, params=1e6):
    dev = [t - 0.01 for t in test]
    return {
        "name": name, "kind": kind, "method": "uniform" if kind == "searched" else None,
        "budget": budget, "budget_ms": 0.8 if budget == "full" else 0.4, "predicted_ms": 0.3, "params": params,
        "cer": {"dev": statistics.fmean(dev), "test": statistics.fmean(test)},
        "cer_std": {"dev": statistics.stdev(dev), "test": statistics.stdev(test)},
        "cer_by_seed": {"dev": dev, "test": test}, "retrain_seeds": len(test), "arch": {"name": name},
    }  # fmt: skip


def _study():
    """At each budget a pick 10% better than the baseline on 3 seeds, and a baseline that is a row
    of both budgets (one network)."""
    rows = [
        _row("pick-full", "searched", "full", [0.18, 0.18, 0.18]),
        _row("base", "baseline", "full", [0.20, 0.20, 0.20]),
        _row("pick-half", "searched", "half", [0.18, 0.18, 0.18]),
        _row("base", "baseline", "half", [0.20, 0.20, 0.20]),
    ]
    rows += [
        _row(f"random-{b}-{i}", "random", b, [0.25 + 0.01 * i] * 3)
        for b in ("full", "half")
        for i in range(8)
    ]
    return {"config": {"retrain": {"seeds": [0, 1, 2]}}, "budgets": BUDGETS, "rows": rows}


def _more(rows):
    return {"retrain": {"seeds": [3, 4, 5]}, "rows": rows}


def test_extra_seeds_are_pooled_into_the_verdicts_of_every_budget_the_network_sits_in():
    """The full budget's pick gets three seeds at the baseline's level: its 10% gain over 3 seeds
    halves to 5% over 6 (0.19 against 0.20); the baseline's extra seeds reach both its rows."""
    more = _more([
        _row("pick-full", "searched", "full", [0.20, 0.20, 0.20]),
        _row("base", "baseline", "full", [0.20, 0.20, 0.20]),
    ])  # fmt: skip
    summary = more_seeds_report.rejudged(_study(), [more])
    pooled = {(r["name"], r["budget"]): r for r in summary["rows"]}
    assert pooled["pick-full", "full"]["retrain_seeds"] == 6
    assert pooled["pick-full", "full"]["cer"]["test"] == pytest.approx(0.19)
    for budget in ("full", "half"):  # the baseline's seeds reach both of its rows
        assert pooled["base", budget]["retrain_seeds"] == 6
        assert pooled["base", budget]["cer_by_seed"]["test"] == [0.20] * 6
    assert pooled["pick-half", "half"]["retrain_seeds"] == 3  # no extra seeds: as the study had it

    gains = {
        v["subject"]: v for v in more_seeds_report.verdict.judge(summary) if "best baseline" in v["target"]
    }
    assert gains["pick-full"]["value"] == pytest.approx(0.05) and gains["pick-full"]["seeds"] == [6, 6]
    assert gains["pick-half"]["value"] == pytest.approx(0.10) and gains["pick-half"]["seeds"] == [3, 6]


def test_the_markdown_lists_the_pooled_rows_and_the_verdicts():
    more = _more([_row("pick-half", "searched", "half", [0.19, 0.19, 0.19])])
    text = more_seeds_report.markdown(_study(), [more])
    assert "| half | `pick-half` | searched | 6 |" in text
    assert "## Does the search win? (the targets)" in text


def test_extra_seeds_of_a_network_the_study_lacks_are_an_error():
    with pytest.raises(ValueError, match="not rows of the study: \\['stranger'\\]"):
        more_seeds_report.rejudged(_study(), [_more([_row("stranger", "random", "full", [0.2, 0.2, 0.2])])])
