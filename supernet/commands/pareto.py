"""`supernet pareto`: WER against predicted latency and against parameters, with the Pareto front.

    supernet pareto runs/tdnn_d runs/searched runs/budget --lut lut.json -o pareto.png

Each RUN is a folder written by ``supernet retrain`` (``metrics.json`` and ``arch.yaml``) or its
``metrics.json``. WER is the ``--test-set`` entry of ``metrics.json`` (default: ``test`` when
present, else the mean over the test sets); latency is the table's prediction for ``arch.yaml``;
parameters are the run's own count. A run is on the front when no other run is at least as good
on both axes and better on one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from supernet.archspec import ArchSpec
from supernet.latency import LatencyTable
from supernet.loggers import can_plot, pyplot
from supernet.outputs import check_writable, replaced_when_done


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="retrain run folders (or their metrics.json)")
    parser.add_argument(
        "--lut", type=Path, help="latency table (a path or a shipped name) for the predicted latency axis"
    )
    parser.add_argument("--test-set", help="which test set of metrics.json (default: test, else the mean)")
    parser.add_argument("--metric", choices=("wer", "cer"), default="wer", help="error rate on the y axis")
    parser.add_argument("-o", "--output", type=Path, default=Path("pareto.png"), help="the plot (PNG)")


def read_run(path: Path, test_set: str | None, metric: str = "wer") -> dict[str, Any]:
    metrics_path = path / "metrics.json" if path.is_dir() else path
    arch_path = metrics_path.parent / "arch.yaml"
    for needed in (metrics_path, arch_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{path}: no {needed.name} (expected a `supernet retrain` run folder)")
    metrics = json.loads(metrics_path.read_text())
    wer = metrics.get(metric)
    if not isinstance(wer, dict) or not wer or any(v is None for v in wer.values()):
        raise ValueError(f"{metrics_path}: field {metric!r} must map test sets to numbers, got {wer!r}")
    if test_set is not None and test_set not in wer:
        raise ValueError(f"{metrics_path}: field {metric!r} has no test set {test_set!r} (has {sorted(wer)})")
    key = test_set or ("test" if "test" in wer else None)
    return {
        "run": "/".join(metrics_path.parent.parts[-2:]),  # e.g. budget_5.4/retrain
        "arch": ArchSpec.from_yaml(arch_path),
        "wer": float(wer[key]) if key else sum(wer.values()) / len(wer),
        "params": int(metrics["params"]),
    }


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For each (cost, error): is it on the front (no other point dominates it)?"""

    def dominates(a, b):
        return a[0] <= b[0] and a[1] <= b[1] and a != b

    return [not any(dominates(other, point) for other in points) for point in points]


def plot(runs: list[dict[str, Any]], axes: list[tuple[str, str]], path: Path, metric: str = "wer") -> None:
    plt = pyplot()
    fig, subplots = plt.subplots(1, len(axes), figsize=(5 * len(axes), 4), squeeze=False)
    for ax, (key, label) in zip(subplots[0], axes):
        xs, ys = [r[key] for r in runs], [100 * r["wer"] for r in runs]
        front = pareto_front(list(zip(xs, ys)))
        ax.scatter(xs, ys, c=["tab:red" if f else "tab:blue" for f in front], s=24, zorder=3)
        for x, y, run in zip(xs, ys, runs):
            ax.annotate(run["run"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        on_front = sorted((x, y) for x, y, f in zip(xs, ys, front) if f)
        ax.step(
            [p[0] for p in on_front],
            [p[1] for p in on_front],
            where="post",
            color="tab:red",
            label="Pareto front",
        )
        ax.set(xlabel=label, ylabel=f"{metric.upper()} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with replaced_when_done(path) as partial:  # the format goes by the output's name, PNG without a suffix
        fig.savefig(partial, dpi=120, format=path.suffix[1:].lower() or "png")
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    check_writable(args.output, "plot")
    runs = [read_run(path, args.test_set, args.metric) for path in args.runs]
    axes = [("params", "parameters")]
    if args.lut:
        table = LatencyTable.load(args.lut)
        for r in runs:
            r["latency_ms"] = table.predict(r["arch"])
        s = table.settings
        axes.insert(0, ("latency_ms", f"predicted latency (ms, {s['device_name']}, batch {s['batch']})"))
    fronts = {key: pareto_front([(r[key], r["wer"]) for r in runs]) for key, _ in axes}
    header = (
        f"{'run':<28} {'arch':<24} {args.metric.upper():>7}"
        + (f" {'latency ms':>11}" if args.lut else "")
        + f" {'params':>11}  front"
    )
    print(header)
    for i, r in enumerate(runs):
        line = f"{r['run']:<28} {r['arch'].name:<24} {100 * r['wer']:6.2f}%"
        if args.lut:
            line += f" {r['latency_ms']:11.3f}"
        marks = [
            name
            for (key, _), name in zip(axes, ("latency", "params") if args.lut else ("params",))
            if fronts[key][i]
        ]
        print(f"{line} {r['params']:11,d}  {', '.join(marks) or '-'}")
    if can_plot(f"the plot {args.output}"):
        plot(runs, axes, args.output, args.metric)
        print(f"written: {args.output}")
    return 0
