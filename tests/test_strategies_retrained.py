"""scripts/strategies_retrained.py: strategies compared after retraining, on known figures."""

import json
import sys
from pathlib import Path

import pytest

from supernet.study.permutation import permutation_p

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import strategies_retrained  # noqa: E402


def _picks():
    return {
        "budget": 0.5,
        "picks": [
            {"strategy": s, "seed": seed, "path": "0-1", "score": score}
            for s, scores in {"random": (1.3, 1.2, 1.1), "evolution": (1.0, 1.1, 1.2)}.items()
            for seed, score in enumerate(scores)
        ],
    }


def _row(name, dev, test=None, seeds=3):
    cer = {"dev": dev, "test": dev + 0.02 if test is None else test}
    return {"name": name, "retrain_seeds": seeds, "cer": cer}


def test_means_over_search_seeds_and_seeds_beating_random():
    rows = [  # seed 0 under its first name (pick-STRATEGY), the others as pick-STRATEGY-sSEED
        _row("pick-random", 0.30), _row("pick-random-s1", 0.28), _row("pick-random-s2", 0.26),
        _row("pick-evolution", 0.25), _row("pick-evolution-s1", 0.29), _row("pick-evolution-s2", 0.27),
    ]  # fmt: skip
    table = strategies_retrained.compare(_picks(), rows)
    assert table["random"]["seeds"] == [0, 1, 2]
    assert table["random"]["mean"]["dev"] == pytest.approx(0.28)
    assert table["evolution"]["mean"]["dev"] == pytest.approx(0.27)
    assert table["evolution"]["vs_random"] == pytest.approx(-0.01)
    assert table["evolution"]["beat_random"] == 2  # 0.25 and 0.27 below random's 0.28; 0.29 not
    assert table["evolution"]["mean_score"] == pytest.approx(1.1)
    assert "beat_random" not in table["random"]


def test_a_pick_without_a_finished_retrain_is_left_out():
    rows = [_row("pick-random-s0", 0.3), _row("pick-random-s1", 0.2, seeds=0), _row("pick-evolution-s2", 0.1)]
    table = strategies_retrained.compare(_picks(), rows)
    assert table["random"]["seeds"] == [0] and table["evolution"]["seeds"] == [2]
    assert table["evolution"]["beat_random"] == 1


def test_main_writes_the_comparison_and_refuses_files_that_do_not_match(tmp_path, capsys):
    (tmp_path / "strategies.json").write_text(json.dumps(_picks()))
    (tmp_path / "retrain.json").write_text(
        json.dumps({"rows": [_row("pick-random-s0", 0.3), _row("pick-evolution-s0", 0.2)]})
    )
    assert (
        strategies_retrained.main(
            [
                str(tmp_path / "strategies.json"),
                str(tmp_path / "retrain.json"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    written = json.loads((tmp_path / "out" / "strategies_retrained.json").read_text())
    assert written["strategies"]["evolution"]["vs_random"] == pytest.approx(-0.1)
    assert "evolution" in capsys.readouterr().out
    (tmp_path / "other.json").write_text(json.dumps({"rows": [_row("pick-tpe-s0", 0.3)]}))
    with pytest.raises(SystemExit):
        strategies_retrained.main([str(tmp_path / "strategies.json"), str(tmp_path / "other.json")])
    with pytest.raises(SystemExit):  # test sets report, never decide
        strategies_retrained.main(
            [str(tmp_path / "strategies.json"), str(tmp_path / "retrain.json"), "--split", "test"]
        )


def test_permutation_p_counts_the_splits_no_worse_than_the_observed_one():
    assert permutation_p([1, 2, 3], [4, 5, 6]) == pytest.approx(1 / 20)
    assert permutation_p([4, 5, 6], [1, 2, 3]) == pytest.approx(1.0)
    # ranks 1, 2, 5 against 3, 4, 6: sums <= 8 are {1,2,3} {1,2,4} {1,2,5} {1,3,4}
    assert permutation_p([1, 2, 5], [3, 4, 6]) == pytest.approx(4 / 20)


def test_a_second_benchmark_adds_search_seeds_and_may_not_repeat_one(tmp_path, capsys):
    first, second = _picks(), _picks()
    for pick in second["picks"]:
        pick["seed"] += 3
    rows = [
        _row(f"pick-{s}-s{seed}", 0.3 if s == "random" else 0.2)
        for s in ("random", "evolution")
        for seed in range(6)
    ]
    for name, content in {"a.json": first, "b.json": second, "retrain.json": {"rows": rows}}.items():
        (tmp_path / name).write_text(json.dumps(content))
    files = [str(tmp_path / "a.json"), str(tmp_path / "retrain.json"), "--also", str(tmp_path / "b.json")]
    assert strategies_retrained.main([*files, "--out", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "strategies_retrained.json").read_text())["strategies"]
    assert written["evolution"]["seeds"] == [0, 1, 2, 3, 4, 5]
    assert written["evolution"]["benchmark"] == [0, 0, 0, 1, 1, 1]  # the plot colours them apart
    assert written["evolution"]["p_vs_random"] == pytest.approx(1 / 924)  # 6 against 6: C(12, 6) splits
    with pytest.raises(SystemExit):  # the same seeds twice would count a pick twice
        strategies_retrained.main([*files[:3], str(tmp_path / "a.json")])
    second["budget"] = 0.25
    (tmp_path / "b.json").write_text(json.dumps(second))
    with pytest.raises(SystemExit):
        strategies_retrained.main(files)
    assert "already in" in capsys.readouterr().err


def test_permutation_p_samples_when_the_splits_are_too_many_to_list():
    lower, other = [float(i) for i in range(12)], [float(i) + 100 for i in range(12)]  # 2.7 million splits
    p = permutation_p(lower, other, draws=2000)
    assert p == pytest.approx(1 / 2001)  # no random split beats the observed one: (0 + 1) / (draws + 1)
    same = permutation_p(lower, lower, draws=2000)
    assert 0.4 < same < 0.7


def test_the_least_p_is_one_split_when_exact_and_one_draw_more_when_sampled():
    from supernet.study.permutation import least_p

    assert least_p(3, 3) == pytest.approx(1 / 20) and least_p(6, 6) == pytest.approx(1 / 924)
    assert least_p(10, 10, exact_limit=100_000, draws=99_999) == pytest.approx(1 / 100_000)  # 184,756 splits
