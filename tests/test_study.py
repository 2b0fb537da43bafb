"""`supernet study`: the YAML's checks, Kendall's tau, random paths under a budget, and a tiny study
end to end (study.json, study.md, resume without retraining, a resumed interrupted run, the folder
of another study refused)."""

import json
from pathlib import Path

import pytest
import yaml

from supernet.archspec import ArchSpec
from supernet.commands.cli import main as cli_main
from supernet.errors import UserError
from supernet.latency import SpaceCosts
from supernet.space import SearchSpace
from supernet.study import plan
from supernet.study.config import StudyConfigError, load_config
from supernet.study.pipeline import claim, report_partial, run_study, this_machine
from supernet.study.rank import kendall_tau, ranking_quality
from tests.test_search import TINY_SPACE  # a: 3 candidates (one a skip), b: 2; dim 32

MINIMAL = {
    "corpus": "data/x",
    "space": "st_nas",
    "latency": {"table": "st_nas_cpu", "budgets": [5.0]},
    "search": {"methods": ["st"]},
}
QUICK = {
    "data.num_workers": 0,
    "trainer.enable_progress_bar": False,
    "trainer.enable_model_summary": False,
    "trainer.limit_val_batches": 1,
    "model.warmup_steps": 5,
}


def with_field(field: str, value):
    data = json.loads(json.dumps(MINIMAL))
    *parents, last = field.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("latency.table", KeyError, "field 'latency.table' is missing"),
        ("random.count", 3, "field 'random.count' is not a study field"),
        ("random.n", "three", "field 'random.n' must be an integer"),
        ("latency.budgets", [5.0, "fast"], "field 'latency.budgets[1]' names no baseline of the study"),
        ("latency.budgets", [5.0, "0.5x"], "field 'latency.budgets[1]' must be milliseconds"),
        ("latency.budgets", [-2.0], "field 'latency.budgets[0]' must be milliseconds"),
        ("latency.budgets", [], "field 'latency.budgets' must be a non-empty list"),
        ("search.methods", ["uniform"], "field 'search.methods[0]' picks no architecture by itself"),
        ("search.methods", ["sgd"], "field 'search.methods[0]' must be a search method"),
        ("select", {"strategy": "annealing"}, "field 'select.strategy' must be a selection strategy"),
        ("select", {"methods": ["darts"]}, "field 'select.methods[0]' must be one of search.methods"),
        ("select", {"batches": -1}, "field 'select.batches' must be an integer >= 0"),
        ("retrain.seeds", [0, 0], "field 'retrain.seeds' must be a non-empty list of distinct"),
        ("corpus", 3, "field 'corpus' must be a corpus path"),
        (
            "corpus",
            {"path": "d", "build": {"minutes": -1}},
            "field 'corpus.build.minutes' must be a positive",
        ),
        ("search.options", ["--trainer.max_epochs", "3"], "field 'search.options' must map option names"),
        ("ranking.metric", "wer", "field 'ranking.metric' must be one of cer, loss"),
    ],
)
def test_malformed_config_names_the_field(field, value, says):
    with pytest.raises(StudyConfigError, match="<dict>: " + says.replace("[", r"\[").replace("]", r"\]")):
        load_config(with_field(field, value))


def test_select_without_batches_needs_a_supernet_without_an_average():
    """The averaged weights carry no BatchNorm statistics: refused before the supernet trains."""
    study = {**MINIMAL, "search": {"methods": ["uniform"], "options": {"model.weight_average": 0.995}},
             "select": {"batches": 0}}  # fmt: skip
    with pytest.raises(StudyConfigError, match="'select.batches' must be 1 or more when search.options sets"):
        load_config(study)
    study["search"]["options"] = {}
    assert load_config(study)["select"]["batches"] == 0


def test_config_defaults_and_the_shipped_tiny_study():
    study = load_config(MINIMAL)
    assert study["random"] == {"n": 10, "seed": 0} and study["retrain"]["seeds"] == [0]
    assert study["corpus"] == {"path": "data/x", "build": None} and study["test_sets"] is None
    tiny = load_config("tiny")  # shipped as package data, found by name
    assert tiny["name"] == "tiny" and tiny["search"]["methods"] == ["st"] and tiny["baselines"] == ["tdnn_d"]
    assert tiny["random"]["n"] == 3 and tiny["retrain"]["seeds"] == [0, 1]


@pytest.mark.parametrize("path", sorted((Path(plan.__file__).parent.parent / "configs/study").glob("*.yaml")))
def test_every_shipped_study_loads(path):
    assert load_config(path.stem)["name"] == path.stem


def test_the_shipped_route_is_the_measured_one(tmp_path):
    """h200_route is what scripts/device/finalists.sh measured with FLOOR=0.8: h200_three's supernet
    recipe at 20 epochs (10 of warm-up), full-rate attention drawn 3x (route_seed.sh's OPTION,
    session 27), and a select of 48 predictor candidates above 0.8 of the budget, 4 finalists
    fine-tuned for 48 steps."""
    route, three = load_config("h200_route"), load_config("h200_three")
    assert route["search"]["options"] == {
        **three["search"]["options"], "trainer.max_epochs": 20, "model.warmup_epochs": 10,
        "model.method_options": {"draw_weights": {"former": 3, "down": 0.3333}},
    }  # fmt: skip
    assert route["retrain"] == three["retrain"] and route["random"] == three["random"]
    search = plan.Run("search", tmp_path / "search" / "uniform-s0", [])
    argv = plan.select_run(
        route, tmp_path, tmp_path / "data", search, tmp_path / "t.json", [("b", 0.84)]
    ).argv
    text = " ".join(argv)
    for expected in ("--strategy predictor", "--evaluations 48", "--batches 4", "--metric loss",
                     "--finalists 4 --finetune-steps 48", "--floor 0.8"):  # fmt: skip
        assert expected in text
    assert "--halving" not in argv


def test_the_open_study_is_the_route_over_the_open_space():
    """h200_open changes only the space, adds the open baselines and keeps one budget of
    h200_route's two: its figures compare with h200_route's on the same recipe and retrains. Its
    supernet draws evenly, as h200_route's did when both studies ran (session 24)."""
    route, opened = load_config("h200_route"), load_config("h200_open")
    draws = route["search"]["options"].pop("model.method_options")
    assert draws == {"draw_weights": {"former": 3, "down": 0.3333}}
    assert (route["space"], opened["space"]) == ("budget", "budget_open")
    assert opened["baselines"] == [*route["baselines"], "budget_open_tdnn_d", "budget_open_conformer_s"]
    assert opened["latency"] == {**route["latency"], "budgets": ["budget_conformer_s"]}
    differ = {"name", "space", "baselines", "latency"}
    assert {k: v for k, v in opened.items() if k not in differ} == {
        k: v for k, v in route.items() if k not in differ
    }


def test_a_malformed_study_file_is_one_line_from_the_cli(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_field("random.n", -2)))
    assert cli_main(["study", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "supernet study: error:" in err and "'random.n'" in err
    assert not (tmp_path / "out").exists()


def test_kendall_tau_known_answers():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4, 5], [3, 1, 2, 5, 4]) == pytest.approx(0.4)  # 7 concordant, 3 discordant
    assert kendall_tau([1, 2, 3], [1, 1, 2]) == pytest.approx(2 / 6**0.5)  # tau-b with a tie (scipy's value)
    assert kendall_tau([1.0], [2.0]) is None and kendall_tau([1, 2], [5, 5]) is None


