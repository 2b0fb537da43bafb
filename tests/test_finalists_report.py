"""scripts/finalists_report.py: fine-tuned finalists against the score's own pick, on known figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import finalists_report  # noqa: E402

BUDGET = {"budget": "b1", "ms": 0.8409}


def _row(name, kind, dev, test, **extra):
    return {
        "name": name, "kind": kind, "method": None, "budget": "b1", "budget_ms": BUDGET["ms"],
        "cer": {"dev": dev, "test": test}, "cer_std": {"dev": 0.0, "test": 0.0}, "retrain_seeds": 3,
        "params": 1e6, "arch": {"name": name}, **extra,
    }  # fmt: skip


def _select(finalists, best, seconds=30.0):
    return {
        "budgets": [0.84090866], "seconds": seconds, "finetune_seconds": 10.0, "best": [{"path": best,
        "finalists": [{"path": p, "score": s, "finetuned": t, "cost": 0.7} for p, s, t in finalists]}],
    }  # fmt: skip


def _retrained(key, dev, test):
    return {
        "name": f"finalist-{key}", "retrain_seeds": 3, "cer": {"dev": dev, "test": test},
        "cer_std": {"dev": 0.01, "test": 0.01}, "params": 2e6, "arch": {"name": key},
    }  # fmt: skip


@pytest.fixture
def kept(tmp_path):
    """One budget (a baseline at 0.20, eight random paths 0.21-0.28); two seeds of three
    finalists. Seed 0's fine-tune orders its finalists as their retrains do and changes the pick to
    one that wins by 10%; seed 1's inverts them and keeps the score's pick, which loses."""
    randoms = [_row(f"random-{i}", "random", 0.21 + i / 100, 0.21 + i / 100) for i in range(8)]
    reference = {
        "budgets": [BUDGET],
        "rows": [_row("base", "baseline", 0.20, 0.20, predicted_ms=0.8), *randoms,
                 _row("old-pick", "searched", 0.19, 0.19)],
    }  # fmt: skip
    selects = {
        0: _select([("a", 1.0, 0.9), ("b", 1.1, 0.7), ("c", 1.2, 0.8)], best="b"),
        1: _select([("d", 1.0, 0.9), ("e", 1.1, 0.8), ("c", 1.2, 0.7)], best="c"),
    }
    retrained = {
        "a": _retrained("a", 0.22, 0.22),
        "b": _retrained("b", 0.18, 0.18),
        "c": _retrained("c", 0.19, 0.19),
        "d": _retrained("d", 0.25, 0.25),
        "e": _retrained("e", 0.20, 0.20),
    }
    for seed, select in selects.items():
        (tmp_path / f"select-s{seed}.json").write_text(json.dumps(select))
    (tmp_path / "retrain_archs.json").write_text(json.dumps({"rows": list(retrained.values())}))
    (tmp_path / "reference.json").write_text(json.dumps(reference))
    cost = {"supernet_seconds": 100.0, "select_seconds": 30.0, "finetune_seconds": 10.0,
            "retrain_seconds": 80.0, "ratio": 130 / 80, "epochs": 24}  # fmt: skip
    (tmp_path / "route_cost.json").write_text(json.dumps(cost))
    return tmp_path, selects, retrained, reference, cost


def test_the_picks_of_each_seed_are_judged_against_the_baseline_and_the_random_paths(kept):
    _, selects, retrained, reference, cost = kept
    result = finalists_report.report(selects, retrained, reference, cost)
    assert result["seeds"][0]["changed"] and result["seeds"][0]["dev"] == {"score": 0.22, "finalists": 0.18}
    assert result["seeds"][1]["picks"] == {"score": "d", "finalists": "c"}
    assert {r["predicted_ms"] for r in result["rows"]} == {0.7}  # each pick's cost, as its select had it
    by_subject = {}
    for v in result["verdicts"]:
        by_subject.setdefault(v["subject"], []).append(v)
    baseline = {s: vs[0] for s, vs in by_subject.items()}
    assert baseline["s0-finalists-pick-b"]["met"] and baseline["s0-finalists-pick-b"][
        "value"
    ] == pytest.approx(0.1)
    assert not baseline["s0-score-pick-a"]["met"] and baseline["s0-score-pick-a"]["value"] == pytest.approx(
        -0.1
    )
    assert "old-pick" not in by_subject  # the reference's own searched rows are not this experiment's
    random = {s: vs[1] for s, vs in by_subject.items()}
    assert (
        random["s1-finalists-pick-c"]["met"] and not random["s1-score-pick-d"]["met"]
    )  # 0.19 and 0.25 against 0.21-0.28


def test_the_fine_tuned_score_is_ranked_against_the_retrained_dev_cer(kept):
    _, selects, retrained, reference, cost = kept
    result = finalists_report.report(selects, retrained, reference, cost)
    # seed 0: inherited a<b<c against dev a>c>b: tau -1/3; fine-tuned b<c<a: tau 1
    assert result["seeds"][0]["taus"]["inherited"] == pytest.approx(-1 / 3)
    assert result["seeds"][0]["taus"]["finetuned"] == pytest.approx(1.0)
    # seed 1: inherited d<e<c against dev d>e>c: -1; fine-tuned c<e<d: 1
    assert result["seeds"][1]["taus"] == {"finalists": 3, "inherited": -1.0, "finetuned": 1.0}
    assert result["taus"]["mean_within_seed"]["finetuned"] == pytest.approx(1.0)
    assert result["taus"]["pooled"]["finalists"] == 5  # c, finalist of both seeds, counted once
    assert result["cost"]["ratio_by_seed"] == {0: pytest.approx(130 / 80), 1: pytest.approx(130 / 80)}


def test_the_script_writes_its_report(kept):
    folder = kept[0]
    out = folder / "report"
    subprocess.run(
        [sys.executable, str(Path(finalists_report.__file__)), "--selects", str(folder), "--retrain",
         str(folder / "retrain_archs.json"), "--reference", str(folder / "reference.json"),
         "--cost", str(folder / "route_cost.json"), "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    text = (out / "finalists.md").read_text()
    assert "| 0 | yes | 22.0 | 18.0 | -0.333 / 1.000 (3) |" in text
    assert "by seed 1.62x, 1.62x" in text
    assert json.loads((out / "finalists.json").read_text())["taus"]["pooled"]["finalists"] == 5
    pytest.importorskip("matplotlib")
    assert (out / "cer_vs_latency.png").stat().st_size > 0 and "](cer_vs_latency.png)" in text


def test_with_successive_halving_only_the_last_rung_is_ranked():
    """A finalist stopped after the first rung has a score of fewer steps: not comparable."""
    finalists = [
        {"path": "a", "score": 1.0, "finetuned": 0.5, "finetune_steps": 24},
        {"path": "b", "score": 1.1, "finetuned": 0.6, "finetune_steps": 24},
        {"path": "c", "score": 1.2, "finetuned": 0.1, "finetune_steps": 12},  # stopped early
    ]
    taus = finalists_report.seed_taus(finalists, {"a": 0.2, "b": 0.3, "c": 0.4})
    assert taus == {"finalists": 2, "inherited": 1.0, "finetuned": 1.0}


def test_a_path_of_several_seeds_is_pooled_once_at_its_most_steps():
    """With halving a path can reach the last rung in one seed and stop early in another: the
    pooled tau takes its entry of the most steps."""

    def select(finalists):
        return {"best": [{"path": finalists[0][0], "finalists": [
            {"path": p, "score": s, "finetuned": t, "finetune_steps": n} for p, s, t, n in finalists]}]}  # fmt: skip

    selects = {
        0: select([("a", 1.0, 0.5, 24), ("b", 1.1, 0.6, 24), ("c", 1.3, 0.9, 12)]),
        1: select([("a", 1.2, 0.8, 12), ("c", 1.0, 0.4, 24), ("b", 1.1, 0.5, 24)]),
    }
    pooled = finalists_report.pooled_finalists(selects)
    assert {f["path"]: f["finetuned"] for f in pooled} == {"a": 0.5, "b": 0.6, "c": 0.4}
    taus = finalists_report.seed_taus(pooled, {"a": 0.2, "b": 0.3, "c": 0.1})
    assert taus["finalists"] == 3 and taus["finetuned"] == pytest.approx(1.0)


def test_a_last_rung_that_diverged_is_not_replaced_by_an_earlier_one():
    finalists = [
        {"path": "a", "score": 1.0, "finetuned": None, "finetune_steps": 24},  # diverged
        {"path": "b", "score": 1.1, "finetuned": 0.6, "finetune_steps": 24},
        {"path": "c", "score": 1.2, "finetuned": 0.1, "finetune_steps": 12},
    ]
    taus = finalists_report.seed_taus(finalists, {"a": 0.2, "b": 0.3, "c": 0.4})
    assert taus == {"finalists": 1, "inherited": None, "finetuned": None}


def test_seed_groups_pool_to_the_mean_and_std_of_all_seeds():
    """Two files of three seeds each: the pooled row is the six seeds' own mean and sample std."""
    import statistics

    first, second = [0.20, 0.21, 0.22], [0.19, 0.20, 0.24]

    def doc(values):
        mean, std = statistics.fmean(values), statistics.stdev(values)
        return {"rows": [{"name": "n", "cer": {"test": mean}, "cer_std": {"test": std}, "retrain_seeds": 3,
                          "cer_by_seed": {"test": values}, "dev_cer_by_epoch": {"1": 0.5}}]}  # fmt: skip

    [(name, row)] = finalists_report.pooled_rows([doc(first), doc(second)]).items()
    assert row["retrain_seeds"] == 6 and "dev_cer_by_epoch" not in row
    assert row["cer_by_seed"] == {"test": first + second}
    assert row["cer"]["test"] == pytest.approx(statistics.fmean(first + second))
    assert row["cer_std"]["test"] == pytest.approx(statistics.stdev(first + second))


