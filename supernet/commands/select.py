"""`supernet select CKPT --data CORPUS --budgets B1 B2 --out DIR`: a path per budget from a trained
supernet, without searching again.

    supernet select RUN/checkpoints/last.ckpt --data corpus --strategy evolution --budgets 20 40 \\
        --evaluations 200 --seed 0 --out runs/select

A strategy (``supernet.select.strategies``: random, evolution, tpe, nsga2, ...) proposes paths
within each budget; each is scored once with the supernet's inherited weights (BatchNorm
re-estimated, CER on the ``arch`` split, else ``dev``; never a test set). Writes
``DIR/budget_<B>/arch.yaml`` (the best path, an ArchSpec; ``--reward-lambda L`` ranks paths by
``CER + L * ln(cost)`` instead, MnasNet's soft constraint, with or without a budget:
``budget_none/`` without), ``DIR/select.json`` (every candidate,
the best per budget, nsga2's front, the settings), ``DIR/select.png`` (best score against
evaluations) and ``DIR/cache.json`` (every score, written as it grows: run the same command again
to resume an interrupted select to the same result). Costs: the checkpoint's own (``--target``),
or a table's (``--lut``). A ``uniform`` (single-path one-shot) checkpoint is what this is for.

``--finalists K`` fine-tunes each budget's K best-scored paths alone for ``--finetune-steps`` from
the supernet's weights (``SupernetScorer.finetuned``), scores them again and picks the best of
them: a correction of the inherited weights' bias towards paths that learn fast. ``--halving``
spends those steps by successive halving instead: every finalist trains ``--finetune-steps``, the
better half goes on to twice the steps, and so on until the better of the last two is the pick
(8 finalists from N steps: 16N steps in all, as 4 finalists of 4N steps each, while a
survivor's training carries on from its last rung). Its fine-tunes are kept in
``cache.json`` as they end: a resumed select does not run them again.

``--floor F`` searches a band under each budget: a path must cost at least F x the budget, drawn
and judged as the budget is (``FeasibleSampler``'s floor, ``Problem.floor``). Why: a budget is what
the deployment can spend, and on ``h200_three`` the inherited score chose finalists that left
much of it unused (0.32-0.83 ms under 0.841), most of them without the attention blocks that
retrained best (docs/results.md, session 14).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from supernet.errors import UserError

SELECT_FILES = ("select.json", "cache.json", "select.png")
MARKER = "run.json"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ckpt", help="a `supernet search` checkpoint (any method, `uniform` included)")
    parser.add_argument(
        "--data", required=True, help="the corpus folder or manifest the supernet was trained on"
    )
    parser.add_argument(
        "--strategy", default="evolution", help="random | evolution | tpe | nsga2 | rl | predictor"
    )
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="a strategy option (repeatable)"
    )
    budgets = parser.add_mutually_exclusive_group()
    budgets.add_argument("--budget", type=float, help="one budget (ms, or params with --target params)")
    budgets.add_argument("--budgets", type=float, nargs="+", help="several budgets")
    parser.add_argument(
        "--reward-lambda",
        type=float,
        default=None,
        help="minimise CER + LAMBDA * ln(cost) (the reward -CER - lambda log latency) instead of the "
        "CER under a hard budget; a --budget still caps it when given",
    )
    parser.add_argument(
        "--prior",
        choices=("uniform", "alphas"),
        default="uniform",
        help="where random draws come from: uniform, or the checkpoint's softmax(alpha) (a "
        "differentiable search's preferences seed the population)",
    )
    parser.add_argument(
        "--floor", type=float, default=None, metavar="F",
        help="search a band under each budget: paths cost at least F x the budget (0 < F < 1), so "
        "none leaves most of the budget unused",
    )  # fmt: skip
    parser.add_argument("--target", choices=("latency", "params"), default="latency")
    parser.add_argument(
        "--lut", default=None, help="a latency table (path or shipped name); default: the checkpoint's"
    )
    parser.add_argument("--evaluations", type=int, default=100, help="distinct paths scored per budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batches", type=int, default=4,
        help="train batches that re-estimate BatchNorm (0: keep the supernet's own statistics, which ranked "
        "50 retrained networks better on one GPU study: docs/results.md, session 15)",
    )  # fmt: skip
    parser.add_argument(
        "--devices", type=int, default=1,
        help="score each candidate across N processes (GPUs; CPU processes without CUDA): same picks, less time",
    )  # fmt: skip
    parser.add_argument(
        "--metric", choices=("cer", "loss", "init_cosine"), default="cer",  # score.METRICS, without torch
        help="the score: greedy CER, CTC loss per token (orders paths a young supernet decodes as "
        "blanks), or init_cosine: the ABS angle between the path's initial and trained weights "
        "(a search run with --model.keep_initial_weights true)",
    )  # fmt: skip
    parser.add_argument(
        "--weights", choices=("average", "trained"), default="average",  # score.WEIGHTS, without torch
        help="score with the search's moving average of its weights (model.weight_average) when it "
        "kept one, or always with the trained weights",
    )  # fmt: skip
    parser.add_argument(
        "--finalists", type=int, default=1,
        help="fine-tune the K best-scored paths of each budget alone for --finetune-steps from the "
        "supernet's weights, score them again and pick the best (1: off; one process only)",
    )  # fmt: skip
    parser.add_argument("--finetune-steps", type=int, default=50, help="weight steps per finalist")
    parser.add_argument(
        "--halving", action="store_true",
        help="successive halving of the finalists: all train --finetune-steps, the better half "
        "goes on to twice the steps, and so on until two are left; their better is the pick",
    )  # fmt: skip
    parser.add_argument(
        "--finetune-lr", type=float, default=None, help="the finalists' AdamW lr (default: the search's)"
    )
    parser.add_argument(
        "--out", required=True, help="the select's folder (resumed when it holds this select)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the run that --out holds")


def _options(items: list[str]) -> dict[str, Any]:
    options = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--option {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        options[key] = yaml.safe_load(value)
    return options


def _costs(ckpt: str, target: str, lut: str | None, metric: str = "cer"):
    """The checkpoint's space, its alphas and the costs a budget bounds (its own, or ``lut``'s);
    refuses a ``metric`` the checkpoint cannot give."""
    from supernet.search.extract import load_search_checkpoint, search_objective

    space, arch, hparams = load_search_checkpoint(ckpt)
    if metric == "init_cosine":  # before the run folder is claimed
        from supernet.select.angle import require_initial_weights

        require_initial_weights(hparams["kept_initial_weights"], ckpt, "--metric init_cosine")
    if target == "latency" and lut:
        from supernet.latency.table import LatencyTable
        from supernet.shipped import resolve

        return space, arch, LatencyTable.load(resolve("lut", lut)).costs(space)
    objective = search_objective(space, hparams)
    costs = objective.params if target == "params" else objective.latency
    if costs is None:
        raise UserError(f"{ckpt}: the search had no latency table; give one with --lut, or --target params")
    return space, arch, costs


def claim(out: Path, settings: dict, overwrite: bool, argv: list[str] | None = None) -> dict[str, Any]:
    """Make ``out`` this select's folder; what an interrupted run of the very same select kept
    (``cache.json``: its ``scores``, its finalists' fine-tuned measures and its ``seconds``), else
    ``{}``. Another run is refused unless ``overwrite``."""
    from supernet.outputs import atomic_write_json
    from supernet.run_folder import read_marker, run_files

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    previous = read_marker(out) if out.is_dir() else None
    ours = [out / n for n in SELECT_FILES if (out / n).exists()] + sorted(out.glob("budget_*"))
    theirs = [p for p in run_files(out) if p.name != MARKER]
    same = (
        previous is not None and previous.get("command") == "select" and previous.get("settings") == settings
    )
    if (ours or theirs) and previous is None:
        raise UserError(f"{out} holds files that are not a run's (no {MARKER}): choose another --out")
    if previous is not None and not same:
        if not overwrite:
            what = f"another `{previous.get('command')}` run ({previous.get('status', 'unknown')})"
            raise UserError(f"{out} holds {what}: replace it with --overwrite, or choose another --out")
        for path in ours + theirs:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    cache = out / "cache.json"
    kept = json.loads(cache.read_text()) if same and cache.is_file() and not overwrite else {}
    if overwrite and same:
        for path in ours:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    record = {"command": "select", "argv": argv or [], "settings": settings, "status": "running"}
    atomic_write_json(out / MARKER, record)
    return kept


def _plot(out: Path, curves: dict[str, list[float]]) -> None:
    from supernet.loggers import can_plot, pyplot
    from supernet.outputs import replaced_when_done

    if not can_plot("select.png"):
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, best in curves.items():
        ax.step(range(1, len(best) + 1), best, where="post", label=f"budget {label}")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best score (CER)")
    ax.legend()
    fig.tight_layout()
    with replaced_when_done(out / "select.png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


@contextmanager
def _scorer(args: argparse.Namespace):
    """The supernet's scorer: in this process, or across ``--devices`` processes (stopped on exit)."""
    from supernet.select.score import SupernetScorer

    if args.devices == 1:
        yield SupernetScorer(args.ckpt, args.data, args.batches, metric=args.metric, weights=args.weights)
        return
    from supernet.select.distributed import DistributedScorer

    with DistributedScorer(
        args.ckpt, args.data, args.devices, batches=args.batches, metric=args.metric, weights=args.weights
    ) as scorer:
        yield scorer


def _label(budget: float | None) -> str:
    """A budget in names and folders: ``20``, or ``none`` (the reward alone, no hard limit)."""
    return "none" if budget is None else f"{budget:g}"


def _finalists(within: list[dict], count: int) -> list[dict]:
    """The ``count`` best distinct paths of a budget, by objective, then cost."""
    from supernet.select.problem import key_of

    seen, out = set(), []
    for h in sorted(within, key=lambda h: (h["objective"], h["cost"])):
        if key_of(h["path"]) not in seen and len(out) < count:
            seen.add(key_of(h["path"]))
            out.append(h)
    return out


def _finetuned_order(finalist: dict) -> tuple[bool, float, float, float]:
    """A fine-tune that diverged (None) last; then the most steps first (a survivor of every
    rung), lower fine-tuned objective, lower cost."""
    objective = finalist["finetuned_objective"]
    diverged = objective is None
    return (diverged, -finalist["finetune_steps"], math.inf if diverged else objective, finalist["cost"])


def rung_steps(finalists: int, steps: int, halving: bool) -> list[int]:
    """The steps each rung trains its finalists to: ``steps`` once, or with successive halving
    ``steps``, twice that, ... while more than one finalist is left after a rung halves them
    (8 finalists: 8 to ``steps``, 4 to ``2 steps``, 2 to ``4 steps``)."""
    rungs, left = [steps], finalists
    while halving and left > 2:
        left = math.ceil(left / 2)
        rungs.append(2 * rungs[-1])
    return rungs


def _finetuned_finalists(
    within: list[dict], budget, args, scorer, tuned: dict, entry, save_cache
) -> list[dict]:
    """A budget's finalists (``select.json`` entries) with their fine-tuned score and objective
    after the last rung each reached (``rung_steps``; the better half of a rung goes on).
    ``tuned`` keeps each path's measures and seconds by ``PATH@STEPS`` (``save_cache`` writes them
    to ``cache.json`` as each one ends), so a rung is tuned once, resumes included; a survivor's
    training goes on from its last rung when this run trained it (``states``), else from the
    supernet's weights to the same end."""
    from tqdm import tqdm

    from supernet.select.problem import key_of

    finalists = [{**entry(h), "rungs": []} for h in _finalists(within, args.finalists)]
    states: dict[str, dict] = {}  # each survivor's training so far, in memory
    left = finalists
    rungs = rung_steps(len(finalists), args.finetune_steps, args.halving)
    for number, steps in enumerate(rungs):
        for f in tqdm(left, desc=f"fine-tune finalists {_label(budget)}, {steps} steps", leave=False):
            key = f["path"]
            if f"{key}@{steps}" not in tuned:
                path = next(h["path"] for h in within if key_of(h["path"]) == key)
                # kept for a later rung only; the last one goes on from it and lets it go
                state = states.setdefault(key, {}) if number + 1 < len(rungs) else states.pop(key, {})
                began = time.perf_counter()
                measures = scorer.finetuned(
                    path, steps - state.get("steps", 0), args.finetune_lr, args.seed, state=state
                )
                tuned[f"{key}@{steps}"] = {**measures, "seconds": time.perf_counter() - began}
                save_cache()
            score = tuned[f"{key}@{steps}"][args.metric]
            score = score if math.isfinite(score) else None  # a fine-tune that diverged
            f.update(
                finetuned=score, finetune_steps=steps,
                finetuned_objective=None if score is None else f["objective"] - f["score"] + score,
            )  # fmt: skip
            f["rungs"].append(score)
        if number + 1 < len(rungs):
            going = [f for f in left if f["finetuned_objective"] is not None]  # a diverged one stops
            left = sorted(going, key=_finetuned_order)[: math.ceil(len(left) / 2)]
            going_on = {f["path"] for f in left}
            states = {key: state for key, state in states.items() if key in going_on}  # the rest stop
    return finalists


def _check_finalists(args: argparse.Namespace) -> None:
    if args.finalists < 1:
        raise UserError(f"--finalists must be at least 1 (1: off), got {args.finalists}")
    if args.finalists > 1 and args.finetune_steps < 1:
        raise UserError(f"--finetune-steps must be at least 1 with --finalists, got {args.finetune_steps}")
    if args.halving and args.finalists < 3:
        raise UserError(
            f"--halving needs --finalists 3 or more (two are compared at once), got {args.finalists}"
        )
    if args.finalists > 1 and args.devices > 1:
        raise UserError("--finalists fine-tunes in one process: use --devices 1")
    if args.finetune_lr is not None and not (math.isfinite(args.finetune_lr) and args.finetune_lr > 0):
        raise UserError(f"--finetune-lr must be a positive number, got {args.finetune_lr}")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from supernet.latency.costs import unmeetable
    from supernet.outputs import atomic_write_json, atomic_write_text
    from supernet.run_folder import failing, finish
    from supernet.select.feasible import FeasibleSampler
    from supernet.select.problem import Problem, key_of, outside
    from supernet.select.strategies.base import build_strategy

    budgets = [args.budget] if args.budgets is None else list(args.budgets)
    if budgets == [None] and args.reward_lambda is None:
        raise UserError("give --budget or --budgets (a hard limit), or --reward-lambda (a soft one)")
    if args.reward_lambda is not None and (args.reward_lambda < 0 or args.strategy == "nsga2"):
        raise UserError(
            f"--reward-lambda {args.reward_lambda:g}: must be >= 0, with a single-objective strategy "
            "(nsga2 gives the whole CER/cost front instead)"
        )
    if args.floor is not None and (not 0 < args.floor < 1 or budgets == [None]):
        raise UserError(
            f"--floor {args.floor:g}: must lie between 0 and 1 (a fraction of each budget), with --budget "
            "or --budgets"
        )
    if args.evaluations < 1:
        raise UserError(f"--evaluations must be at least 1, got {args.evaluations}")
    if args.devices < 1:
        raise UserError(f"--devices must be at least 1, got {args.devices}")
    _check_finalists(args)
    strategy = build_strategy(args.strategy, _options(args.option))  # unknown names fail before any work
    space, arch, costs = _costs(args.ckpt, args.target, args.lut, args.metric)
    for budget in budgets:
        cheapest = unmeetable(costs, budget)
        if cheapest is not None:
            raise UserError(
                f"{'--budgets' if args.budgets else '--budget'} {budget:g}: the cheapest path of the space "
                f"costs {cheapest:g} {costs.metric}"
            )
    settings = {
        "ckpt": str(Path(args.ckpt).resolve()), "data": str(Path(args.data).resolve()),
        "strategy": args.strategy, "options": strategy.options(), "budgets": budgets, "target": args.target,
        "lut": args.lut, "evaluations": args.evaluations, "seed": args.seed, "batches": args.batches,
        "metric": args.metric, "reward_lambda": args.reward_lambda, "prior": args.prior,
    }  # fmt: skip
    if args.weights != "average":  # only then: a select begun before --weights existed still resumes
        settings["weights"] = args.weights
    if args.floor is not None:  # likewise
        settings["floor"] = args.floor
    if args.finalists > 1:  # likewise
        settings.update(
            finalists=args.finalists, finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr
        )
        if args.halving:  # likewise
            settings["halving"] = True
    out = Path(args.out)
    kept = claim(out, settings, args.overwrite, getattr(args, "_argv", None))
    stored = kept.get("scores", {})
    # wall time of the runs this one resumes (kept in cache.json with their scores), then this run's
    before = kept.get("seconds", 0.0)
    start = time.perf_counter()
    with failing(out), _scorer(args) as scorer:
        scores = dict(stored)
        # each finalist's fine-tuned measures and seconds: a finalist of two budgets, or of the run
        # this one resumes, is tuned once
        tuned: dict[str, dict[str, float]] = dict(kept.get("finetuned", {}))
        # each budget's own seconds (its strategy's run, its finalists' fine-tunes), resumes included:
        # what a select of that budget alone adds to the start every select pays (a study's cost of
        # one budget's route); a run cut short counts with the start. A budget run after another
        # reuses its warm-up and any score or fine-tune of a path both share, so it reads a little
        # low. None with nsga2, whose one run serves every budget.
        budget_seconds: dict[str, float] | None = (
            None if args.strategy == "nsga2" else dict(kept.get("budget_seconds", {}))
        )

        def save_cache():
            seconds = round(before + time.perf_counter() - start, 2)
            cache = {"split": scorer.split, "scores": scores, "seconds": seconds}
            if tuned:
                cache["finetuned"] = tuned
            if budget_seconds:
                cache["budget_seconds"] = budget_seconds
            atomic_write_json(out / "cache.json", cache)

        def timed(label: str, began: float) -> None:
            if budget_seconds is not None:
                budget_seconds[label] = round(budget_seconds.get(label, 0.0) + time.perf_counter() - began, 2)
                save_cache()

        def score_fn(path):
            scores[key_of(path)] = scorer(path)
            save_cache()
            return scores[key_of(path)]

        labels = space.edges
        edges = {name: len(cands) for name, cands in labels.items()}
        # each edge's softmax(alpha): uniform for a ``uniform`` search's checkpoint
        prior = {n: p.tolist() for n, p in arch.host_probs().items()} if args.prior == "alphas" else None
        problems, curves = {}, {}

        def run_of(budget):
            """The run that serves ``budget``: nsga2 (two objectives) gives a front in one run under
            the largest budget; the other strategies run per budget."""
            return max(budgets) if args.strategy == "nsga2" else budget

        runs = list(dict.fromkeys(run_of(budget) for budget in budgets))

        def floor_at(budget):
            """A budget's floor (None: no band)."""
            return None if args.floor is None else args.floor * budget

        def floor_of(run):
            """The least cost of a run's paths: the floor of the smallest budget it serves."""
            return floor_at(min(budget for budget in budgets if run_of(budget) == run))

        for budget in runs:
            bar = tqdm(
                total=args.evaluations, desc=f"select {args.strategy} budget {_label(budget)}", leave=False
            )
            problem = Problem(  # the scores are shared by the budgets
                edges,
                score_fn,
                costs.at,
                budget,
                stored=scores,
                reward_lambda=args.reward_lambda,
                prior=prior,
                sampler=None
                if budget is None
                else FeasibleSampler(costs, budget, prior, floor=floor_of(budget)),
                floor=floor_of(budget),
            )
            curve = curves.setdefault(_label(budget), [])

            def told(entry, problem=problem, bar=bar, curve=curve):
                if bar.n < problem.evaluations:
                    bar.update(problem.evaluations - bar.n)
                    best = problem.best()
                    curve.append(best[1])
                    bar.set_postfix(best=f"{best[1]:.4f}")

            problem.on_evaluate = told
            began = time.perf_counter()
            build_strategy(args.strategy, strategy.options()).run(problem, args.evaluations, args.seed)
            timed(_label(budget), began)
            bar.close()
            problems[budget] = problem

        def entry(h):
            names = [labels[e][i] for e, i in h["path"].items()]
            return {
                "path": key_of(h["path"]), "labels": names, "score": h["score"], "cost": h["cost"],
                "objective": h["objective"],
            }  # fmt: skip

        candidates, best = [], []
        for budget, problem in problems.items():
            seen = set()
            for h in problem.history:
                if math.isfinite(h["score"]) and key_of(h["path"]) not in seen:
                    seen.add(key_of(h["path"]))
                    candidates.append({"run_budget": budget, **entry(h)})
        # a budget's pick is the best path scored within it by any of the runs (they share scores:
        # a cheap path the larger budget's run found counts for the smaller budget too)
        scored = [h for problem in problems.values() for h in problem.history if math.isfinite(h["score"])]
        for budget in budgets:
            within = [h for h in scored if outside(h["cost"], budget, floor_at(budget)) == 0.0]
            if not within:
                band = "" if args.floor is None else f" and above its floor {floor_at(budget):g}"
                sampler = problems[run_of(budget)].sampler
                if args.floor is not None and sampler is not None and not sampler.any_fits:
                    note = (f"no path of the space was found within it{band}: the band is empty or too thin "
                            "to draw from (a lower --floor widens it)")  # fmt: skip
                else:
                    note = f"no path within it{band} was scored (more --evaluations?)"
                best.append({"budget": budget, "path": None, "note": note})
                print(f"budget {_label(budget)}: {note}")
                continue
            top = min(within, key=lambda h: (h["objective"], h["cost"]))
            finalists = []
            if args.finalists > 1:
                began = time.perf_counter()
                finalists = _finetuned_finalists(within, budget, args, scorer, tuned, entry, save_cache)
                timed(_label(budget), began)
                best_key = min(finalists, key=_finetuned_order)["path"]
                top = next(h for h in within if key_of(h["path"]) == best_key)
            arch = out / f"budget_{_label(budget)}" / "arch.yaml"
            arch.parent.mkdir(parents=True, exist_ok=True)
            spec = space.derive(top["path"], name=f"{space.name}-{args.strategy}-{_label(budget)}")
            atomic_write_text(arch, yaml.safe_dump(spec.to_dict(), sort_keys=False))
            best.append({"budget": budget, **entry(top), "arch": str(arch.relative_to(out))})
            if finalists:
                best[-1]["finalists"] = finalists
            print(
                f"budget {_label(budget)}: score {top['score']:.4f}  cost {top['cost']:g} {costs.metric}"
                f"  -> {arch}"
            )
        result = {
            **settings, "split": scorer.split, "weights_used": scorer.weights, "cost_unit": costs.metric,
            "draws": "feasible", "candidates": candidates, "best": best,
            "front": [entry(h) for h in problems[max(budgets)].front()] if args.strategy == "nsga2" else None,
            "scored": len(scores), "reused": len(stored),
            "finetune_seconds": round(sum(t["seconds"] for t in tuned.values()), 2) if args.finalists > 1 else None,
            # wall time, recalibration and scoring included, with that of the runs a resume continues
            "seconds": round(before + time.perf_counter() - start, 2),
            "budget_seconds": budget_seconds,  # of it, each budget's own (the rest: the start)
        }  # fmt: skip
        atomic_write_json(out / "select.json", result)
        _plot(out, curves)
    finish(out)
    print(f"written: {out / 'select.json'}")
    return 0
