"""scripts/retrain_length_report.py: a study's verdicts under its retrain and a longer one, on
known figures."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import retrain_length_report  # noqa: E402

BUDGET = {"budget": "b1", "ms": 0.8409}


PARAMS = {"base": 3e6, "study-pick": 2e6, "pick-predictor-s1": 2.5e6, "short0.841-pick-predictor-s1": 2.5e6}


def _row(name, kind, dev, test, **extra):
    return {
        "name": name, "kind": kind, "method": extra.pop("method", None), "budget": "b1",
        "budget_ms": BUDGET["ms"], "cer": {"dev": dev, "test": test}, "params": PARAMS.get(name, 1e6),
        "cer_std": {"dev": 0.0, "test": 0.0}, "retrain_seeds": 3, "arch": {"name": name}, **extra,
    }  # fmt: skip


def _longer(name, dev, test, seeds=3):
    return {
        "name": name, "retrain_seeds": seeds, "cer": {"dev": dev, "test": test}, "params": PARAMS.get(name, 1e6),
        "cer_std": {"dev": 0.01, "test": 0.01}, "arch": {"name": name},
        "dev_cer_by_epoch": [[0.5, 0.4, dev, dev]] * seeds,
    }  # fmt: skip


@pytest.fixture
def kept(tmp_path):
    """A study of one budget (a baseline, four random paths, one pick), a 20-epoch pick, and
    every network retrained longer: the pick that lost at 12 epochs wins at 24."""
    randoms = [_row(f"random-{i}", "random", 0.30 + i / 100, 0.31 + i / 100) for i in range(4)]
    report = {
        "config": {"retrain": {"options": {"trainer.max_epochs": 12}}},
        "budgets": [BUDGET],
        "rows": [
            _row("base", "baseline", 0.30, 0.30, predicted_ms=0.8),
            _row("study-pick", "searched", 0.29, 0.29, method="uniform+evolution"),
            *randoms,
        ],
    }
    short = tmp_path / "short" / "budget_0.841"
    short.mkdir(parents=True)
    (short / "retrain_archs.json").write_text(
        json.dumps({"rows": [_longer("pick-predictor-s1", 0.32, 0.33)]})
    )
    longer = [
        _longer("base", 0.25, 0.25), _longer("study-pick", 0.23, 0.23),
        _longer("short0.841-pick-predictor-s1", 0.22, 0.22),
        *[_longer(f"random-{i}", 0.24 + i / 100, 0.24 + i / 100) for i in range(4)],
    ]  # fmt: skip
    side = {"retrain": {"options": {"trainer.max_epochs": 24}}, "rows": longer}
    paths = {"report": tmp_path / "study.json", "side": tmp_path / "side.json", "short": tmp_path / "short"}
    paths["report"].write_text(json.dumps(report))
    paths["side"].write_text(json.dumps(side))
    return paths


def test_both_recipes_pair_each_network_with_its_longer_retrain(kept):
    side, report = json.loads(kept["side"].read_text()), json.loads(kept["report"].read_text())
    old, new, budgets = retrain_length_report.both_recipes(side, report, kept["short"])
    assert [r["name"] for r in old] == [r["name"] for r in new]
    assert budgets == [BUDGET]
    pick = next(r for r in new if r["name"].startswith("short"))
    assert (pick["kind"], pick["method"], pick["search_seed"]) == ("searched", "uniform+predictor", 1)
    assert next(r for r in old if r["name"] == pick["name"])["cer"]["test"] == pytest.approx(0.33)
    assert pick["cer"]["test"] == pytest.approx(0.22)
    assert pick["params"] == 2.5e6 and pick["predicted_ms"] is None  # its own, not the template row's


def test_verdicts_follow_each_recipe(kept, tmp_path):
    out = tmp_path / "out"
    sys.argv = ["x", "--side", str(kept["side"]), "--report", str(kept["report"]),
                "--short", str(kept["short"]), "--out", str(out)]  # fmt: skip
    retrain_length_report.main()
    result = json.loads((out / "retrain_length.json").read_text())
    gains = {
        epochs: {v["subject"]: v["value"] for v in recipe["verdicts"] if "baseline" in v["target"]}
        for epochs, recipe in result["recipes"].items()
    }
    assert gains["12"]["short0.841-pick-predictor-s1"] == pytest.approx((0.30 - 0.33) / 0.30)
    assert gains["24"]["short0.841-pick-predictor-s1"] == pytest.approx((0.25 - 0.22) / 0.25)
    # the random paths keep their order and the baseline falls behind them: a tau below 1
    assert 0 < result["tau_between_recipes"] < 1
    assert "Retrained for 24 epochs against the study's 12" in (out / "retrain_length.md").read_text()
