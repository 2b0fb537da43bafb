"""Known answers for the study's verdicts: each search-issue target met, missed or undecidable."""

from supernet.study import verdict


def row(name, kind, cer, std=0.01, method=None, predicted=1.0, budget="b", budget_ms=1.0):
    return {
        "name": name, "kind": kind, "method": method, "budget": budget, "budget_ms": budget_ms,
        "predicted_ms": predicted, "cer": {"dev": cer, "test": cer}, "cer_std": {"dev": std, "test": std},
        "retrain_seeds": 3,
    }  # fmt: skip


def summary(rows, ranking=(), costs=None):
    return {"rows": rows, "budgets": [{"budget": "b", "ms": 1.0}], "ranking": list(ranking), "costs": costs}


RANDOM = [row(f"random-{i}", "random", 0.30 + 0.01 * i) for i in range(8)]  # 30% .. 37%, median 33.5%


def by_target(verdicts, words):
    return [v for v in verdicts if words in v["target"]]


def test_a_pick_that_wins_meets_both_targets_and_the_best_fitting_baseline_is_judged():
    baselines = [
        row("small", "baseline", 0.40, predicted=0.5),
        row("big", "baseline", 0.20, predicted=1.5),  # better, but over the budget: not a rival
    ]
    out = verdict.judge(summary([row("st", "searched", 0.30, method="st"), *RANDOM, *baselines]))
    (base,) = by_target(out, "baseline")
    assert base["met"] and abs(base["value"] - 0.25) < 1e-9 and "`small`" in base["detail"]
    (rand,) = by_target(out, "random")
    assert rand["met"] and rand["value"] == 0.30 and rand["threshold"] < 0.33  # the top quartile's bound
    assert "0% of them better" in rand["detail"]


def test_a_pick_at_the_median_misses_and_a_gain_under_five_percent_misses():
    rows = [row("st", "searched", 0.345, method="st"), *RANDOM, row("base", "baseline", 0.35)]
    out = verdict.judge(summary(rows))
    (base,) = by_target(out, "baseline")
    assert base["met"] is False and abs(base["value"] - 0.5 / 35) < 1e-9
    (rand,) = by_target(out, "random")
    assert rand["met"] is False and "62% of them better" in rand["detail"]  # 30% .. 34% beat it


def test_without_a_fitting_baseline_or_enough_random_paths_it_cannot_tell():
    out = verdict.judge(summary([row("st", "searched", 0.3, method="st"), *RANDOM[:3]]))
    assert [v["met"] for v in out] == [None, None]


def test_one_supernets_pick_within_two_standard_errors_is_within_noise():
    rows = [row("st", "searched", 0.30, std=0.03, method="st"), *RANDOM]
    near = row("uniform-evolution", "searched", 0.32, std=0.03, method="uniform+evolution")
    far = row("uniform-random", "searched", 0.40, std=0.03, method="uniform+random")
    out = by_target(verdict.judge(summary([*rows, near, far])), "within noise")
    assert {v["subject"]: v["met"] for v in out} == {"uniform-evolution": True, "uniform-random": False}


def test_with_one_retrain_seed_only_a_better_pick_is_within_noise():
    one = {"retrain_seeds": 1}
    rows = [{**row("st", "searched", 0.30, method="st"), **one}, *RANDOM]
    worse = {**row("uniform-a", "searched", 0.3001, method="uniform+evolution"), **one}
    better = {**row("uniform-b", "searched", 0.29, method="uniform+random"), **one}
    per_budget_pick = row("st-evolution", "searched", 0.5, method="st+evolution")  # not from one supernet
    out = by_target(verdict.judge(summary([*rows, worse, better, per_budget_pick])), "within noise")
    assert {v["subject"]: v["met"] for v in out} == {"uniform-a": None, "uniform-b": True}


def test_tau_and_costs_are_judged_against_their_thresholds():
    costs = {
        "parallel": 1,
        "searches": [{"run": "st", "vs_retrain": 1.5, "capped": False}, {"run": "slow", "vs_retrain": 2.5}],
        "one_supernet_vs_per_budget": [
            {
                "supernet": "u",
                "ratio": 0.4,
                "seconds": 40,
                "searches": 3,
                "method": "st",
                "searches_seconds": 100,
            }
        ],
    }
    ranking = [
        {"search": "st", "kendall_tau": 0.6, "archs": 12},
        {"search": "u", "kendall_tau": None, "archs": 1},
    ]
    out = verdict.judge(summary([], ranking, costs))
    assert [(v["subject"], v["met"]) for v in out] == [
        ("st", True),
        ("u", None),
        ("st", True),
        ("slow", False),
        ("u", True),
    ]
    text = "\n".join(verdict.markdown(out))
    assert "**missed** (2.5 vs 2)" in text and "cannot tell" in text
    for caveat in ({"parallel": 4}, {"parallel": None}, {"retrain_seconds": {"capped": 2}}):
        out = verdict.judge(summary([], (), {**costs, **caveat}))  # not like for like, or capped
        assert [v["met"] for v in out if "retrain" in v["target"]] == [None, None]
    capped = {**costs, "searches": [{"run": "u", "vs_retrain": 1.0, "capped": True}]}  # the supernet itself
    assert verdict.judge(summary([], (), capped))[-1]["met"] is None