def test_ranking_quality_gives_tau_per_measure_and_the_configured_one():
    standalone = {"a": 0.2, "b": 0.3, "c": 0.4}
    scores = {  # CER ties at 1.0 (blank outputs) where the loss still orders the paths
        "s1": {
            "a": {"cer": 1.0, "loss": 2.0},
            "b": {"cer": 1.0, "loss": 2.5},
            "c": {"cer": 0.9, "loss": 3.0},
        },
        "s2": {
            "a": {"cer": 0.5, "loss": 3.0},
            "b": {"cer": 0.6, "loss": 2.0},
            "c": {"cer": 0.7, "loss": 1.0},
        },
    }
    ranking, tau, taus = ranking_quality(scores, standalone, "loss")
    assert ranking[0]["by_metric"]["loss"] == 1.0 and ranking[1]["by_metric"]["loss"] == -1.0
    assert (
        ranking[0]["by_metric"]["cer"] == pytest.approx(-2 / 6**0.5) and ranking[1]["by_metric"]["cer"] == 1.0
    )
    assert tau == taus["loss"] == 0.0 and taus["cer"] == pytest.approx((1 - 2 / 6**0.5) / 2)


def test_tau_within_a_budget_is_apart_from_the_tau_over_budgets():
    # every dear path beats every cheap one and the supernet sees it, so the tau over all is high;
    # within each budget it orders the two paths of that budget backwards
    standalone = {"c1": 0.40, "c2": 0.45, "d1": 0.20, "d2": 0.25, "both": 0.30}
    loss = {"c1": 3.1, "c2": 3.0, "d1": 2.1, "d2": 2.0, "both": 2.5}
    budgets = {"c1": ["cheap"], "c2": ["cheap"], "d1": ["dear"], "d2": ["dear"], "both": ["cheap"]}
    scores = {"s": {n: {"loss": v} for n, v in loss.items()}}
    ranking, tau, _ = ranking_quality(scores, standalone, "loss", budgets)
    within = ranking[0]["within_budget"]
    assert tau == pytest.approx(0.6)  # 8 of 10 pairs concordant: only c1-c2 and d1-d2 are not
    assert within["cheap"] == {"kendall_tau": pytest.approx(1 / 3), "archs": 3}  # c1-c2 reversed
    assert within["dear"] == {"kendall_tau": -1.0, "archs": 2}
    assert ranking[0]["kendall_tau_within_budget"] == pytest.approx(-1 / 3)
    assert "within_budget" not in ranking_quality(scores, standalone, "loss")[0][0]  # no budgets given
    # a baseline that fits no budget has none (not a None label), and is left out of every group
    ranking, _, _ = ranking_quality(scores, standalone, "loss", {**budgets, "both": []})
    assert set(ranking[0]["within_budget"]) == {"cheap", "dear"}
    assert ranking[0]["within_budget"]["cheap"]["archs"] == 2


def test_the_parameter_count_is_a_reference_ranking():
    from supernet.study.rank import parameter_count_ranking

    # more parameters, lower CER for three networks; "odd" is the smallest, yet better than two of them
    standalone = {"small": 0.40, "mid": 0.30, "large": 0.20, "odd": 0.25}
    params = {"small": 1e6, "mid": 2e6, "large": 3e6, "odd": 0.5e6, "not retrained": 9e6}
    budgets = {"small": ["b"], "mid": ["b"], "large": ["b"], "odd": ["c"]}
    three = parameter_count_ranking({k: params[k] for k in ("small", "mid", "large")}, standalone)
    assert three == {"kendall_tau": 1.0, "archs": 3}
    reference = parameter_count_ranking(params, standalone, budgets)
    assert reference["archs"] == 4  # the network that was not retrained is left out
    assert reference["kendall_tau"] == pytest.approx(2 / 6)  # odd: discordant with small and mid
    assert reference["within_budget"]["b"] == {"kendall_tau": 1.0, "archs": 3}
    assert reference["within_budget"]["c"] == {"kendall_tau": None, "archs": 1}
    assert reference["kendall_tau_within_budget"] == 1.0


def test_the_predicted_latency_is_a_reference_ranking_where_more_is_better():
    from supernet.study.rank import more_is_better_ranking

    standalone = {"cheap": 0.40, "mid": 0.30, "dear": 0.35, "unmeasured": 0.25}  # dear loses to mid
    ms = {"cheap": 0.2, "mid": 0.5, "dear": 0.8, "unmeasured": None}  # no latency: left out
    assert more_is_better_ranking(ms, standalone) == {"kendall_tau": pytest.approx(1 / 3), "archs": 3}


def test_the_top_choice_is_where_a_rankings_first_network_trained():
    from supernet.study.rank import top_choice

    standalone = {"a": 0.30, "b": 0.20, "c": 0.25, "d": 0.40, "e": 0.10}
    budgets = {"a": ["low"], "b": ["low"], "c": ["low"], "d": ["high"], "e": ["high"], "none": []}
    score = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 0.5, "e": None, "none": 0.1}  # e: not scored
    chosen = top_choice(score, standalone, budgets)
    assert chosen["within_budget"]["low"] == {
        "top": "a",
        "place": 3,
        "archs": 3,
        "regret": pytest.approx(0.10),
    }
    assert chosen["within_budget"]["high"] == {"top": "d", "place": 1, "archs": 1, "regret": 0.0}
    assert chosen["regret"] == pytest.approx(0.05)
    tied = top_choice({"a": 1.0, "c": 1.0}, standalone, budgets)["within_budget"]["low"]
    assert tied["top"] == "a" and tied["place"] == 2  # ties go by name; c trained better
    assert top_choice({}, standalone, budgets) == {"within_budget": {}, "regret": None}
    diverged = top_choice({"a": float("nan"), "c": 2.0}, standalone, budgets)["within_budget"]["low"]
    assert diverged["top"] == "c" and diverged["archs"] == 1  # a NaN score is no choice


def test_the_top_choices_of_the_free_measures_are_the_largest_and_the_slowest_network():
    from supernet.study.pipeline import _top_choices

    def row(name, kind, params, ms):
        return {"name": name, "kind": kind, "params": params, "predicted_ms": ms, "budget": "b"}

    rows = [
        row("pick", "searched", 9e6, 0.9),  # left out: its supernet's own choice
        row("big", "random", 5e6, 0.3),
        row("slow", "random", 1e6, 0.8),
        row("tdnn", "baseline", 2e6, 0.5),
        row("unscored", "random", 8e6, 0.95),  # no supernet scored it: left out, as from the taus
    ]
    standalone = {"pick": 0.10, "big": 0.30, "slow": 0.20, "tdnn": 0.25, "unscored": 0.05}
    budgets = {name: ["b"] for name in standalone}
    losses = {"pick": 1.0, "big": 1.1, "slow": 1.3, "tdnn": 1.2}
    scores = {"s0": {n: {"loss": loss} for n, loss in losses.items()}}
    choices = _top_choices(rows, standalone, budgets, scores, "loss")
    assert choices["params"]["within_budget"]["b"] == {
        "top": "big", "place": 3, "archs": 3, "regret": pytest.approx(0.10)
    }  # fmt: skip
    assert choices["latency"]["within_budget"]["b"] == {"top": "slow", "place": 1, "archs": 3, "regret": 0.0}
    assert choices["supernet"]["s0"]["within_budget"]["b"]["top"] == "big"  # the pick's loss is lower


def test_the_top_choice_lines_name_each_rankings_place_and_regret():
    from supernet.study.report import _top_choice_lines

    low = {"within_budget": {"low": {"top": "a", "place": 3, "archs": 9, "regret": 0.037}}, "regret": 0.037}
    lines = _top_choice_lines({"supernet": {"uniform-s0-any": low}, "params": low})
    assert lines[-2:] == [
        "- the supernet `uniform-s0-any`'s: 3 of 9 at low (+3.7 points)",
        "- the parameter count's: 3 of 9 at low (+3.7 points)",
    ]
    assert _top_choice_lines({}) == []  # a report from before the measure


def test_a_report_of_an_older_study_prints_the_parameter_count_alone():
    from supernet.study.report import _free_ranking_lines

    (line,) = _free_ranking_lines({"params": {"kendall_tau": 0.4, "archs": 5}})  # no latency ranking yet
    assert line.startswith("The parameter count alone") and "0.400 over 5" in line


