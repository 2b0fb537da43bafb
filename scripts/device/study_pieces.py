"""What the device scripts that run a study's pieces alone share (``alone_costs.py``,
``average_ranking.py``): their common arguments, the study with ``--search-option`` applied, and
the report's distinct retrained networks with their stand-alone dev CER and budgets."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

from supernet.archspec import ArchSpec
from supernet.study.config import load_config
from supernet.study.rank import distinct_networks


def study_parser(doc: str, example: str) -> argparse.ArgumentParser:
    """CONFIG WORK --table --report [--search-option KEY=VALUE ...] [--out]; add your own."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("work", type=Path, help="a folder of its own (not the study's)")
    parser.add_argument("--table", type=Path, required=True, help="the study's kept latency.json")
    parser.add_argument("--report", type=Path, required=True, help="the study's study.json or partial.json")
    parser.add_argument(
        "--search-option", action="append", default=[], metavar="KEY=VALUE",
        help=f"override one of the study's search options (a shorter recipe: {example})",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/out")))
    return parser


def scorer_parser(doc: str) -> argparse.ArgumentParser:
    """WORK TABLE REPORT...: the scripts that train the route's supernet and score the reports'
    retrained networks with it (``scorer_bias.py``, ``score_by_epoch.py``); add your own."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("table", type=Path, help="the study's latency.json")
    parser.add_argument("reports", type=Path, nargs="+", help="reports whose rows hold retrained networks")
    return parser


def ranking_parser(doc: str, ckpt_help: str = "a supernet trained already") -> argparse.ArgumentParser:
    """WORK TABLE --group NAME REPORT... [--batches] [--ckpt --data]: the scripts that score groups
    of retrained networks with the route's supernet, trained first unless ``--ckpt`` gives one
    (``angle_ranking.py``, ``finetune_ranking.py``, ``fewshot_ranking.py``); add your own."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("table", type=Path, help="a latency.json of the study's space")
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("NAME", "REPORT"),
                        help="a name, then the reports whose retrained networks it ranks together")  # fmt: skip
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--ckpt", type=Path, help=ckpt_help)
    parser.add_argument("--data", type=Path, default=Path("data/study_h200"), help="the corpus, with --ckpt")
    return parser


def route_supernet(args: argparse.Namespace, options: list[str]) -> tuple[Path, Path, float | None]:
    """``ranking_parser``'s checkpoint and corpus: ``--ckpt``'s, or the route's 20-epoch uniform
    supernet trained now with ``options`` (``train_supernet.train``), and the seconds that took."""
    if args.ckpt:
        return args.ckpt, args.data, None
    from train_supernet import train

    began = time.perf_counter()
    last, data = train(args.work, args.table, ["trainer.max_epochs=20", "model.warmup_epochs=10", *options])
    return last, data, round(time.perf_counter() - began, 1)


def write_result(name: str, result: dict) -> Path:
    """``result`` as ``$OUT/NAME`` (the device call brings ``$OUT`` back; /tmp/out elsewhere)."""
    out = Path(os.environ.get("OUT", "/tmp/out"))
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(result, indent=1))
    return out / name


def study_with(config: str, options: list[str], section: str = "search") -> dict:
    """The study's config with ``KEY=VALUE`` options of one section (``search`` or ``retrain``),
    values as YAML reads them (15 is an int, 00:00:06:00 a string)."""
    study = load_config(config)
    for option in options:
        key, _, value = option.partition("=")
        study[section]["options"][key] = yaml.safe_load(value)
    return study


def retrained(*reports: Path) -> tuple[dict[str, ArchSpec], dict[str, float], dict[str, list[str]]]:
    """The reports' distinct retrained networks (``rank.distinct_networks``; a study report's rows
    or ``retrain_archs.py``'s, each network once under its first name): their ArchSpecs,
    stand-alone dev CER and budgets."""
    networks = distinct_networks([r for report in reports for r in json.loads(report.read_text())["rows"]])
    return (
        {n: e["spec"] for n, e in networks.items()},
        {n: e["cer"] for n, e in networks.items()},
        {n: e["budgets"] for n, e in networks.items()},
    )


def ranked_group(
    name: str, reports: list[str], scores: dict[str, dict[str, float]], cer: dict[str, float],
    budgets: dict[str, list[str]], measures: tuple[str, ...], seconds: float,
) -> dict:  # fmt: skip
    """One group of retrained networks ranked by each of ``measures`` of ``scores`` and by the
    parameter count (the reports' rows): Kendall tau against the stand-alone dev CER over every
    network and within each budget, printed and returned with the scores (``angle_ranking.py``,
    ``head_refit.py``)."""
    from supernet.study import rank

    entry = {"reports": reports, "networks": len(scores), "seconds": round(seconds, 1)}
    keys = ("kendall_tau", "within_budget", "kendall_tau_within_budget")
    for measure in measures:
        [quality], _, _ = rank.ranking_quality({name: scores}, cer, measure, budgets)
        entry[measure] = {k: quality.get(k) for k in keys}
    params = {
        r["name"]: r["params"] for report in reports for r in json.loads(Path(report).read_text())["rows"]
    }
    entry["parameter_count"] = rank.parameter_count_ranking(params, {n: cer[n] for n in scores}, budgets)
    print(f"{name}: {len(scores)} networks ({entry['seconds']} s)", flush=True)
    for measure in (*measures, "parameter_count"):
        tau, within = entry[measure]["kendall_tau"], entry[measure].get("kendall_tau_within_budget")
        print(f"  {measure:16s} tau {_signed(tau)}, within a budget {_signed(within)}", flush=True)
    return {**entry, "scores": scores, "retrained_dev_cer": cer, "budgets": budgets}


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"
