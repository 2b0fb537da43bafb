"""Which supernet training recipe ranks architectures best? (issue 16: Kendall tau >= 0.5)

Trains uniform (single-path one-shot) supernets of a space side by side on one GPU, one per recipe,
each for the same wall-clock time, then scores the architectures of a finished study with each
supernet's inherited weights (the study's scorer, ``rank.supernet_scores``: the space's paths only)
and prints Kendall's tau of that score (dev CER, and dev CTC loss; the loss also within each budget)
against the architectures' stand-alone dev CER from the study. Prints a table and writes
``$OUT/supernet_recipes.json`` and each recipe's scores as ``$OUT/scores_RECIPE.json``
(``ranking_breakdown.py --scores FILE --measure loss``). ``--seed`` trains every recipe again from
another seed: one supernet's tau moves by 0.1-0.2 from seed to seed (session 24).

    bash -c 'source scripts/device/setup.sh && python3 scripts/device/supernet_recipes.py \
        --reference docs/study/h200/study.json --max-time 240'
    bash -c 'source scripts/device/setup.sh && python3 scripts/device/supernet_recipes.py \
        --reference docs/study/h200_route/study.json --round 3 --max-time 320'
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from study_pieces import retrained  # scripts/device, beside this file

from supernet.space import NETWORK_FIELDS, resolve_space_path
from supernet.study.rank import kendall_tau, supernet_scores, within_budgets

# name: search options beyond the common ones, by round. Epochs are guesses at what fits --max-time,
# so that the cosine schedule ends near the time limit (each run reports the epochs it reached).
# Round 1 (--max-time 220, H100): every recipe still on the CTC plateau (train loss 2.8-3.0 after
# 266-768 steps) with tau about 0. Round 2 (--max-time 420): four to six times the steps.
ROUTE = {  # h200_route's search options (supernet/configs/study/h200_route.yaml)
    "trainer.max_epochs": 20,
    "model.warmup_epochs": 10,
    "model.lr": 1.0e-3,
    "model.warmup_steps": 500,
    "data.max_frames": 20000,
}
# h200_route's supernet recipe since session 27 (full-rate attention drawn 3x), measured in rounds 3 and 6
FULLRATE_X3 = {**ROUTE, "model.method_options": "{draw_weights: {former: 3, down: 0.3333}}"}
ROUNDS = {
    1: {
        "study_h200": {"trainer.max_epochs": 14, "data.max_frames": 60000},
        "long_60k": {"trainer.max_epochs": 30, "data.max_frames": 60000},
        "long_20k": {"trainer.max_epochs": 16, "data.max_frames": 20000},
        "long_20k_lr1e-3": {"trainer.max_epochs": 16, "data.max_frames": 20000, "model.lr": 1.0e-3},
        "long_20k_fair": {
            "trainer.max_epochs": 16,
            "data.max_frames": 20000,
            "model.method_options": "{fair: true}",
        },
        "long_20k_graphs": {"trainer.max_epochs": 16, "data.max_frames": 20000, "model.cuda_graphs": "true"},
    },
    2: {
        "e50_20k": {"trainer.max_epochs": 50, "data.max_frames": 20000},
        "e50_20k_lr1e-3": {"trainer.max_epochs": 50, "data.max_frames": 20000, "model.lr": 1.0e-3},
        "e50_20k_lr5e-4": {"trainer.max_epochs": 50, "data.max_frames": 20000, "model.lr": 5.0e-4},
        "e50_20k_lr1e-3_fair": {
            "trainer.max_epochs": 50,
            "data.max_frames": 20000,
            "model.lr": 1.0e-3,
            "model.method_options": "{fair: true}",
        },
        "e50_20k_lr1e-3_warm500": {
            "trainer.max_epochs": 50,
            "data.max_frames": 20000,
            "model.lr": 1.0e-3,
            "model.warmup_steps": 500,
        },
        "e80_60k_lr1e-3": {"trainer.max_epochs": 80, "data.max_frames": 60000, "model.lr": 1.0e-3},
    },
    # Round 3 (--reference docs/study/h200_route/study.json --max-time 320): h200_route's supernet
    # recipe, with uniform's draw_weights, which session 11 meant to measure but the module dropped
    # (every uniform supernet drew evenly until session 24's fix).
    3: {
        "route": ROUTE,
        "route_attention_x3": {**ROUTE, "model.method_options": "{draw_weights: {former: 3}}"},
        "route_fullrate_x3": FULLRATE_X3,
    },
    # Round 4 (as round 3, with --seed 0 and --seed 1): each stage's depth drawn uniformly, so the
    # paths that drop all front layers, which round 3's supernets under-rate, train 1 step in 4.
    4: {"route": ROUTE, "route_stage_depth": {**ROUTE, "model.method_options": "{stage_depth: true}"}},
    # Round 5 (as round 4): the supernet trained without dropout. A conformer block drops out at
    # seven places, a TDNN at one; in a supernet where each block trains a few hundred steps that
    # noise slows the attention blocks most, one explanation of why the supernet under-rates them.
    # (Yu et al. 2020, "How to train your super-net", found such stand-alone habits hurt ranking.)
    5: {
        "route": ROUTE,
        "route_dropout0": {**ROUTE, "space.dropout": 0.0},
        "route_dropout0_lr2e-3": {**ROUTE, "space.dropout": 0.0, "model.lr": 2.0e-3},
    },
    # Round 6 (session 28): full-rate attention drawn 5x against the shipped 3x (down2 blocks 1x in
    # both), the next step on the one recipe change that raised both tau and the picks (session 27).
    6: {
        "route_fullrate_x3": FULLRATE_X3,
        "route_fullrate_x5": {**ROUTE, "model.method_options": "{draw_weights: {former: 5, down: 0.2}}"},
    },
}
COMMON = {
    "model.method": "uniform",
    "model.lr": 2.0e-3,
    "model.warmup_steps": 60,
    "data.num_workers": 2,
    "trainer.enable_progress_bar": "false",
    "trainer.enable_model_summary": "false",
    "logger": "csv",
}


def space_for(name: str, options: dict, args, work: Path) -> str:
    """``args.space``, or a copy of it under ``work`` with the recipe's ``space.FIELD`` options set:
    fields that only train (dropout), so that the reference's networks stay paths of it
    (``SearchSpace.index_of`` compares the layers and ``NETWORK_FIELDS``, which are refused here)."""
    fields = {key.removeprefix("space."): value for key, value in options.items() if key.startswith("space.")}
    if not fields:
        return args.space
    shaping = sorted(set(fields) & {*NETWORK_FIELDS, "layers"})
    if shaping:
        raise SystemExit(
            f"recipe {name}: space.{shaping[0]} shapes the network; its paths would not be the reference's"
        )
    data = yaml.safe_load(resolve_space_path(args.space).read_text())
    path = work / f"{name}_space.yaml"
    path.write_text(yaml.safe_dump({**data, **fields}, sort_keys=False))
    return str(path)


def train(name: str, options: dict, args, work: Path) -> subprocess.Popen:
    out = work / name
    space = space_for(name, options, args, work)
    argv = [sys.executable, "-m", "supernet", "search", "--data", str(args.corpus), "--model.space", space,
            "--seed_everything", str(args.seed), "--overwrite", "true", "--trainer.max_time", f"00:00:{args.max_time // 60:02d}:{args.max_time % 60:02d}",
            "--out", str(out)]  # fmt: skip
    for key, value in {**COMMON, **options}.items():
        if not key.startswith("space."):
            argv += [f"--{key}", str(value)]
    log = open(work / f"{name}.log", "w")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def train_losses(run: Path) -> list[tuple[int, float]]:
    """(step, train loss) as logged: the curve shows whether a recipe left the CTC plateau, and when."""
    rows = [r for r in csv.DictReader(open(run / "csv" / "metrics.csv")) if r.get("train/loss")]
    return [(int(r["step"]), float(r["train/loss"])) for r in rows]


def last_train_loss(curve: list[tuple[int, float]], n: int = 5) -> float | None:
    losses = [loss for _, loss in curve[-n:]]
    return sum(losses) / len(losses) if losses else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference", default="docs/study/h200/study.json", help="a study.json with stand-alone dev CER"
    )
    parser.add_argument("--corpus", default="data/study_h200")
    parser.add_argument("--space", default="budget")
    parser.add_argument(
        "--max-time", type=int, default=410, help="seconds of training per recipe (round 2: 410)"
    )
    parser.add_argument("--round", type=int, default=max(ROUNDS), choices=sorted(ROUNDS))
    parser.add_argument("--recipes", nargs="*", help="a subset of the round's recipes (default: all)")
    parser.add_argument("--score-only", action="store_true", help="score the supernets a killed call trained")
    parser.add_argument("--seed", type=int, default=0, help="the supernets' seed (weights and paths)")
    parser.add_argument("--batches", type=int, default=8, help="train batches to recalibrate BatchNorm")
    args = parser.parse_args()
    recipes = ROUNDS[args.round]
    args.recipes = args.recipes or list(recipes)
    out = Path(os.environ.get("OUT", "/tmp/out"))
    work = Path("/tmp/supernet_recipes" + (f"_s{args.seed}" if args.seed else ""))  # a run folder per seed
    work.mkdir(parents=True, exist_ok=True)
    if not (Path(args.corpus) / "metadata.json").exists():
        subprocess.run([sys.executable, "-m", "supernet", "corpus", "--out", args.corpus, "--langs", "en,es,de",
                        "--minutes", "180", "--seed", "0"], check=True)  # fmt: skip
    # each network once (a baseline of two budgets has a row in each), with its budgets
    archs, standalone, budgets = retrained(Path(args.reference))
    if not args.score_only:
        start = time.time()
        runs = {name: train(name, recipes[name], args, work) for name in args.recipes}
        codes = {name: run.wait() for name, run in runs.items()}
        print(f"training: {time.time() - start:.0f} s, exit codes {codes}", flush=True)
    results = []
    summary_file = out / "supernet_recipes.json"
    meta = {"reference": args.reference, "round": args.round, "seed": args.seed, "max_time": args.max_time}
    json.dump({**meta, "results": results}, open(summary_file, "w"), indent=1)
    for name in args.recipes:
        run = work / name
        ckpt = run / "checkpoints" / "last.ckpt"
        if not ckpt.exists():
            print(f"{name}: no checkpoint; log tail:\n" + (work / f"{name}.log").read_text()[-2000:])
            continue
        summary = (
            json.load(open(run / "search.json")) if (run / "search.json").exists() else {}
        )  # killed early
        curve = train_losses(run)
        t0 = time.time()
        scores = supernet_scores(ckpt, Path(args.corpus), archs, args.batches)  # paths of the space only
        names = sorted(scores)
        if not names:
            raise SystemExit(f"{args.reference}: none of its networks is a path of {name}'s space")
        row = {
            "recipe": name, "options": recipes[name], "epochs": summary.get("epochs"), "steps": summary.get("steps"),
            "seconds": summary.get("search_seconds"), "train_loss": last_train_loss(curve), "curve": curve[::2],
            "tau_cer": kendall_tau([scores[n]["cer"] for n in names], [standalone[n] for n in names]),
            "tau_loss": kendall_tau([scores[n]["loss"] for n in names], [standalone[n] for n in names]),
            "tau_loss_within_budget": within_budgets(scores, standalone, budgets, "loss")[1],
            "networks": len(names), "score_seconds": (time.time() - t0) / len(names), "scores": scores,
        }  # fmt: skip
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("scores", "curve")}), flush=True)
        # ranking_breakdown.py --scores FILE --measure loss: where this recipe's ranking goes wrong
        json.dump({"groups": {name: {"scores": scores}}}, open(out / f"scores_{name}.json", "w"), indent=1)
        json.dump({**meta, "results": results}, open(summary_file, "w"), indent=1)
    print(
        "\n| recipe | steps | epochs | s | train loss | mean supernet dev CER % | tau (CER) | tau (loss) | within a budget (loss) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        mean_cer = 100 * sum(s["cer"] for s in r["scores"].values()) / len(r["scores"])
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {r['recipe']} | {r['steps']} | {r['epochs']} | {r['seconds']} | {fmt(r['train_loss'])} "
              f"| {mean_cer:.1f} | {fmt(r['tau_cer'])} | {fmt(r['tau_loss'])} | {fmt(r['tau_loss_within_budget'])} |")  # fmt: skip


if __name__ == "__main__":
    main()