def test_how_far_dev_cer_still_fell_at_the_end_of_the_retrains(tmp_path):
    from supernet.study.report import _late_drop_line, dev_cer_by_epoch, late_drop

    log = tmp_path / "run" / "csv" / "metrics.csv"
    log.parent.mkdir(parents=True)
    # 8 epochs, resumed after epoch 3: the earlier part's final pass sits under epoch 4, then
    # epoch 4's own row follows it; the row after the last epoch is the final pass
    rows = [
        (0, 0.9),
        (1, 0.7),
        (2, 0.6),
        (3, 0.5),
        (4, 0.5),
        (4, 0.45),
        (5, 0.4),
        (6, 0.35),
        (7, 0.3),
        (8, 0.3),
    ]
    log.write_text("dev/cer,epoch,train/loss\n" + "".join(f"{c},{e},\n" for e, c in rows) + ",8,1.0\n")
    curve = dev_cer_by_epoch(tmp_path / "run")
    assert curve == {0: 0.9, 1: 0.7, 2: 0.6, 3: 0.5, 4: 0.45, 5: 0.4, 6: 0.35, 7: 0.3, 8: 0.3}
    assert late_drop([(curve, 8)]) == pytest.approx(0.4 - 0.3)  # epoch 5 to epoch 7: the last quarter
    assert late_drop([(curve, 8), ({7: 0.3}, 8)]) == pytest.approx(0.1)  # a run without both ends: left out
    # a seed that early stopping ended after epoch 3 (its row 4 is its final pass): its own quarter
    stopped = {0: 0.9, 1: 0.6, 2: 0.55, 3: 0.56, 4: 0.55}
    assert late_drop([(curve, 8), (stopped, 4)]) == pytest.approx((0.1 + (0.55 - 0.56)) / 2)
    assert late_drop([(curve, 1)]) is None and late_drop([(curve, None)]) is None
    assert dev_cer_by_epoch(tmp_path / "no run") == {}
    # study.md says so, whether the retrains fell or not, and when no retrain logged enough to tell
    assert "## Is the retrain long enough?" in _late_drop_line([{"name": "a", "dev_cer_late_drop": 0.1}])
    text = " ".join(_late_drop_line([{"name": "a", "dev_cer_late_drop": 0.1}, {"name": "b"}]))
    assert "still fell by 10.00 points" in text and "over 1 networks" in text
    assert "Not measured" in " ".join(_late_drop_line([{"name": "a", "dev_cer_late_drop": None}]))
    assert _late_drop_line([]) == []


def test_distinct_networks_merge_a_network_retrained_for_several_budgets():
    from supernet.study.rank import distinct_networks

    def row(name, layers, budget, cer=0.3):
        arch = {"name": name, "features": "fbank", "feature_dim": 20, "dim": 32, "input": "linear"}
        arch |= {"layers": layers, "head": "linear", "dropout": 0.0}
        return {"name": name, "arch": arch, "budget": budget, "cer": {"dev": cer}}

    rows = [
        row("baseline", ["tdnn-k3-d1"], "p50"),
        row("baseline", ["tdnn-k3-d1"], "p100"),  # a baseline sits in every budget
        row("random-p50-0", ["tdnn-k3-d2"], "p50", 0.4),
        row("random-p100-3", ["tdnn-k3-d2"], "p100", 0.4),  # the same network drawn at two budgets
        row("too-big", ["tdnn-k5-d2"], None),  # a baseline that fits no budget
        {**row("unfinished", ["tdnn-k3-d1", "tdnn-k3-d1"], "p50"), "cer": {"dev": None}},
    ]
    networks = distinct_networks(rows)
    assert sorted(networks) == ["baseline", "random-p50-0", "too-big"]
    assert networks["baseline"]["budgets"] == ["p50", "p100"]
    assert networks["random-p50-0"]["budgets"] == ["p50", "p100"] and networks["random-p50-0"]["cer"] == 0.4
    assert networks["too-big"]["budgets"] == [] and networks["too-big"]["spec"].layers == ["tdnn-k5-d2"]


def test_random_paths_are_seeded_distinct_and_within_the_budget():
    space = SearchSpace(TINY_SPACE)
    costs = SpaceCosts("ms", 1.0, {"a": [1.0, 3.0, 2.0], "b": [0.5, 1.0]})  # paths cost 2.5 .. 5.0
    paths, note = plan.random_paths(space, costs, 4.0, 3, seed=0)
    assert note is None and len(paths) == 3 and len({tuple(p.values()) for p in paths}) == 3
    assert all(costs.at(p) <= 4.0 for p in paths)
    assert paths == plan.random_paths(space, costs, 4.0, 3, seed=0)[0]
    assert any(plan.random_paths(space, costs, 4.0, 3, seed=s)[0] != paths for s in range(1, 6))
    few, note = plan.random_paths(space, costs, 3.5, 3, seed=0)  # exactly three paths fit
    assert sorted(tuple(p.values()) for p in few) == [(0, 0), (0, 1), (2, 0)] and note is None
    few, note = plan.random_paths(space, costs, 2.6, 3, seed=0)
    assert few == [{"a": 0, "b": 0}] and "only 1 of the space's 6 paths" in note
    budgets = plan.resolve_budgets(["p50", 4.5, "p100"], plan.path_costs(space, costs))
    assert [label for label, _ in budgets] == ["p50", "4.5ms", "p100"]
    assert [ms for _, ms in budgets] == pytest.approx([3.5, 4.5, 5.0], rel=1e-8, abs=0)
    assert budgets[2][1] >= 5.0 and budgets[1][1] == 4.5  # a budget from a cost admits that cost
    named = plan.resolve_budgets(["hand", "0.5xhand"], [], {"hand": 3.0})
    assert [label for label, _ in named] == ["hand", "0.5xhand"]
    assert [ms for _, ms in named] == pytest.approx([3.0, 1.5], rel=1e-8, abs=0)


def test_the_most_parameters_control_is_the_largest_path_within_the_band():
    """Known answers on TINY_SPACE: a's tdnn-k5-d2 has the most parameters, its skip none; b's two
    candidates have the same, so the cheaper one is kept."""
    from supernet.latency.costs import param_costs

    space = SearchSpace(TINY_SPACE)
    costs = SpaceCosts("ms", 1.0, {"a": [1.0, 3.0, 2.0], "b": [0.5, 1.0]})  # paths cost 2.5 .. 5.0
    params = param_costs(space, 2)
    assert params.at({"a": 1, "b": 0}) > params.at({"a": 0, "b": 0}) > params.at({"a": 2, "b": 0})
    assert params.at({"a": 0, "b": 0}) == params.at({"a": 0, "b": 1})

    def most(budget, floor=None):
        return plan.most_parameters_path(space, costs, budget, floor, draws=200, seed=0)

    assert most(5.0) == ({"a": 1, "b": 0}, None)  # 4.5 ms, not 5.0 for as many parameters
    assert most(4.0) == ({"a": 0, "b": 0}, None)  # k5 is over; k3 at 2.5 ms
    assert most(4.0, floor=0.8) == ({"a": 2, "b": 0}, None)  # the band 3.2-4.0 ms holds the skips alone
    path, note = most(2.0)
    assert path is None and "no path of the space within 2.000 ms" in note
    with pytest.raises(StudyConfigError, match="field 'controls.draws' must be an integer >= 1"):
        load_config(with_field("controls.draws", 0))
    assert load_config(MINIMAL)["controls"] == {"params_max": False, "draws": 200_000}


# --- a tiny study, end to end --------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from supernet.data.corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"), langs=("en",), minutes=0.6, seed=3, workers=1)


