"""`supernet select`: strategies find known answers on a small synthetic problem (4 edges x 4
candidates, a score with a unique optimum, costs that add up, a budget), never score an infeasible
path, replay with the same seed and from a cache; and the command picks a path per budget from a
tiny uniform supernet."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import yaml

from supernet.commands.cli import main as cli_main
from supernet.errors import UserError
from supernet.select.problem import Problem, key_of
from supernet.select.score import SupernetScorer
from supernet.select.strategies.base import build_strategy, load_strategies

EDGES = {f"e{i}": 4 for i in range(4)}
TARGET, WEIGHTS = (1, 2, 0, 1), (1.0, 1.1, 1.2, 1.3)
COSTS = [[0, 1, 2, 3], [0, 1, 3, 4], [0, 2, 2, 3], [0, 1, 2, 2]]
BUDGET = 6.0  # 127 of the 256 paths fit; the optimum (score 0) costs 5
PATHS = [dict(zip(EDGES, c)) for c in itertools.product(range(4), repeat=4)]


def score(path):
    return sum(w * (path[e] - t) ** 2 for e, w, t in zip(EDGES, WEIGHTS, TARGET))


def cost(path):
    return float(sum(COSTS[i][path[e]] for i, e in enumerate(EDGES)))


class Counting:
    def __init__(self):
        self.calls = []

    def __call__(self, path):
        self.calls.append(dict(path))
        return score(path)


def problem(budget=BUDGET, **kwargs):
    return Problem(EDGES, Counting(), cost, budget, **kwargs)


def evaluations_to_optimum(p):
    """Distinct paths scored up to and including the first optimum; None if never reached."""
    seen = []
    for h in p.history:
        if key_of(h["path"]) not in seen and math.isfinite(h["score"]):
            seen.append(key_of(h["path"]))
        if h["score"] == 0:
            return len(seen)
    return None


def test_the_synthetic_problem_has_one_feasible_optimum():
    best = [p for p in PATHS if score(p) == 0]
    assert best == [dict(zip(EDGES, TARGET))] and cost(best[0]) <= BUDGET
    assert sum(cost(p) <= BUDGET for p in PATHS) == 127


def test_the_reward_trades_score_for_cost_and_its_optimum_is_found():
    """MnasNet's soft constraint: minimise score + lambda * ln(cost). With lambda large enough the
    reward's optimum is a cheaper path than the score's (known answer by brute force)."""
    lam = 4.0

    def latency(path):  # a latency is never zero
        return 1.0 + cost(path)

    def reward(path):
        return score(path) + lam * math.log(latency(path))

    soft = Problem(EDGES, Counting(), latency, None, reward_lambda=lam)
    want = min(PATHS, key=reward)
    assert score(want) > 0 and latency(want) < latency(dict(zip(EDGES, TARGET))), (
        "the reward moves the optimum"
    )
    assert soft.evaluate(want) == pytest.approx(reward(want))
    build_strategy("evolution").run(soft, 120, seed=0)
    path, objective = soft.best()
    assert path == want and objective == pytest.approx(reward(want))
    assert problem(budget=None).evaluate(want) == score(want)  # without lambda: the score itself


def test_a_prior_from_alphas_steers_every_random_draw():
    import random

    prior = {e: [0.01] * 4 for e in EDGES}
    for e, t in zip(EDGES, TARGET):
        prior[e][t] = 0.97
    steered, rng = problem(prior=prior), random.Random(0)
    hits = sum(steered.random_path(rng) == dict(zip(EDGES, TARGET)) for _ in range(1000))
    assert 0.85 < hits / 1000 < 0.92  # 0.97^4 = 0.885
    build_strategy("random").run(steered, 3, seed=0)
    assert evaluations_to_optimum(steered) is not None  # uniform draws: 1 in 127 feasible paths


# stated: the evaluations each strategy may spend (measured need per seed 0, 1, 2 in the comments)
@pytest.mark.parametrize(
    "name, evaluations",
    [
        ("random", 120),  # found after 4, 112, 98
        ("evolution", 60),  # found after 4, 46, 36
        ("tpe", 30),  # found after 17, 20, 15
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_strategies_find_the_optimum_within_their_evaluations(name, evaluations, seed):
    p = problem()
    build_strategy(name).run(p, evaluations, seed)
    assert p.best() == (dict(zip(EDGES, TARGET)), 0.0)
    assert evaluations_to_optimum(p) <= evaluations and p.evaluations <= evaluations
    calls = p.score_fn.calls
    assert all(cost(c) <= BUDGET for c in calls)  # infeasible paths are never scored
    assert len(calls) == len({key_of(c) for c in calls}) == p.evaluations  # each path scored once


@pytest.mark.parametrize("name", ["random", "evolution", "tpe", "nsga2", "rl", "predictor"])
def test_a_floor_keeps_every_scored_path_in_the_band_and_the_best_of_it_is_found(name):
    floor = 5.0  # the optimum costs 5: it stays in the band; 74 paths fit [5, 6]
    p = problem(floor=floor)
    build_strategy(name).run(p, 40, 0)
    assert all(floor <= cost(c) <= BUDGET for c in p.score_fn.calls)
    band = [q for q in PATHS if floor <= cost(q) <= BUDGET]
    if name in ("random", "predictor"):  # draws over the whole band: 40 distinct of its paths
        assert p.evaluations == min(40, len(band))
    if name in ("random", "evolution", "predictor"):
        assert p.best() == (dict(zip(EDGES, TARGET)), 0.0)
    thin = problem(budget=2.0, floor=2.0)  # 8 paths cost exactly 2; the cheapest path (0) is below
    build_strategy(name).run(thin, 10, 0)
    assert all(cost(c) == 2.0 for c in thin.score_fn.calls)
    # direct draws reach every path of the band (8); Optuna's samplers propose out of it, are told
    # so unscored, and stop after `patience` such proposals
    assert thin.evaluations == 8 if name not in ("tpe", "nsga2") else thin.evaluations >= 1


def brute_front(paths):
    front, best = [], math.inf
    for p in sorted(paths, key=lambda p: (cost(p), score(p))):
        if score(p) < best:
            front.append((cost(p), score(p)))
            best = score(p)
    return front


@pytest.mark.parametrize("budget", [None, BUDGET])
def test_nsga2_finds_the_whole_brute_force_pareto_front(budget):
    p = problem(budget)
    build_strategy("nsga2").run(p, 150, 0)
    feasible = [q for q in PATHS if budget is None or cost(q) <= budget]
    assert [(h["cost"], h["score"]) for h in p.front()] == brute_front(feasible)
    assert all(budget is None or cost(c) <= budget for c in p.score_fn.calls)


@pytest.mark.parametrize("name", ["random", "evolution", "tpe", "nsga2"])
def test_same_seed_same_history_and_a_cache_replays_without_scoring(name):
    first, second = problem(), problem()
    build_strategy(name).run(first, 20, 7)
    build_strategy(name).run(second, 20, 7)
    assert first.history == second.history
    resumed = problem(stored=dict(first.cache))  # the interrupted run's cache.json
    build_strategy(name).run(resumed, 20, 7)
    assert resumed.history == first.history and resumed.score_fn.calls == []


def test_a_space_smaller_than_the_evaluations_ends():
    for name in ("random", "evolution"):
        p = problem(budget=1.0)  # 4 paths fit
        build_strategy(name).run(p, 50, 0)
        assert p.evaluations == sum(cost(q) <= 1.0 for q in PATHS) == 4


def test_unknown_strategies_and_options_are_user_errors():
    assert {"random", "evolution", "tpe", "nsga2"} <= set(load_strategies())
    with pytest.raises(UserError, match="unknown 'nope'; choose one of .*evolution.*random"):
        build_strategy("nope")
    with pytest.raises(UserError, match="'evolution' does not take size .*population"):
        build_strategy("evolution", {"size": 3})


def test_tpe_without_optuna_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    strategy = build_strategy("tpe")  # registered without importing optuna
    with pytest.raises(UserError, match=r"pip install 'supernet\[select\]'"):
        strategy.run(problem(), 5, 0)


# --- the command, on a tiny uniform supernet ----------------------------------------------------
@pytest.fixture(scope="module")
def uniform_run(tmp_path_factory):
    from supernet.data.corpus import build_corpus
    from tests.test_search import TINY_SPACE, run_search

    corpus = build_corpus(tmp_path_factory.mktemp("corpus"), langs=("en",), minutes=0.6, seed=3, workers=1)
    space = tmp_path_factory.mktemp("space") / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    out = tmp_path_factory.mktemp("search") / "run"
    run_search(corpus, space, out, 1, method="uniform")
    return corpus, out / "checkpoints" / "last.ckpt"


def path_params(ckpt) -> list[float]:
    """The parameter count of every path of the checkpoint's space (what ``--target params`` costs)."""
    from supernet.search.extract import load_search_checkpoint, search_objective

    space, _, hparams = load_search_checkpoint(ckpt)
    params = search_objective(space, hparams).params
    return [
        params.at(dict(zip(space.edges, c)))
        for c in itertools.product(*(range(len(v)) for v in space.edges.values()))
    ]