def test_a_study_side_by_side_judges_a_search_alone_in_its_stage_against_a_retrain_timed_alone():
    """--parallel 36 alone cannot tell; with a retrain timed alone, a supernet whose training and
    selects each ran alone is judged on both (1.65x: met), one that shared its stage is not, nor
    is any when the alone retrain hit its time cap."""
    alone = {"run": "budget_tdnn_d/seed0", "seconds": 130.0, "capped": False}
    searches = [
        {"run": "u", "vs_retrain": 0.43, "capped": False, "route_seconds": 214.5, "with_selects": True,
         "ran_alone": True, "vs_retrain_alone": 1.65},
        {"run": "shared", "vs_retrain": 0.4, "capped": False, "route_seconds": 100.0, "with_selects": False,
         "ran_alone": False, "vs_retrain_alone": 0.77},
        {"run": "slow", "vs_retrain": 1.0, "capped": False, "route_seconds": 300.0, "with_selects": False,
         "ran_alone": True, "vs_retrain_alone": 2.31},
    ]  # fmt: skip
    costs = {"parallel": 36, "searches": searches, "one_supernet_vs_per_budget": []}

    def judged(costs):
        return {v["subject"]: v for v in verdict.judge(summary([], (), costs)) if "retrain" in v["target"]}

    assert {s: v["met"] for s, v in judged(costs).items()} == {"u": None, "shared": None, "slow": None}
    out = judged({**costs, "retrain_alone": alone})
    assert {s: (v["met"], v["value"]) for s, v in out.items()} == {
        "u": (True, 1.65), "shared": (None, 0.4), "slow": (False, 2.31)
    }  # fmt: skip
    assert (
        "the supernet and its selects (every budget) ran alone in their stages, 214 s" in out["u"]["detail"]
    )
    assert "130 s" in out["u"]["detail"] and "--parallel 36" in out["shared"]["detail"]
    capped = judged({**costs, "retrain_alone": {**alone, "capped": True}})
    assert {v["met"] for v in capped.values()} == {None}
    one_at_a_time = {"parallel": 1, "one_supernet_vs_per_budget": [], "searches": [
        {**searches[0], "route_vs_retrain": 2.2}, {**searches[1], "route_vs_retrain": 0.4},
    ]}  # fmt: skip
    out = judged(one_at_a_time)  # a supernet counts with its selects; a search that picks, alone
    assert {s: (v["met"], v["value"]) for s, v in out.items()} == {"u": (False, 2.2), "shared": (True, 0.4)}
    assert out["u"]["detail"] == "the supernet with its selects (every budget)"
    unfinished = {**one_at_a_time, "searches": [{**searches[0], "route_vs_retrain": None}]}  # select not done
    [v] = judged(unfinished).values()  # not its training alone, which would flatter it
    assert v["met"] is None and v["value"] is None and "not known yet" in v["detail"]


def test_a_route_timed_again_on_one_machine_outranks_the_stages_and_the_alone_retrain():
    """--alone-route's figures judge the search it repeated, whatever the study's own stages say
    (2.12x across two machines, 1.63x on one); another search keeps its own verdict; a capped
    route cannot tell."""
    select = {"seconds": 58.4}
    route = {
        "search": "u", "supernet_seconds": 76.3, "select": select, "route_seconds": 134.7,
        "retrain": {"run": "pick/seed0", "seconds": 82.7, "capped": False}, "capped": False,
        "vs_retrain_alone": 1.629, "one_budget": {"b": {"seconds": 113.1, "vs_retrain_alone": 1.367}},
    }  # fmt: skip
    searches = [
        {"run": "u", "vs_retrain": 0.43, "capped": False, "route_seconds": 214.0, "with_selects": True,
         "ran_alone": True, "vs_retrain_alone": 2.12, "route_vs_retrain": 2.12},
        {"run": "other", "vs_retrain": 0.4, "capped": False, "route_seconds": 100.0, "with_selects": False,
         "ran_alone": True, "vs_retrain_alone": 0.99},
    ]  # fmt: skip
    alone = {"run": "pick/seed0", "seconds": 101.0, "capped": False}
    costs = {"parallel": 36, "searches": searches, "one_supernet_vs_per_budget": [], "retrain_alone": alone}

    def judged(costs):
        return {v["subject"]: v for v in verdict.judge(summary([], (), costs)) if "retrain" in v["target"]}

    assert {s: (v["met"], v["value"]) for s, v in judged(costs).items()} == {
        "u": (False, 2.12), "other": (True, 0.99)
    }  # fmt: skip
    out = judged({**costs, "route_alone": route})
    assert {s: (v["met"], v["value"]) for s, v in out.items()} == {"u": (True, 1.629), "other": (True, 0.99)}
    detail = out["u"]["detail"]
    assert "--alone-route" in detail and "76 s" in detail and "58 s" in detail and "83 s" in detail
    assert "b 1.37x" in detail  # one budget's route beside it
    slow = {**route, "vs_retrain_alone": 2.4}
    assert judged({**costs, "route_alone": slow})["u"]["met"] is False
    capped = {**route, "capped": True}
    v = judged({**costs, "route_alone": capped})["u"]
    assert v["met"] is None and "time cap" in v["detail"]