@pytest.fixture(scope="module")
def study_config(corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("config")
    (folder / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    baseline = {**TINY_SPACE, "name": "hand", "layers": ["tdnn-k3-d1", "tdnn-k3-d1-s3", "tdnn-k3-d2"]}
    (folder / "hand.yaml").write_text(yaml.safe_dump(baseline))
    return {
        "name": "unit",
        "corpus": str(corpus),
        "space": str(folder / "space.yaml"),
        "latency": {"table": "st_nas_cpu", "profile": True, "budgets": ["p100"], "repeats": 2, "rounds": 1},
        "search": {
            "methods": ["st", "uniform"],
            "seeds": [0],
            "options": {**QUICK, "trainer.max_epochs": 2, "model.warmup_epochs": 1},
        },
        "select": {"strategy": "random", "evaluations": 3, "batches": 1, "methods": ["uniform"]},
        "random": {"n": 2, "seed": 0},
        "controls": {"params_max": True, "draws": 200},
        "baselines": [str(folder / "hand.yaml")],
        "retrain": {"seeds": [0, 1], "options": {**QUICK, "trainer.max_epochs": 1}},
        "ranking": {"batches": 2},
    }


@pytest.fixture(scope="module")
def study(study_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "run"
    return out, run_study(study_config, out)


def test_study_writes_study_json_and_md(study):
    out, summary = study
    assert json.loads((out / "study.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["config"]["name"] == "unit" and summary["device"]["device"] == "cpu"
    assert summary["kendall_tau"] is None or -1 <= summary["kendall_tau"] <= 1
    rows = {r["name"]: r for r in summary["rows"]}
    kinds = ["baseline", "control", "random", "random", "searched", "searched"]
    assert sorted(r["kind"] for r in rows.values()) == kinds
    # the control: the most parameters within the budget, judged against every pick
    assert rows["params-max-p100"]["params"] == max(
        r["params"] for r in rows.values() if r["kind"] != "baseline"
    )
    controlled = [v for v in summary["verdicts"] if "most-parameters" in v["target"]]
    assert sorted(v["subject"] for v in controlled) == sorted(
        n for n, r in rows.items() if r["kind"] == "searched"
    )
    keys = {"name", "kind", "method", "search_seed", "budget_ms", "params", "latency_ms", "predicted_ms"}
    keys |= {"cer", "cer_std", "wer", "retrain_seeds", "arch"}
    for row in rows.values():
        assert keys <= set(row)
        assert set(row["cer"]) == set(row["cer_std"]) == set(row["wer"]) == {"dev", "test", "test_en"}
        assert row["retrain_seeds"] == 2 and row["latency_ms"] > 0 and row["params"] > 0
        for split, values in row["cer_by_seed"].items():  # each seed's, for the permutation tests
            assert len(values) == 2 and sum(values) / 2 == pytest.approx(row["cer"][split])
        assert row["budget_ms"] == summary["budgets"][0]["ms"] and row["predicted_ms"] <= row["budget_ms"]
        others = [
            r
            for r in rows.values()
            if r["kind"] != "control" and r["arch"]["layers"] == row["arch"]["layers"]
        ]
        if row["kind"] == "control" and not others:  # not scored: the taus stay comparable without it
            assert row["supernet_cer"] is None and row["supernet_loss"] is None
            continue
        assert row["supernet_cer"] is not None  # every one of them is a path of the space
        assert row["supernet_loss"] > 0
    searched = rows["st-s0-p100"]
    assert searched["method"] == "st" and searched["search_seed"] == 0
    assert searched["rank_among_random"]["of"] == 3
    picked = rows["uniform-s0-any-random-p100"]  # the random strategy's pick from the uniform supernet
    assert picked["method"] == "uniform+random" and picked["kind"] == "searched"
    assert (out / "select" / "uniform-s0-any-random" / "select.json").is_file()
    assert [r["archs"] for r in summary["ranking"]] == 2 * [
        len({json.dumps(r["arch"]["layers"]) for r in rows.values() if r["kind"] != "control"})
    ]  # both supernets (st's and uniform's) score every network but the control
    assert set(summary["kendall_tau_by_metric"]) == {"cer", "loss"}
    assert summary["kendall_tau"] == summary["kendall_tau_by_metric"]["cer"]  # ranking.metric's default
    for search in summary["ranking"]:  # one budget: within it is the tau over every network
        assert search["within_budget"]["p100"]["kendall_tau"] == search["kendall_tau"]
        assert search["kendall_tau_within_budget"] == search["kendall_tau"]
    costs = summary["costs"]
    networks = {json.dumps(r["arch"]["layers"]) for r in rows.values()}  # one retrain each, 2 seeds
    assert costs["retrain_seconds"]["runs"] == 2 * len(networks) and costs["retrain_seconds"]["mean"] > 0
    assert {s["run"]: s["budget"] for s in costs["searches"]} == {
        "st-s0-p100": "p100",
        "uniform-s0-any": None,
    }
    assert all(s["seconds"] > 0 and s["vs_retrain"] > 0 for s in costs["searches"])
    assert [s["run"] for s in costs["selects"]] == ["uniform-s0-any-random"] and costs["selects"][0][
        "seconds"
    ] > 0
    (one,) = costs["one_supernet_vs_per_budget"]  # the uniform supernet and its select against st's search
    seconds = {s["run"]: s["seconds"] for s in costs["searches"]}
    assert one["seconds"] == pytest.approx(
        seconds["uniform-s0-any"] + costs["selects"][0]["seconds"], abs=0.01
    )
    assert one["method"] == "st" and one["searches_seconds"] == pytest.approx(seconds["st-s0-p100"])
    assert costs["parallel"] == 1 and json.loads((out / "sharing.json").read_text()) == {
        "search": [1], "select": [1], "retrain": [1], "at_once": {"search": [1], "select": [1], "retrain": [1]},
    }  # fmt: skip
    assert costs["retrain_alone"] is None and not (out / "alone").exists()  # not asked for
    targets = {v["target"] for v in summary["verdicts"]}
    assert len(targets) == 7 and all(v["met"] in (True, False, None) for v in summary["verdicts"])
    text = (out / "study.md").read_text()
    assert "most-parameters path" in text  # the control's verdicts
    assert "## Does the search win?" in text
    assert "## What the runs cost" in text and "/ one retrain" in text
    assert "## Budget p100" in text and "`st-s0-p100`" in text and "ranks" in text and "Kendall tau" in text
    assert "dev CER %" in text and "test CER %" in text
    assert ("Within one budget" in text) == (summary["kendall_tau_within_budget"] is not None)
    assert all("dev_cer_late_drop" in row for row in rows.values())  # None: one epoch has no last quarter
    assert all(
        len(row["dev_cer_by_epoch"]) == 2 and len(row["dev_cer_by_epoch"][0]) == 2 for row in rows.values()
    )
    assert summary["rank_by_epoch"]["epochs"] == 1 and summary["rank_by_epoch"]["seeds"] == 2
    assert "## How early does training alone rank the networks?\n\nNot measured" in text  # one epoch
    for measure in ("params", "latency"):  # the free rankings, over the networks the supernets rank
        assert summary["reference_ranking"][measure]["archs"] == summary["ranking"][0]["archs"]
    assert "The parameter count alone" in text and "The predicted latency alone" in text
    choices, kinds = summary["top_choice"], {row["name"]: row["kind"] for row in rows.values()}
    for choice in [*choices["supernet"].values(), choices["params"], choices["latency"]]:
        for chosen in choice["within_budget"].values():  # a random path or a baseline of the budget
            assert kinds[chosen["top"]] in ("random", "baseline") and 1 <= chosen["place"] <= chosen["archs"]
            assert chosen["regret"] >= 0 and (chosen["regret"] == 0) == (chosen["place"] == 1)
    assert set(choices["supernet"]) == {r["search"] for r in summary["ranking"]}
    ranked = [*choices["supernet"].values(), choices["params"], choices["latency"]]
    assert all(choice["within_budget"] for choice in ranked)  # not vacuous
    assert "puts first among a budget's random paths" in text


def test_running_it_again_retrains_nothing(study, study_config, capsys, monkeypatch):
    out, _ = study
    runs = sorted(out.glob("*/*/*/run.json")) + sorted(out.glob("search/*/run.json"))
    assert len(runs) >= 5  # one search, at least two networks (a pick may repeat another) x two seeds
    before = {p: p.stat().st_mtime_ns for p in runs}
    checkpoints = {p: p.stat().st_mtime_ns for p in out.rglob("*.ckpt")}

    def drawn_again(*args, **kwargs):
        raise AssertionError("the control was drawn again: arch/ holds it")

    monkeypatch.setattr(plan, "most_parameters_path", drawn_again)
    run_study(study_config, out)
    said = capsys.readouterr().out
    assert "search: 2 of 2 finished already, 0 to run" in said and "select: 1 of 1 finished already" in said
    assert "0 to run" in said.split("retrain:")[1]
    assert {p: p.stat().st_mtime_ns for p in runs} == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.ckpt")} == checkpoints


def test_a_finished_retrain_of_another_network_under_the_name_is_refused(study, study_config):
    """A pick that changed on a resume (or a folder of an older layout) keeps the name: the finished
    retrain of the old network is not reported as the new one's."""
    out, _ = study
    run = sorted(out.glob("retrain/*/seed0"))[0]
    kept = (run / "arch.yaml").read_text()
    other = yaml.safe_load(kept)
    other["layers"] = list(reversed(other["layers"]))
    (run / "arch.yaml").write_text(yaml.safe_dump(other))
    try:
        with pytest.raises(UserError, match="trained another network than"):
            run_study(study_config, out)
    finally:
        (run / "arch.yaml").write_text(kept)


def test_an_interrupted_run_resumes_from_its_checkpoint(study, study_config):
    out, _ = study
    marker = next(iter(sorted(out.glob("retrain/*/seed1/run.json"))))
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps({**record, "status": "running"}))  # killed after its last checkpoint
    run_study(study_config, out)
    record = json.loads(marker.read_text())
    assert record["status"] == "done" and record["resumed_from"].endswith("last.ckpt")


def test_a_partial_report_runs_nothing_and_needs_no_checkpoint(study, study_config, tmp_path):
    import shutil

    from supernet.study.pipeline import report_partial

    out, summary = study
    copy = tmp_path / "moved"  # as a stopped study comes back from another machine: no checkpoints
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("*.ckpt", "study.json", "study.md"))
    stopped = sorted(copy.glob("retrain/*/seed1/run.json"))[0]
    stopped.write_text(json.dumps({**json.loads(stopped.read_text()), "status": "running"}))
    space = (copy / "space.yaml").stat().st_mtime_ns
    partial = report_partial(study_config, copy)
    name = stopped.parent.parent.name
    assert partial["partial"] and partial["missing"] == [name]
    full = {r["name"]: r for r in summary["rows"]}
    rows = {r["name"]: r for r in partial["rows"]}
    assert name not in rows and rows
    for n, r in rows.items():  # the same figures and supernet scores as the finished study's
        assert (r["cer"], r["supernet_loss"]) == (full[n]["cer"], full[n]["supernet_loss"])
    assert (copy / "space.yaml").stat().st_mtime_ns == space  # it writes nothing but its report
    assert all(
        r["latency_ms"] == full[n]["latency_ms"] > 0 for n, r in rows.items()
    )  # measured before retrains
    assert partial["device"] == summary["device"] and partial["verdicts"]
    (copy / "latency_measured.json").unlink()  # a study stopped before it measured: the table's prediction
    unmeasured = report_partial(study_config, copy)
    assert all(r["latency_ms"] is None and r["predicted_ms"] > 0 for r in unmeasured["rows"])
    assert unmeasured["device"] is None
    text = (copy / "partial.md").read_text()
    assert "(partial)" in text and f"`{name}`" in text.split("\n\n")[1]
    assert not (copy / "study.json").exists() and not list(copy.rglob("*.ckpt"))
    pytest.importorskip("matplotlib")
    assert (copy / "plots_partial" / "cer_vs_latency.png").is_file() and "](plots_partial/" in text
    (copy / "arch" / "st-s0-p100.yaml").unlink()  # a search stopped before its pick
    assert "st-s0-p100 (not picked yet)" in report_partial(study_config, copy)["missing"]
    with pytest.raises(UserError, match="no study.yaml"):
        report_partial(study_config, tmp_path / "nothing")


def test_alone_retrain_times_one_more_retrain_and_judges_the_searches_against_it(
    study, study_config, tmp_path
):
    """A finished study resumed with ``alone_retrain`` and ``alone_route`` (a copy at the same path,
    the original put back after): only the retrain timed alone runs (the stage's first network, its
    first seed, under alone/, not counted among the study's retrains); each search's route (the
    uniform supernet with its select) is set against it. The route timed again (the uniform
    supernet, its select and the same retrain, in alone_route/) judges that supernet instead."""
    import shutil

    out, summary = study
    kept = tmp_path / "kept"
    shutil.move(out, kept)
    try:
        shutil.copytree(kept, out, ignore=shutil.ignore_patterns("*.ckpt"))
        again = run_study(study_config, out, alone_retrain=True, alone_route=True)
        [metrics] = list((out / "alone").glob("*/seed0/metrics.json"))
        seconds = json.loads(metrics.read_text())["train_seconds"]
        text = (out / "study.md").read_text()
        route_runs = sorted(
            str(p.relative_to(out / "alone_route")) for p in (out / "alone_route").glob("*/*")
        )
        route_retrain = out / "alone_route/retrain/uniform-s0-any-random-p100/seed0"
        route_seconds = (
            json.loads((out / "alone_route/search/uniform-s0-any/search.json").read_text())["search_seconds"],
            json.loads((out / "alone_route/select/uniform-s0-any-random/select.json").read_text())["seconds"],
            json.loads((route_retrain / "metrics.json").read_text())["train_seconds"],
        )
        resumed = run_study(study_config, out)["costs"]["route_alone"]  # kept: read, not run again
        machine = json.loads((out / "alone_route/machine.json").read_text())
        marker = out / "alone_route/search/uniform-s0-any/from_an_earlier_call"
        marker.touch()
        shutil.rmtree(route_retrain)  # a route stopped before its retrain: resumed on this machine
        resumed_here = run_study(study_config, out, alone_route=True)["costs"]["route_alone"]
        kept_search = marker.exists()
        shutil.rmtree(route_retrain)  # stopped again, and now resumed on another machine: from its start
        (out / "alone_route/machine.json").write_text(json.dumps({**machine, "host": "another"}))
        rerun = run_study(study_config, out, alone_route=True)["costs"]["route_alone"]
        started_over = not marker.exists()
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.move(kept, out)
    alone = again["costs"]["retrain_alone"]
    assert alone == {"run": f"{metrics.parent.parent.name}/seed0", "seconds": seconds, "capped": False}
    assert metrics.parent.parent.name == "st-s0-p100"  # a searched pick comes first in the stage
    assert (
        again["costs"]["retrain_seconds"]["runs"] == summary["costs"]["retrain_seconds"]["runs"]
    )  # not one more
    by_run = {s["run"]: s for s in again["costs"]["searches"]}
    select_seconds = again["costs"]["selects"][0]["seconds"]
    uniform = by_run["uniform-s0-any"]
    assert uniform["with_selects"] and uniform["route_seconds"] == pytest.approx(
        uniform["seconds"] + select_seconds
    )
    assert uniform["vs_retrain_alone"] == pytest.approx(uniform["route_seconds"] / seconds, abs=1e-3)
    # one budget's route: the supernet, the select's start and that budget's own seconds
    [select] = again["costs"]["selects"]
    assert sorted(uniform["one_budget"]) == sorted(select["budgets"])
    for label, one in uniform["one_budget"].items():
        own = select["budget_seconds"][label]
        assert 0 < own < select["seconds"]
        assert one["seconds"] == pytest.approx(uniform["seconds"] + select["start_seconds"] + own, abs=0.01)
        assert one["seconds"] <= uniform["route_seconds"] + 0.01
        assert one["vs_retrain_alone"] == pytest.approx(one["seconds"] / seconds, abs=1e-3)
        assert f"for {label} alone" in text
    assert "each budget's own: " in text  # the select's line splits its seconds too
    assert by_run["st-s0-p100"]["route_seconds"] == by_run["st-s0-p100"]["seconds"]  # picks by itself
    assert all(s["ran_alone"] for s in by_run.values())  # --parallel 1: every stage one run at a time
    assert "One retrain timed alone" in text
    assert route_runs == [
        "retrain/uniform-s0-any-random-p100", "search/uniform-s0-any", "select/uniform-s0-any-random"
    ]  # fmt: skip
    route = again["costs"]["route_alone"]
    supernet_s, select_s, retrain_s = route_seconds
    assert route["search"] == "uniform-s0-any" and route["retrain"]["seconds"] == retrain_s
    assert route["route_seconds"] == pytest.approx(supernet_s + select_s, abs=0.01)
    assert route["vs_retrain_alone"] == pytest.approx((supernet_s + select_s) / retrain_s, abs=1e-3)
    assert sorted(route["one_budget"]) == sorted(select["budgets"])
    assert resumed == route
    assert machine == this_machine()
    assert kept_search and resumed_here["supernet_seconds"] == supernet_s  # only the retrain ran again
    assert started_over and rerun is not None and rerun["search"] == "uniform-s0-any"
    [judged] = [v for v in again["verdicts"] if "retrain" in v["target"] and v["subject"] == "uniform-s0-any"]
    assert judged["value"] == route["vs_retrain_alone"] and "--alone-route" in judged["detail"]
    assert "Timed again in one go on one machine" in text


def test_a_study_that_lost_its_checkpoints_resumes_its_retrains(study, study_config, tmp_path, monkeypatch):
    """As a stopped study comes back from another machine (its folder without checkpoints, at the
    same path): the picks come from arch/, the kept scores and latencies stand, and only the
    unfinished retrain runs; without kept scores the searches are left out of the ranking, named;
    on a machine that does not match the table, latency is left for later, named."""
    import shutil

    from supernet.latency import LatencyTableError
    from supernet.study import pipeline

    out, summary = study
    kept = tmp_path / "kept"
    shutil.move(out, kept)
    try:
        shutil.copytree(kept, out, ignore=shutil.ignore_patterns("*.ckpt"))
        stopped = sorted(out.glob("retrain/*/seed1/run.json"))[0]
        stopped.write_text(json.dumps({**json.loads(stopped.read_text()), "status": "running"}))
        resumed = run_study(study_config, out)
        assert json.loads(stopped.read_text())["status"] == "done"
        figures = lambda s: {r["name"]: (r["latency_ms"], r["supernet_loss"]) for r in s["rows"]}  # noqa: E731
        assert figures(resumed) == figures(summary) and not resumed["notes"]
        (out / "supernet_scores.json").unlink()
        unranked = run_study(study_config, out)
        assert unranked["ranking"] == [] and unranked["kendall_tau"] is None
        assert sorted(n.split(":")[0] for n in unranked["notes"]) == ["st-s0-p100", "uniform-s0-any"]
        assert all("checkpoint" in n for n in unranked["notes"])
        (out / "latency_measured.json").unlink()

        def another_card(*_):
            raise LatencyTableError("the table was measured on another card")

        monkeypatch.setattr(pipeline, "_measure", another_card)
        unmeasured = run_study(study_config, out)
        assert all(r["latency_ms"] is None for r in unmeasured["rows"]) and unmeasured["device"] is None
        assert any(
            "not measured on this machine: the table was measured on another card" in n
            for n in unmeasured["notes"]
        )
        (out / "arch" / "st-s0-p100.yaml").unlink()
        with pytest.raises(UserError, match="no pick for st-s0-p100"):
            run_study(study_config, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.move(kept, out)


def test_tau_from_cached_select_scores_known_answers(study, tmp_path):
    """scripts/tau_from_select.py ranks a study's networks by cached scores (a scores.json, or a
    select.json's candidates): scores equal to the stand-alone dev CER give tau 1, their negation
    -1; all tied, undefined; caches of two supernets, or too few networks scored, are refused."""
    import subprocess
    import sys

    from supernet.select.problem import key_of

    out, summary = study
    space = SearchSpace.load(out / "space.yaml")
    keys = {key_of(space.index_of(ArchSpec.from_dict(r["arch"]))): r["cer"]["dev"] for r in summary["rows"]}
    script = Path(__file__).parent.parent / "scripts" / "tau_from_select.py"

    def tau_of(*caches: dict) -> subprocess.CompletedProcess:
        paths = []
        for i, cache in enumerate(caches):
            paths.append(tmp_path / f"cache{i}.json")
            paths[-1].write_text(json.dumps(cache))
        argv = ["--space", out / "space.yaml", "--report", out / "study.json", "--caches", *paths]
        return subprocess.run([sys.executable, script, *map(str, argv)], capture_output=True, text=True)

    ckpt = {"ckpt": "a.ckpt", "metric": "loss"}
    as_scores = {"settings": ckpt, "scores": keys}
    as_select = {**ckpt, "candidates": [{"path": k, "score": -cer} for k, cer in keys.items()]}
    assert f"over {len(keys)} networks: 1.000" in tau_of(as_scores).stdout
    assert f"over {len(keys)} networks: -1.000" in tau_of(as_select).stdout
    assert "networks: undefined" in tau_of({"scores": dict.fromkeys(keys, 1.0)}).stdout
    other = tau_of(as_scores, {**as_select, "ckpt": "b.ckpt"})
    assert other.returncode != 0 and "several supernets" in other.stderr
    few = tau_of({"scores": dict(list(keys.items())[:2])})
    assert few.returncode != 0 and "too few for tau" in few.stderr


def test_a_folder_of_another_study_is_refused_unless_overwrite(study, study_config, tmp_path):
    from supernet.errors import UserError

    out, _ = study
    other = {**load_config(study_config), "name": "other"}
    with pytest.raises(UserError, match="holds another study .*'name' differs.*--overwrite"):
        run_study({**study_config, "name": "other"}, out)
    assert (out / "study.json").is_file()
    stranger = tmp_path / "stranger"
    (stranger / "retrain").mkdir(parents=True)
    with pytest.raises(UserError, match="not a study's"):
        claim(stranger, other, overwrite=True)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "mine.txt").write_text("kept")
    claim(copy, load_config(study_config), overwrite=False)
    (copy / "search").mkdir()
    claim(copy, other, overwrite=True)  # the old study's files go, the user's stay
    assert not (copy / "search").exists() and (copy / "mine.txt").read_text() == "kept"
    assert yaml.safe_load((copy / "study.yaml").read_text())["name"] == "other"


def test_a_study_begun_before_a_field_was_added_still_resumes(study_config, tmp_path):
    """A kept study.yaml without ``controls`` (written before it existed) is this study at its
    defaults, not another one; a kept value that differs still is."""
    study = load_config(study_config)
    old = {k: v for k, v in study.items() if k != "controls"}
    out = tmp_path / "old"
    (out / "search").mkdir(parents=True)
    (out / "study.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    at_defaults = {**study, "controls": {"params_max": False, "draws": 200_000}}
    with pytest.raises(UserError, match="field 'controls.params_max' differs"):
        report_partial({**at_defaults, "controls": {"params_max": True}}, out)
    with pytest.raises(UserError, match="missing; the study stopped before it measured"):
        report_partial(at_defaults, out)  # compared at its defaults, it goes on (to its missing table)
    claim(out, at_defaults, overwrite=False)  # resumes
    assert (out / "search").is_dir()
    with pytest.raises(UserError, match="field 'controls.params_max' differs"):
        claim(out, {**at_defaults, "controls": {"params_max": True, "draws": 200_000}}, overwrite=False)
    assert load_config(old) == at_defaults  # idempotent on a loaded config


def test_costs_compare_one_supernet_with_a_search_per_budget(tmp_path):
    """Known answer: a 100 s supernet and one 20 s select for two budgets against two 80 s st
    searches -> 0.75."""
    from supernet.study import costs
    from supernet.study.plan import Run

    def run(kind, name, **record):
        out = tmp_path / kind / name
        out.mkdir(parents=True)
        file = {"search": "search.json", "select": "select.json", "retrain": "metrics.json"}[kind]
        (out / file).write_text(json.dumps(record))
        return Run(kind, out, [])

    a, b = ("a", 1.0), ("b", 2.0)
    searches = {
        ("uniform", 0, None): run("search", "uniform-s0-any", search_seconds=100.0),
        ("st", 0, a): run("search", "st-s0-a", search_seconds=80.0, epochs=4),
        ("st", 0, b): run("search", "st-s0-b", search_seconds=80.0, epochs=10),
    }
    selects = {("uniform", 0, None): (run("select", "uniform-s0-any-evolution", seconds=20.0), [a, b])}
    retrains = {"k": [run("retrain", "r0", train_seconds=40.0), run("retrain", "r1", train_seconds=60.0)]}
    study = {"search": {"options": {"trainer.max_epochs": 10}}, "retrain": {"options": {}}}
    found = costs.collect(study, searches, selects, retrains)
    assert (
        found["retrain_seconds"] == {"mean": 50.0, "runs": 2, "capped": 0} and found["retrain_alone"] is None
    )
    assert [s["capped"] for s in found["searches"]] == [None, True, False]  # epochs unknown, 4 and 10 of 10
    assert [s["vs_retrain"] for s in found["searches"]] == [2.0, 1.6, 1.6]
    assert [s["route_vs_retrain"] for s in found["searches"]] == [
        2.4,
        1.6,
        1.6,
    ]  # the supernet with its select
    assert found["one_supernet_vs_per_budget"] == [
        {"supernet": "uniform-s0-any", "budgets": 2, "seconds": 120.0, "method": "st", "searches": 2,
         "searches_seconds": 160.0, "ratio": 0.75}
    ]  # fmt: skip
    text = "\n".join(costs.markdown(found))
    assert "ratio 0.75" in text and "| `st-s0-a` | st | a | 4 (time cap) | 80 s | 1.60 |" in text

    alone = Run("retrain", tmp_path / "alone" / "hand" / "seed0", [])  # a 60 s retrain alone
    alone.out.mkdir(parents=True)
    (alone.out / "metrics.json").write_text(json.dumps({"train_seconds": 60.0}))
    (tmp_path / "alone" / "a-stale-one" / "seed0").mkdir(parents=True)  # not the planned run: not read
    (tmp_path / "alone" / "a-stale-one" / "seed0" / "metrics.json").write_text(
        json.dumps({"train_seconds": 1.0})
    )
    found = costs.collect(study, searches, selects, retrains, ["search"], alone)
    assert found["retrain_alone"] == {"run": "hand/seed0", "seconds": 60.0, "capped": False}
    routes = {
        s["run"]: (s["route_seconds"], s["vs_retrain_alone"], s["ran_alone"]) for s in found["searches"]
    }
    assert routes == {
        "uniform-s0-any": (120.0, 2.0, False),  # with its select, whose stage was not alone
        "st-s0-a": (80.0, 1.333, True), "st-s0-b": (80.0, 1.333, True),
    }  # fmt: skip
    assert "- `uniform-s0-any` + selects: 120 s, 2.00x (not alone in its stage" in "\n".join(
        costs.markdown(found)
    )


def test_sharing_is_kept_before_runs_start_and_a_stage_is_alone_only_if_it_ran_one_at_a_time(tmp_path):
    """A call stopped midway has left its record: the call that resumes the last run of a stage
    then cannot make the stage look alone; calls not on record (a file from before ``at_once``, or
    none at all) ran at most the stage's runs, or its recorded --parallel, at once; a stage of
    one planned run is alone whatever the calls recorded."""
    from types import SimpleNamespace

    from supernet.study import pipeline

    def kept():
        return json.loads((tmp_path / "sharing.json").read_text())

    two = SimpleNamespace(searches={1: None, 2: None}, selects={1: None, 2: None})
    one = SimpleNamespace(searches={1: None}, selects={1: None})  # one supernet, one select
    pipeline._record_sharing(tmp_path, "search", 36, 2, 2)  # two searches started side by side, then stopped
    pipeline._record_sharing(tmp_path, "search", 36, 1, 2)  # the resume runs the one left
    pipeline._record_sharing(tmp_path, "select", 36, 2, 2)
    assert kept() == {"at_once": {"search": [1, 2], "select": [2]}, "search": [36], "select": [36]}
    assert pipeline._alone_stages(tmp_path, two) == [] and pipeline._sharing(tmp_path) == 36
    assert pipeline._alone_stages(tmp_path, one) == ["search", "select"]

    (tmp_path / "sharing.json").write_text(json.dumps({"search": [36], "retrain": [36]}))  # before at_once
    pipeline._record_sharing(tmp_path, "search", 36, 1, 2)  # resumed: the earlier call ran up to 2
    pipeline._record_sharing(tmp_path, "select", 36, 1, 2)  # stopped with no record at all, resumed
    assert kept()["at_once"] == {"search": [1, 2], "select": [1, 2]}
    assert pipeline._alone_stages(tmp_path, two) == []
    (tmp_path / "sharing.json").write_text(json.dumps({"search": [1], "select": [1], "retrain": [36]}))
    assert pipeline._alone_stages(tmp_path, two) == ["search", "select"]  # --parallel 1: one at a time


def test_run_study_keeps_each_stages_sharing_before_its_runs_start(study_config, tmp_path, monkeypatch):
    """With --parallel 36 and a call stopped inside the search stage (here: before any search ran),
    sharing.json already says how the stage's runs were started: 2 searches at once."""
    from supernet.study import pipeline

    def stopped(runs, parallel, what, starting=None):
        starting(len(runs), len(runs))
        raise SystemExit(143)  # as timeout's SIGTERM ends a device call

    monkeypatch.setattr(pipeline, "execute", stopped)
    with pytest.raises(SystemExit):
        run_study(study_config, tmp_path / "run", parallel=36)
    kept = json.loads((tmp_path / "run" / "sharing.json").read_text())
    assert kept == {"search": [36], "at_once": {"search": [2]}}


def test_execute_says_how_many_runs_start_before_any_does(tmp_path, monkeypatch):
    from supernet.study import execute as execute_module
    from supernet.study.plan import Run

    started, heard = [], []
    monkeypatch.setattr(execute_module, "_in_process", lambda run: started.append(run) or "failed")
    run = Run("retrain", tmp_path / "r", [])
    assert execute_module.execute([], 4, "search", lambda *n: heard.append(n)) == 0 and heard == []  # nothing
    with pytest.raises(UserError, match="1 of 1 retrain run"):
        execute_module.execute([run], 1, "retrain", lambda *n: heard.append((*n, len(started))))
    assert heard == [(1, 1, 0)] and started == [run]  # heard before the run started; kept though it failed


def test_fit_seconds_counts_the_segments_before_a_resume():
    """Lightning's Timer restores the training time of the run's earlier segments from its
    checkpoint; fit_seconds adds it to this process's part."""
    from types import SimpleNamespace

    from pytorch_lightning.callbacks import Timer

    from supernet.run_folder import fit_seconds

    timer = Timer(duration="00:00:10:00")
    timer.load_state_dict({"time_elapsed": {"train": 250.0}})
    assert fit_seconds(SimpleNamespace(callbacks=[timer]), 40.0) == 290.0
    assert (
        fit_seconds(SimpleNamespace(callbacks=[Timer(duration="00:00:10:00")]), 40.0) == 40.0
    )  # never resumed
    assert fit_seconds(SimpleNamespace(callbacks=[]), 40.0) == 40.0


STOPPED_STUDY = """
import sys
from pathlib import Path

from supernet.study import execute
from supernet.study.plan import Run

folder = Path(sys.argv[1])
sleep = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
execute.command_line = lambda run: [sys.executable, "-c", sleep, str(run.out / "pid")]
execute.execute([Run("retrain", folder / f"run{i}", []) for i in range(3)], 2, "retrain")
"""


def test_a_stopped_study_stops_its_runs_and_starts_no_more(tmp_path):
    """SIGTERM (timeout, preemption) to a study running two runs side by side: both runs end, the
    third never starts, and the study exits 143; no orphan is left to race the resumed study."""
    import os
    import signal
    import subprocess
    import sys
    import time

    study = subprocess.Popen(
        [sys.executable, "-c", STOPPED_STUDY, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    pids = [tmp_path / f"run{i}" / "pid" for i in range(2)]
    deadline = time.monotonic() + 60
    while not all(p.is_file() and p.read_text() for p in pids):
        assert time.monotonic() < deadline and study.poll() is None, "the two runs never started"
        time.sleep(0.1)
    study.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    study.send_signal(signal.SIGTERM)  # a second one (a scheduler, `timeout`'s group signal) is ignored
    out, _ = study.communicate(timeout=60)
    # 143: the study's own exit; -15: the second signal came after its handler was put back
    assert study.returncode in (143, -signal.SIGTERM) and out.count("stopped (SIGTERM)") == 1
    for pid in (int(p.read_text()) for p in pids):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (tmp_path / "run2" / "pid").exists()


def test_one_select_picks_for_every_budget_of_its_supernet(tmp_path):
    """A uniform supernet gets one `select --budgets` (the budgets share its scores); each budget's
    pick is read from its own entry of select.json and named RUN-LABEL."""
    study = load_config({**load_config("tiny"), "select": {"strategy": "evolution", "methods": ["st"]}})
    search = plan.Run("search", tmp_path / "search" / "uniform-s0-any", [])
    run = plan.select_run(
        study, tmp_path, tmp_path / "data", search, tmp_path / "lut.json", [("a", 1.5), ("b", 3.0)]
    )
    assert run.out == tmp_path / "select" / "uniform-s0-any-evolution"
    at = run.argv.index("--budgets")
    assert run.argv[at + 1 : at + 3] == ["1.5", "3.0"] and "--budget" not in run.argv
    assert "--finalists" not in run.argv  # off by default: the argv of a study begun before it
    tuned = {**study, "select": {**study["select"], "finalists": 4, "finetune_steps": 48}}
    argv = plan.select_run(
        tuned, tmp_path, tmp_path / "data", search, tmp_path / "lut.json", [("a", 1.5)]
    ).argv
    assert argv[-4:] == ["--finalists", "4", "--finetune-steps", "48"]
    halving = {**study, "select": {**study["select"], "finalists": 8, "finetune_steps": 12, "halving": True}}
    argv = plan.select_run(
        halving, tmp_path, tmp_path / "data", search, tmp_path / "lut.json", [("a", 1.5)]
    ).argv
    assert argv[-5:] == ["--finalists", "8", "--finetune-steps", "12", "--halving"]
    band = load_config({**load_config("tiny"), "select": {"methods": ["st"], "floor": 0.8}})
    argv = plan.select_run(
        band, tmp_path, tmp_path / "data", search, tmp_path / "lut.json", [("a", 1.5)]
    ).argv
    assert argv[-2:] == ["--floor", "0.8"] and "--floor" not in run.argv  # off by default
    with pytest.raises(UserError, match="select.floor"):
        load_config({**load_config("tiny"), "select": {"methods": ["st"], "floor": 1}})
    with pytest.raises(UserError, match="select.finalists"):  # at load, before a supernet trains
        load_config({**load_config("tiny"), "select": {"methods": ["st"], "finalists": 2, "halving": True}})
    with pytest.raises(UserError, match="finalists"):
        load_config({**load_config("tiny"), "select": {"methods": ["st"], "finalists": 0}})
    run.out.mkdir(parents=True)
    arch = {**TINY_SPACE, "name": "x", "layers": ["tdnn-k3-d1", "tdnn-k3-d1-s3", "tdnn-k3-d2"]}
    for label in ("1.5", "3"):
        (run.out / f"budget_{label}").mkdir()
        (run.out / f"budget_{label}" / "arch.yaml").write_text(yaml.safe_dump(arch))
    best = [
        {"budget": 1.5, "path": "0-0", "arch": "budget_1.5/arch.yaml"},
        {"budget": 3.0, "path": None, "note": "no feasible path was scored"},
    ]
    (run.out / "select.json").write_text(json.dumps({"best": best}))
    assert plan.selected_arch(run, "a", 1.5).name == "uniform-s0-any-evolution-a"
    with pytest.raises(UserError, match="budget b: no feasible path was scored"):
        plan.selected_arch(run, "b", 3.0)


def test_a_study_resumes_with_more_retrain_seeds_but_not_fewer(study_config, tmp_path):
    """Seeds may be added after a study's own (one run with fewer when device time is short, grown
    later); dropping, replacing or reordering them is another study (the first seed is the one the
    alone timings retrain)."""
    from supernet.errors import UserError

    config = load_config(study_config)
    seeds = config["retrain"]["seeds"]
    grown = {**config, "retrain": {**config["retrain"], "seeds": [*seeds, max(seeds) + 1]}}
    out = tmp_path / "grown"
    claim(out, config, overwrite=False)
    (out / "retrain").mkdir()
    claim(out, grown, overwrite=False)
    assert (out / "retrain").is_dir()
    assert yaml.safe_load((out / "study.yaml").read_text())["retrain"]["seeds"] == grown["retrain"]["seeds"]
    for fewer in (
        [],
        [max(seeds) + 2],
        [max(seeds) + 2, *grown["retrain"]["seeds"]],
        grown["retrain"]["seeds"][::-1],
    ):
        changed = {**config, "retrain": {**config["retrain"], "seeds": fewer}}
        with pytest.raises(UserError, match="'retrain.seeds' differs"):
            claim(out, changed, overwrite=False)


def test_before_retrains_keeps_scores_and_latencies_and_a_rerun_retrains(study_config, tmp_path):
    """A study split over two machines: the first call stops with what needs the supernets'
    checkpoints and the GPU kept; the second retrains and reports, without searching again."""
    out = tmp_path / "split"
    kept = run_study(study_config, out, before_retrains=True)
    assert kept["before_retrains"] and not (out / "retrain").exists() and not (out / "study.json").exists()
    scores = json.loads((out / "supernet_scores.json").read_text())["scores"]
    assert scores and {name for by in scores.values() for name in by} <= set(kept["networks"])
    assert set(json.loads((out / "latency_measured.json").read_text())["ms"]) == set(kept["networks"])
    kept_files = [
        out / "supernet_scores.json",
        out / "latency_measured.json",
        *(out / "search").glob("*/search.json"),
    ]
    assert len(kept_files) > 2
    stamps = {p: p.stat().st_mtime for p in kept_files}
    summary = run_study(study_config, out)  # nothing searched, scored or measured again
    assert {p: p.stat().st_mtime for p in kept_files} == stamps
    assert set(kept["networks"]) <= {r["name"] for r in summary["rows"]}  # rows also name equal picks