def test_a_baseline_rerun_replaces_the_reference_row_it_names(kept):
    """Judged against a rerun of the baseline at 0.185, seed 0's finalists' pick (0.18) gains only
    2.7%, where against the reference's 0.20 it gained 10%."""
    _, selects, retrained, reference, cost = kept
    rerun = {"rows": [{"name": "base", "cer": {"dev": 0.185, "test": 0.185}, "cer_std": {"dev": 0.0, "test": 0.0},
                       "retrain_seeds": 3}]}  # fmt: skip
    changed = finalists_report.with_reruns(reference, finalists_report.pooled_rows([rerun]))
    assert [r["kind"] for r in changed["rows"] if r["name"] == "base"] == ["baseline"]
    assert [r["cer"]["test"] for r in reference["rows"] if r["name"] == "base"] == [0.20]  # a copy changed
    result = finalists_report.report(selects, retrained, changed, cost)
    [verdict] = [v for v in result["verdicts"] if v["subject"] == "s0-finalists-pick-b"][:1]
    assert not verdict["met"] and verdict["value"] == pytest.approx(1 - 0.18 / 0.185)


def test_pooling_skips_failed_rows_and_refuses_a_seed_counted_twice():
    row = {"name": "n", "cer": {"test": 0.2}, "cer_std": {"test": 0.01}, "retrain_seeds": 3}
    failed = {"rows": [{"name": "n", "retrain_seeds": 0}]}
    first = {"retrain": {"seeds": [0, 1, 2]}, "rows": [row]}
    assert finalists_report.pooled_rows([failed, first])["n"]["retrain_seeds"] == 3
    with pytest.raises(ValueError, match=r"n: retrain seeds \[0, 1, 2\] are in two files"):
        finalists_report.pooled_rows([first, first])
    other_sets = {"retrain": {"seeds": [3]}, "rows": [{**row, "cer": {"dev": 0.2}, "cer_std": {"dev": 0.0}}]}
    with pytest.raises(ValueError, match="measured on"):
        finalists_report.pooled_rows([first, other_sets])