def test_picks_of_several_searches_are_tallied_per_budget_and_one_pick_is_not():
    """Two searches' picks in one budget: each pick target counted (1 of 2 beat the baseline by
    5%, the miss named) with the picks' mean figure (gains 5/35 and 1/35: mean 3/35 = 0.0857; test
    CER 0.30 and 0.34: mean 0.32 against the quartile's bound); with one pick a budget there is
    nothing to tally."""
    base = row("base", "baseline", 0.35)
    picks = [row("st-0", "searched", 0.30, method="st"), row("st-1", "searched", 0.34, method="st")]
    out = verdict.judge(summary([*picks, *RANDOM, base]))
    assert {v["budget"] for v in out} == {"b"}
    text = "\n".join(verdict.markdown(out))
    assert (
        "| beats the best baseline that fits by >= 5% relative test CER | b | 1 of 2 | 0.0857 vs 0.05 | `st-1` |"
        in text
    )
    assert (
        "| beats the random paths' median and lies in their top quartile | b | 1 of 2 | 0.32 vs 0.318 | `st-1` |"
        in text
    )
    one_pick = verdict.judge(summary([picks[0], *RANDOM, base]))
    assert verdict.tally(one_pick) == []
    assert not any("Across the searches" in line for line in verdict.markdown(one_pick))


def test_with_each_seeds_cer_the_gain_over_the_baseline_gets_permutation_p_values():
    """3 seeds against 3: every pick seed below every baseline seed gives the least p, 1/20; a pick
    interleaved with the baseline ([1, 2, 5] against [3, 4, 6] hundredths) gives 4/20; against the
    baseline scaled to 0.95 the 5% question is never easier than the plain one."""
    pick = {**row("st", "searched", 0.19, method="st"), "cer_by_seed": {"test": [0.18, 0.19, 0.20]}}
    base = {**row("base", "baseline", 0.23), "cer_by_seed": {"test": [0.22, 0.23, 0.24]}}
    (won,) = by_target(verdict.judge(summary([pick, *RANDOM, base])), "baseline")
    assert won["p_better"] == won["p_gain"] == won["p_least"] == 1 / 20 and won["seeds"] == [3, 3]
    assert (
        "permutation p over the seeds 0.05 (null: not better), 0.05 (null: not 5% better); 3 against 3"
        in won["detail"]
    )
    pick["cer_by_seed"]["test"], base["cer_by_seed"]["test"] = [0.01, 0.02, 0.05], [0.03, 0.04, 0.06]
    (mixed,) = by_target(verdict.judge(summary([pick, *RANDOM, base])), "baseline")
    assert mixed["p_better"] == 4 / 20 and mixed["p_gain"] >= mixed["p_better"]
    del base["cer_by_seed"]  # a row of an older report: no test, no keys
    (old,) = by_target(verdict.judge(summary([pick, *RANDOM, base])), "baseline")
    assert "p_better" not in old and "permutation" not in old["detail"]


def test_a_pick_is_judged_against_the_most_parameters_control_of_its_budget():
    pick = {**row("st", "searched", 0.30, method="st"), "cer_by_seed": {"test": [0.29, 0.30, 0.31]}}
    control = {**row("params-max-b", "control", 0.36), "cer_by_seed": {"test": [0.35, 0.36, 0.37]}}
    (beats,) = by_target(verdict.judge(summary([pick, *RANDOM, control])), "most-parameters")
    assert beats["met"] and abs(beats["value"] - 1 / 6) < 1e-9 and "`params-max-b`" in beats["detail"]
    assert beats["p_better"] == 0.05  # 3 against 3 seeds, every one of ours below every one of theirs
    (loses,) = by_target(
        verdict.judge(summary([{**pick, "cer": {"dev": 0.4, "test": 0.4}}, control])), "most-par"
    )
    assert loses["met"] is False and loses["value"] < 0
    assert not by_target(verdict.judge(summary([pick, *RANDOM])), "most-parameters")  # no control: no verdict