def test_select_picks_a_path_per_budget_from_a_uniform_supernet(uniform_run, tmp_path, capsys):
    from supernet.archspec import ArchSpec
    from supernet.search.extract import load_search_checkpoint
    from supernet.space import SearchSpace

    corpus, ckpt = uniform_run
    space, _, hparams = load_search_checkpoint(ckpt)
    costs = path_params(ckpt)
    low, high = sorted(set(costs))[1], max(costs)
    out = tmp_path / "select"
    argv = ["select", str(ckpt), "--data", str(corpus), "--strategy", "evolution", "--option", "population=2", "--option", "sample=2",
            "--budgets", str(low), str(high), "--target", "params", "--evaluations", "3", "--seed", "0",
            "--batches", "1", "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    print(printed)
    result = json.loads((out / "select.json").read_text())
    assert result["strategy"] == "evolution" and result["seed"] == 0 and result["evaluations"] == 3
    assert result["split"] in ("arch", "dev") and result["options"]["population"] == 2
    assert [b["budget"] for b in result["best"]] == [low, high]
    for best in result["best"]:
        assert best["cost"] <= best["budget"]
        spec = ArchSpec.load(out / best["arch"])
        assert (
            SearchSpace(hparams["space"])
            .derive(dict(zip(space.edges, map(int, best["path"].split("-")))))
            .layers
            == spec.layers
        )
        assert best["score"] == min(c["score"] for c in result["candidates"] if c["cost"] <= best["budget"])
    assert all(c["cost"] <= c["run_budget"] for c in result["candidates"])
    cache = json.loads((out / "cache.json").read_text())["scores"]
    assert {c["path"] for c in result["candidates"]} == set(cache)
    assert json.loads((out / "run.json").read_text())["status"] == "done"
    # scored across two processes (gloo on the CPU): the same scores and picks
    assert cli_main([*argv[:-2], "--out", str(tmp_path / "two"), "--devices", "2"]) == 0
    shared = json.loads((tmp_path / "two" / "select.json").read_text())
    assert [b["path"] for b in shared["best"]] == [b["path"] for b in result["best"]]
    assert {c["path"]: c["score"] for c in shared["candidates"]} == pytest.approx(
        {c["path"]: c["score"] for c in result["candidates"]}, abs=1e-9
    )
    # the same command again resumes from the cache: same result, nothing scored again
    assert cli_main(argv) == 0
    again = json.loads((out / "select.json").read_text())
    assert again["best"] == result["best"] and again["reused"] == len(cache)
    assert again["seconds"] > result["seconds"] > 0  # the resumed run's time adds to the first's
    # another select into the folder is refused unless --overwrite
    options = argv.index("--option")
    other = [*argv[: options - 1], "random", *argv[options + 4 :]]  # --strategy random, no options
    assert cli_main(other) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main([*other, "--overwrite"]) == 0
    assert json.loads((out / "select.json").read_text())["reused"] == 0
    assert cli_main([*argv[:-2], "--strategy", "nope", "--out", str(tmp_path / "x")]) == 2
    # the soft reward, no hard budget: one pick, in budget_none/
    budgets = argv.index("--budgets")
    soft = [*argv[:budgets], *argv[budgets + 3 : -1], str(tmp_path / "soft"), "--reward-lambda", "0.05",
            "--prior", "alphas"]  # fmt: skip
    assert cli_main(soft) == 0
    result = json.loads((tmp_path / "soft" / "select.json").read_text())
    [best] = result["best"]
    assert (
        best["budget"] is None and best["arch"] == "budget_none/arch.yaml" and result["reward_lambda"] == 0.05
    )
    assert result["prior"] == "alphas"  # a uniform search's alphas: the uniform distribution
    assert best["objective"] == pytest.approx(best["score"] + 0.05 * math.log(best["cost"]))
    assert best["objective"] == min(c["objective"] for c in result["candidates"])
    capsys.readouterr()
    assert cli_main([*argv[:budgets], *argv[budgets + 3 :]]) == 2  # neither a budget nor a reward
    assert "--reward-lambda" in capsys.readouterr().err
    low = [*argv[:budgets], "--budgets", "1e-9", "1e9", *argv[budgets + 3 : -1], str(tmp_path / "low")]
    assert cli_main(low) == 2  # the flag the user gave is the one the error names
    assert "--budgets 1e-09: the cheapest path of the space costs" in capsys.readouterr().err


def test_select_with_a_floor_scores_and_picks_only_paths_in_the_band(uniform_run, tmp_path, capsys):
    corpus, ckpt = uniform_run
    costs = path_params(ckpt)
    high = max(costs)
    floor = sorted(costs)[len(costs) // 2] / high  # half the paths are below it
    out = tmp_path / "band"
    argv = ["select", str(ckpt), "--data", str(corpus), "--strategy", "random", "--budget", str(high),
            "--target", "params", "--evaluations", "4", "--batches", "1", "--floor", str(floor),
            "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    result = json.loads((out / "select.json").read_text())
    assert result["floor"] == floor and len(result["candidates"]) == 4
    assert all(floor * high - 1e-6 <= c["cost"] <= high for c in result["candidates"])
    [best] = result["best"]
    assert best["cost"] >= floor * high - 1e-6
    capsys.readouterr()
    for bad in (["--floor", "1.5"], ["--floor", "0"]):
        assert cli_main([*argv[:-2], *bad, "--out", str(tmp_path / "bad")]) == 2
        assert "--floor" in capsys.readouterr().err
    budget = argv.index("--budget")
    soft = [*argv[:budget], *argv[budget + 2 : -1], str(tmp_path / "soft"), "--reward-lambda", "0.05"]
    assert cli_main(soft) == 2  # a floor is a fraction of a budget: none is given
    assert "--floor" in capsys.readouterr().err
    # a band between two neighbouring paths' costs holds none: said so, not "more --evaluations?"
    wide = max(zip(sorted(set(costs)), sorted(set(costs))[1:]), key=lambda pair: pair[1] - pair[0])
    gap = (wide[0] + wide[1]) / 2
    empty = [*argv[:budget], "--budget", str(gap), *argv[budget + 2 : -4], "--floor", "0.99999",
             "--out", str(tmp_path / "empty")]  # fmt: skip
    assert cli_main(empty) == 0
    assert "the band is empty or too thin to draw from (a lower --floor widens it)" in capsys.readouterr().out
    assert json.loads((tmp_path / "empty" / "select.json").read_text())["best"][0]["path"] is None


def test_the_scorer_measures_cer_and_loss_and_its_kept_batches_change_nothing(uniform_run):
    from supernet.select.score import SupernetScorer

    corpus, ckpt = uniform_run
    scorer = SupernetScorer(ckpt, corpus, batches=1, metric="loss", device="cpu")
    first, second = ({name: k for name in scorer.space.edges} for k in (0, 1))
    measured = scorer.measure(first)
    assert set(measured) == {"cer", "loss"} and measured["loss"] > 0 and scorer(first) == measured["loss"]
    scorer.measure(second)  # the BatchNorm statistics of another path in between
    assert scorer.measure(first) == measured  # same kept batches, statistics re-estimated: same numbers
    fresh = SupernetScorer(ckpt, corpus, batches=1, device="cpu")  # reads the audio itself
    assert fresh.measure(first) == measured and fresh(first) == measured["cer"]
    with pytest.raises(ValueError, match="metric must be one of"):
        SupernetScorer(ckpt, corpus, metric="wer")


def test_finetuning_a_finalist_trains_its_path_and_restores_the_supernet(uniform_run):
    import torch

    from supernet.select.score import SupernetScorer

    corpus, ckpt = uniform_run
    scorer = SupernetScorer(ckpt, corpus, batches=1, metric="loss", device="cpu")
    path = {name: 0 for name in scorer.space.edges}
    inherited = scorer.measure(path)
    before = {
        k: v.clone() for k, v in scorer.module.net.state_dict().items()
    }  # BatchNorm's as measure left it
    tuned = scorer.finetuned(path, steps=3, lr=1e-3)
    assert tuned["loss"] < inherited["loss"]  # three steps on train batches lower the held-out loss here
    after = scorer.module.net.state_dict()
    assert all(
        torch.equal(before[k], after[k]) for k in before
    )  # the next finalist starts from the same weights
    assert scorer.measure(path) == inherited
    assert all(p.grad is None for p in scorer.module.net.parameters())
    for module in scorer.module.net.modules():  # the tiny space has none: dropout as a real space has it
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.3
    noisy = scorer.finetuned(path, steps=3, lr=1e-3, seed=1)
    assert scorer.finetuned(path, steps=3, lr=1e-3, seed=1) == noisy  # same batches, order and dropout
    assert scorer.finetuned(path, steps=3, lr=1e-3, seed=2) != noisy  # the dropout is drawn, from the seed
    # a training carried across calls (successive halving's rungs) ends where one call ends
    state = {}
    scorer.finetuned(path, steps=2, lr=1e-3, seed=1, state=state)
    assert state["steps"] == 2 and state["weights"]
    assert scorer.finetuned(path, steps=1, lr=1e-3, seed=1, state=state) == noisy
    assert state["steps"] == 3
    assert scorer.measure(path) == inherited  # the supernet restored after each part
    # measured without re-estimating BatchNorm: the statistics the training left are carried too
    plain = SupernetScorer(ckpt, corpus, batches=0, metric="loss", device="cpu", weights="trained")
    whole, state = plain.finetuned(path, steps=3, lr=1e-3), {}
    plain.finetuned(path, steps=2, lr=1e-3, state=state)
    assert plain.finetuned(path, steps=1, lr=1e-3, state=state) == whole


def test_nsga2_keeps_no_seconds_per_budget(uniform_run, tmp_path):
    """Its one run serves every budget: no budget's own seconds to give (``budget_seconds`` None)."""
    corpus, ckpt = uniform_run
    out = tmp_path / "nsga2"
    argv = ["select", str(ckpt), "--data", str(corpus), "--strategy", "nsga2", "--budgets", "1e9", "2e9",
            "--target", "params", "--evaluations", "4", "--batches", "1", "--metric", "loss", "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    result = json.loads((out / "select.json").read_text())
    assert result["budget_seconds"] is None and result["seconds"] > 0 and len(result["best"]) == 2


def test_select_with_finalists_picks_the_best_finetuned_of_them(uniform_run, tmp_path, capsys, monkeypatch):
    corpus, ckpt = uniform_run
    out = tmp_path / "finalists"
    argv = ["select", str(ckpt), "--data", str(corpus), "--strategy", "random", "--budget", "1e9",
            "--target", "params", "--evaluations", "4", "--batches", "1", "--metric", "loss",
            "--finalists", "3", "--finetune-steps", "2", "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    result = json.loads((out / "select.json").read_text())
    [best] = result["best"]
    finalists = best["finalists"]
    assert len(finalists) == 3 and result["finalists"] == 3 and result["finetune_seconds"] > 0
    # the budget's own seconds (its draws and fine-tunes) are part of the select's, the rest its start
    own = result["budget_seconds"]["1e+09"]
    assert result["finetune_seconds"] <= own < result["seconds"]
    by_score = sorted(result["candidates"], key=lambda c: c["objective"])[:3]
    assert [f["path"] for f in finalists] == [c["path"] for c in by_score]  # the three best scored
    assert best["path"] == min(finalists, key=lambda f: f["finetuned_objective"])["path"]
    assert all(
        f["finetuned_objective"] == f["finetuned"] for f in finalists
    )  # a hard budget: the score alone
    # run again (as after an interruption): the fine-tunes come from cache.json, not a new training
    kept = json.loads((out / "cache.json").read_text())["finetuned"]
    assert sorted(kept) == sorted(f"{f['path']}@2" for f in finalists)  # PATH@STEPS

    def no_training(*args, **kwargs):
        raise AssertionError("a kept fine-tune was run again")

    monkeypatch.setattr(SupernetScorer, "finetuned", no_training)
    assert cli_main(argv) == 0
    again = json.loads((out / "select.json").read_text())
    assert again["best"] == result["best"] and again["finetune_seconds"] == result["finetune_seconds"]
    assert again["budget_seconds"]["1e+09"] >= own  # a resume adds its own seconds, as to ``seconds``
    capsys.readouterr()
    assert cli_main([*argv[:-2], "--halving", "--finalists", "2", "--out", str(tmp_path / "h")]) == 2
    assert "--halving needs --finalists 3 or more" in capsys.readouterr().err
    assert cli_main([*argv[:-2], "--devices", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--devices 1" in capsys.readouterr().err
    assert cli_main([*argv[:-4], "--finalists", "0", "--out", str(tmp_path / "y")]) == 2
    assert cli_main([*argv[:-2], "--finetune-lr", "0", "--out", str(tmp_path / "z")]) == 2
    assert "--finetune-lr must be a positive number" in capsys.readouterr().err
    # --batches 0: the supernet's own BatchNorm statistics score the candidates and the fine-tunes
    monkeypatch.undo()  # a new folder: its fine-tunes are trained
    plain = [*argv[:12], "--batches", "0", *argv[14:-2], "--out", str(tmp_path / "own")]
    assert cli_main(plain) == 0
    own = json.loads((tmp_path / "own" / "select.json").read_text())
    assert own["batches"] == 0 and len(own["best"][0]["finalists"]) == 3


def test_rungs_double_the_steps_while_halving_leaves_more_than_two():
    from supernet.commands.select import rung_steps

    assert rung_steps(8, 12, halving=True) == [12, 24, 48]  # 8, then 4, then 2 finalists
    assert rung_steps(4, 12, halving=True) == [12, 24] and rung_steps(3, 12, halving=True) == [12, 24]
    assert rung_steps(8, 12, halving=False) == [12]


def test_select_with_halving_trains_the_better_half_on(uniform_run, tmp_path, monkeypatch):
    from supernet.commands import select as select_command

    corpus, ckpt = uniform_run
    out = tmp_path / "halving"
    argv = ["select", str(ckpt), "--data", str(corpus), "--strategy", "random", "--budget", "1e9",
            "--target", "params", "--evaluations", "4", "--batches", "1", "--metric", "loss",
            "--finalists", "4", "--finetune-steps", "1", "--halving", "--out", str(out)]  # fmt: skip
    calls = []
    finetuned = SupernetScorer.finetuned

    def counted(self, path, steps, lr=None, seed=0, state=None):
        calls.append((steps, (state or {}).get("steps", 0)))
        return finetuned(self, path, steps, lr, seed, state)

    monkeypatch.setattr(SupernetScorer, "finetuned", counted)
    assert cli_main(argv) == 0
    result = json.loads((out / "select.json").read_text())
    [best] = result["best"]
    finalists = best["finalists"]
    assert result["halving"] is True and len(finalists) == 4
    assert sorted(calls) == [(1, 0)] * 4 + [(1, 1)] * 2  # two survivors go on from step 1 to step 2
    survivors = [f for f in finalists if f["finetune_steps"] == 2]
    assert len(survivors) == 2 and all(len(f["rungs"]) == 2 for f in survivors)
    stopped = [f for f in finalists if f["finetune_steps"] == 1]
    # the better half of the first rung went on
    assert max(f["rungs"][0] for f in survivors) <= min(f["rungs"][0] for f in stopped)
    assert best["path"] == min(survivors, key=lambda f: f["finetuned_objective"])["path"]
    kept = json.loads((out / "cache.json").read_text())["finetuned"]
    assert len(kept) == 6 and sum(key.endswith("@2") for key in kept) == 2
    # interrupted after the first rung: the survivors train from the supernet's weights to step 2
    cache = json.loads((out / "cache.json").read_text())
    cache["finetuned"] = {k: v for k, v in kept.items() if k.endswith("@1")}
    (out / "cache.json").write_text(json.dumps(cache))
    calls.clear()
    assert cli_main(argv) == 0
    assert sorted(calls) == [(2, 0)] * 2
    again = json.loads((out / "select.json").read_text())
    assert again["best"][0]["path"] == best["path"]
    assert [f["rungs"] for f in again["best"][0]["finalists"]] == [f["rungs"] for f in finalists]
    assert select_command.rung_steps(4, 1, True) == [1, 2]


def test_a_finalist_whose_fine_tune_diverged_goes_no_further_and_is_never_the_pick(
    uniform_run, tmp_path, monkeypatch
):
    corpus, ckpt = uniform_run
    finetuned = SupernetScorer.finetuned
    diverging = []

    def diverges_first(self, path, steps, lr=None, seed=0, state=None):
        measures = finetuned(self, path, steps, lr, seed, state)
        if not diverging or diverging == [path]:  # the first finalist tuned diverges, at every rung
            diverging[:] = [path]
            return {name: math.inf for name in measures}
        return measures

    monkeypatch.setattr(SupernetScorer, "finetuned", diverges_first)
    out = tmp_path / "diverged"
    argv = ["select", str(ckpt), "--data", str(corpus), "--strategy", "random", "--budget", "1e9",
            "--target", "params", "--evaluations", "4", "--batches", "1", "--metric", "loss",
            "--finalists", "3", "--finetune-steps", "1", "--halving", "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    [best] = json.loads((out / "select.json").read_text())["best"]
    [diverged] = [f for f in best["finalists"] if f["finetuned"] is None]
    assert diverged["finetune_steps"] == 1 and diverged["rungs"] == [None]  # it stopped at the first rung
    assert best["path"] != diverged["path"]
    assert sorted(f["finetune_steps"] for f in best["finalists"]) == [1, 2, 2]  # the other two went on
