"""`supernet demo`: the whole pipeline on the built-in corpus, on a laptop CPU.

corpus (if missing) -> search (st on st_nas) -> extract -> retrain the derived model and the
TDNN-D baseline with the same recipe -> a table of both. Every stage is the ordinary command
(`supernet search`, `supernet retrain`) with its files under RUN/, so any stage can be rerun or
inspected alone. ``--dim`` shrinks the space and the baseline alike, so the comparison stays fair.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from supernet import run_folder
from supernet.archspec import ArchSpec
from supernet.errors import UserError
from supernet.outputs import atomic_write_json
from supernet.shipped import shipped_path
from supernet.space import SearchSpace, resolve_space_path

BASELINE = shipped_path("arch", "tdnn_d")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    parser.add_argument(
        "--data", default="data/demo", help="corpus folder; built if missing (default data/demo)"
    )
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="minutes of audio when building the corpus"
    )
    parser.add_argument("--space", default="st_nas", help="search space (default st_nas)")
    parser.add_argument("--method", default="st", choices=["darts", "gumbel", "st"])
    parser.add_argument("--dim", type=int, default=192, help="model width of the space and the baseline")
    parser.add_argument("--search-epochs", type=int, default=12)
    parser.add_argument("--warmup-epochs", type=int, default=4)
    parser.add_argument("--retrain-epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--logger",
        default="auto",
        help="auto (W&B offline if installed, else CSV) | wandb | csv | tensorboard | none",
    )
    parser.add_argument(
        "--lut", default=None, help="a latency table (supernet profile) for predicted latency"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the demo run that --out holds")


def _with_dim(data: dict, dim: int, name: str) -> dict:
    return {**data, "dim": dim, "name": name}


def _latency_of(lut: str | None, spec: ArchSpec) -> float | None:
    if lut is None:
        return None
    from supernet.latency import LatencyTable

    return float(LatencyTable.load(lut).predict(spec))


def _row(name: str, run: Path, spec: ArchSpec, lut: str | None) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "model": name,
        "layers": " ".join(spec.layers),
        "params": metrics["params"],
        "dev_wer": metrics["dev_wer"],
        "dev_cer": metrics["dev_cer"],
        "test_wer": metrics["wer"].get("test"),
        "test_cer": metrics["cer"].get("test"),
        "latency_ms": _latency_of(lut, spec),
        "train_seconds": metrics["train_seconds"],
    }


def format_table(rows: list[dict]) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:5.1f}%"

    lines = [
        f"{'model':<10} {'params':>9} {'dev WER':>8} {'dev CER':>8} {'test WER':>8} {'test CER':>8} "
        f"{'pred. ms':>8} {'train s':>8}  layers"
    ]
    for r in rows:
        lat = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}"
        lines.append(
            f"{r['model']:<10} {r['params']:>9,} {pct(r['dev_wer']):>8} {pct(r['dev_cer']):>8} "
            f"{pct(r['test_wer']):>8} {pct(r['test_cer']):>8} {lat:>8} {r['train_seconds']:>8.0f}  {r['layers']}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from supernet.commands.retrain import main as retrain_main
    from supernet.commands.search import main as search_main
    from supernet.data.corpus import ensure_demo_corpus

    start = time.perf_counter()
    out = Path(args.out)
    stages = [out / "search", out / "derived", out / "baseline"]
    occupied = [stage for stage in stages if run_folder.run_files(stage)]
    if occupied and not args.overwrite:
        raise UserError(
            f"{out} already holds a demo run ({', '.join(s.name for s in occupied)}): "
            "replace it with --overwrite, or choose another --out"
        )
    replace = ["--overwrite", "true"] if args.overwrite else []
    out.mkdir(parents=True, exist_ok=True)

    space_data = yaml.safe_load(resolve_space_path(args.space).read_text())
    space_file = out / "space.yaml"
    space_file.write_text(
        yaml.safe_dump(_with_dim(space_data, args.dim, space_data["name"]), sort_keys=False)
    )
    space = SearchSpace.from_yaml(space_file)
    baseline = ArchSpec.from_dict(_with_dim(ArchSpec.from_yaml(BASELINE).to_dict(), args.dim, "tdnn_d"))
    baseline_file = out / "tdnn_d.yaml"
    baseline.to_yaml(baseline_file)
    if args.lut is not None:  # a table that cannot price these networks fails now, not after training
        from supernet.latency import LatencyTable

        table = LatencyTable.load(args.lut)
        table.costs(space)
        table.predict(baseline)
    data = ensure_demo_corpus(args.data, minutes=args.minutes)

    common = ["--data", str(data), "--seed_everything", str(args.seed), "--logger", args.logger, *replace]
    print(
        f"[demo] search: {args.method} on {space.name} ({space.num_paths:,} paths), {args.search_epochs} epochs"
    )
    search_main(
        [
            *common,
            "--out",
            str(out / "search"),
            "--model.space",
            str(space_file),
            "--model.method",
            args.method,
            "--trainer.max_epochs",
            str(args.search_epochs),
            "--model.warmup_epochs",
            str(args.warmup_epochs),
        ]
    )
    derived = ArchSpec.from_yaml(out / "search" / "arch.yaml")
    recipe = ["--trainer.max_epochs", str(args.retrain_epochs)]
    print(f"[demo] retrain the derived model: {' '.join(derived.layers)}")
    retrain_main(
        [*common, *recipe, "--arch", str(out / "search" / "arch.yaml"), "--out", str(out / "derived")]
    )
    print("[demo] retrain the TDNN-D baseline with the same recipe")
    retrain_main([*common, *recipe, "--arch", str(baseline_file), "--out", str(out / "baseline")])

    rows = [
        _row("searched", out / "derived", derived, args.lut),
        _row("tdnn_d", out / "baseline", baseline, args.lut),
    ]
    table = format_table(rows)
    atomic_write_json(out / "demo.json", {"rows": rows, "seconds": time.perf_counter() - start})
    print("\n" + table)
    print(f"\nparameter-free layers in the searched model: {derived.parameter_free_count}")
    print(f"run folder: {out}  ({time.perf_counter() - start:.0f} s in all)")
    return 0