def test_files_without_per_seed_values_give_each_seeds_dev_cer_from_its_curve():
    row = {"name": "n", "retrain_seeds": 2, "cer": {"dev": 0.2}, "cer_std": {"dev": 0.0},
           "dev_cer_by_epoch": [[0.5, 0.30, 0.21], [0.6, 0.19]]}  # fmt: skip
    assert finalists_report.with_dev_seeds(row)["cer_by_seed"] == {"dev": [0.21, 0.19]}
    lost = {**row, "dev_cer_by_epoch": [[0.5, 0.21], []]}  # one seed logged no epoch: no values
    assert "cer_by_seed" not in finalists_report.with_dev_seeds(lost)


def test_each_pick_is_tested_over_the_seeds_against_its_baseline(kept):
    """Seed 0's finalists' pick b (0.17-0.19) against the baseline (0.19-0.21): the least p, 1/20,
    that it is better; the report tells it in a table."""
    _, selects, retrained, reference, cost = kept
    retrained["b"] = {**retrained["b"], "cer_by_seed": {"test": [0.17, 0.18, 0.185]}}
    reference = finalists_report.with_reruns(reference, {"base": {
        "name": "base", "cer": {"dev": 0.20, "test": 0.20}, "cer_std": {"dev": 0.0, "test": 0.0},
        "retrain_seeds": 3, "cer_by_seed": {"test": [0.19, 0.20, 0.21]}}})  # fmt: skip
    result = finalists_report.report(selects, retrained, reference, cost)
    tested = result["seed_tests"]["s0-finalists-pick-b"]
    assert tested["baseline"] == "base" and tested["test"]["p_better"] == pytest.approx(1 / 20)
    assert list(result["seed_tests"]) == ["s0-finalists-pick-b"]  # the others kept no seeds' values
    text = "\n".join(finalists_report.markdown(result, reference))
    assert "| s0-finalists-pick-b | base | test | 3 v 3 | 0.05 |" in text


def test_a_null_cer_by_seed_pools_to_none():
    row = {"name": "n", "cer": {"test": 0.2}, "cer_std": {"test": 0.01}, "retrain_seeds": 3}
    first = {"retrain": {"seeds": [0, 1, 2]}, "rows": [{**row, "cer_by_seed": None}]}
    second = {"retrain": {"seeds": [3, 4, 5]}, "rows": [{**row, "cer_by_seed": {"test": [0.2, 0.2, 0.2]}}]}
    pooled = finalists_report.pooled_rows([first, second])["n"]
    assert pooled["retrain_seeds"] == 6 and "cer_by_seed" not in pooled
