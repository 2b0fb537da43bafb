"""`supernet latency-check`: does the table predict whole networks? Measure and compare.

    supernet latency-check --lut lut.json --space st_nas --n 20 [--seed 0] [--plot check.png]
    supernet latency-check --lut lut.json --arch runs/budget/arch.yaml
    supernet latency-check --lut lut_ort_int8.json --space st_nas --n 20   # in onnxruntime, int8 as the table's

Samples ``--n`` architectures uniformly from the space (and/or takes ``--arch`` files), measures
each ``DerivedNet`` end to end under the table's settings (same device, dtype, threads, batch,
seconds, chunk, CUDA graphs or not, settling time, warm-up and median; the networks cycled
``--rounds`` times so that a slow spell of the machine is shared), and prints ``mape``,
``spearman`` and ``within_10pct`` (fraction of predictions within +-10% of the measurement), one
``name: value`` line each. The noise floor: ``--noise`` of the networks are measured a second time
(after the first pass over all of them), and ``self_within_10pct`` says how often this machine
agrees with itself within 10% (``self_mape`` by how much); the table's figures are read against
it, and a ``verdict`` line says which of the two an error comes from.
Settings given on the command line that differ from the table's are an error unless ``--force``;
so is a table of another runtime (``--runtime``, ``--int8``, ``--int8-mode``) or onnxruntime
version (an int8 table written before int8 modes were recorded reads as dynamic, as it was
measured). A table of
``--runtime onnxruntime`` is checked in onnxruntime: each network exported whole, as ``supernet
export --input features`` writes it (``--graph composed``: its ops' graphs joined, one export per
distinct op instead of one per network), and with an int8 table each network quantised as its
ops were (``int8_mode``).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import torch

from supernet.archspec import ArchSpec
from supernet.commands.profile import add_settings_arguments, runtime_words
from supernet.errors import UserError
from supernet.latency import (
    CHECKED_KEYS,
    LatencyTable,
    LatencyTableError,
    default_settle,
    device_name,
    measure_networks,
)
from supernet.latency.allocator import pin_heap_allocator
from supernet.latency.ort import GRAPHS
from supernet.latency.settings import INT8_MODES, ONNX_OPSET, check_runtime, onnxruntime_version
from supernet.loggers import can_plot, pyplot
from supernet.outputs import check_writable, replaced_when_done
from supernet.space import SearchSpace

# the settings a command line may set (the rest are the machine's: its name, torch, the allocator,
# onnxruntime's version)
MACHINE = ("device_name", "torch", "allocator", "onnxruntime")
OVERRIDES = tuple(key for key in CHECKED_KEYS if key not in MACHINE)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lut",
        required=True,
        type=Path,
        help="a table written by `supernet profile`, or a shipped name (st_nas_cpu)",
    )
    parser.add_argument("--space", help="sample architectures from this space")
    parser.add_argument(
        "--arch",
        type=Path,
        action="append",
        default=[],
        help="also check this ArchSpec (a path or a shipped name: tdnn_d)",
    )
    parser.add_argument("--n", type=int, default=20, help="architectures sampled from the space")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="times every network is cycled")
    parser.add_argument(
        "--noise", type=int, default=8, help="networks measured twice for the machine's noise floor (0: none)"
    )
    parser.add_argument("--plot", type=Path, help="scatter plot of predicted vs measured (PNG)")
    parser.add_argument("--force", action="store_true", help="use the table under other settings anyway")
    parser.add_argument(
        "--graph",
        choices=GRAPHS,
        default="exported",
        help="onnxruntime: each network exported whole (as `supernet export`), or composed of its ops' graphs "
        "(faster: one export per distinct op)",
    )
    add_settings_arguments(parser, defaults=False)


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[ArchSpec]:
    """``n`` architectures, each edge's candidate drawn uniformly."""
    rng = random.Random(seed)
    return [space.derive(space.sample_path(rng), f"{space.name}-sample{i}") for i in range(n)]


def run_settings(table: LatencyTable, args: argparse.Namespace, force: bool) -> dict[str, Any]:
    """The table's settings, with this machine's device name and torch version and any override;
    an error naming the first differing key unless ``force``."""
    settings = dict(table.settings)
    for key in OVERRIDES:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    settings["device_name"] = device_name(settings["device"]) if _device_ok(settings["device"]) else "none"
    settings["torch"] = torch.__version__
    settings["allocator"] = pin_heap_allocator() if settings["device"] == "cpu" else None
    onnx = settings["runtime"] == "onnxruntime"
    settings["onnxruntime"] = onnxruntime_version() if onnx else None
    checked = (*OVERRIDES, *MACHINE)
    table.check({k: settings[k] for k in checked}, force=force)
    try:  # what a forced run asks of a runtime must still be measurable
        check_runtime(
            settings["runtime"],
            settings["device"],
            settings["dtype"],
            settings["int8"],
            settings["int8_mode"],
        )
    except ValueError as err:
        raise LatencyTableError(f"{table.source}: {err}") from err
    if settings["int8"] and not settings["int8_mode"]:  # an fp32 table, forced into int8
        settings["int8_mode"] = INT8_MODES[0]
    if onnx and not settings.get("opset"):  # a torch table, forced into onnxruntime
        settings["opset"] = ONNX_OPSET
    return settings


def _device_ok(device: str) -> bool:
    return device == "cpu" or torch.cuda.is_available()


def spearman(a: list[float], b: list[float]) -> float:
    from torchmetrics.functional import spearman_corrcoef

    return float(
        spearman_corrcoef(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    )


def check(
    table: LatencyTable,
    archs: list[ArchSpec],
    settings: dict,
    warmup: int,
    repeats: int,
    rounds: int = 1,
    settle_s: float = 0.0,
    noise: int = 0,
    graph: str = "exported",
) -> dict[str, Any]:
    """Predicted and measured latency of each architecture, the summary numbers, and with
    ``noise``, the machine's agreement with itself on that many networks measured again
    (onnxruntime: ``graph``, see ``supernet.latency.measure.network_runners``)."""
    predicted = [table.predict(spec) for spec in archs]  # a missing entry fails before measuring
    measured = measure_networks(archs, settings, warmup, repeats, rounds, settle_s, graph)
    rows = [
        {"arch": spec.name, "predicted_ms": p, "measured_ms": m}
        for spec, p, m in zip(archs, predicted, measured)
    ]
    pred, meas = [r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]
    result = {
        "rows": rows,
        **agreement(pred, meas),
        "spearman": spearman(pred, meas) if len(rows) > 2 else float("nan"),
    }
    if noise > 0:
        again = measure_networks(archs[:noise], settings, warmup, repeats, rounds, 0.0, graph)
        for row, value in zip(rows, again):
            row["measured_again_ms"] = value
        floor = agreement(again, meas[: len(again)])
        result.update(
            self_mape=floor["mape"], self_within_10pct=floor["within_10pct"], self_networks=len(again)
        )
    result["verdict"] = verdict(result)
    return result


def agreement(values: list[float], reference: list[float]) -> dict[str, float]:
    """``mape`` of ``values`` against ``reference``, and the fraction within +-10% of it."""
    errors = [abs(v - r) / r for v, r in zip(values, reference)]
    return {"mape": sum(errors) / len(errors), "within_10pct": sum(e <= 0.10 for e in errors) / len(errors)}


def verdict(result: dict[str, Any]) -> str:
    """Whether the table holds, and if not, whether the error is the table's or the machine's."""
    if result["within_10pct"] >= 0.9:
        return "the table holds (>= 90% of predictions within 10%)"
    if "self_mape" not in result:
        return (
            "the table misses; measure the noise floor (--noise N) to tell a bad table from a noisy machine"
        )
    # noise when the table's error is of the machine's own size by the mean error and by the count
    like_noise = result["mape"] <= 1.5 * result["self_mape"] + 0.02
    if like_noise and result["within_10pct"] >= result["self_within_10pct"] - 0.1:
        if result["self_within_10pct"] < 0.9:
            return (
                "the machine disagrees with itself about as much as with the table: its noise, not the "
                "table's error (measure on a quieter machine)"
            )
        return (
            f"the table's error (mape {result['mape']:.3f}) is comparable to this machine's own "
            f"run-to-run error (self mape {result['self_mape']:.3f}): noise, not the table (more "
            "--rounds or --repeats steady the measurement)"
        )
    return (
        f"the table misses more often than this machine's noise explains (mape {result['mape']:.3f}, "
        f"{result['within_10pct']:.0%} within 10%; the machine against itself: mape "
        f"{result['self_mape']:.3f}, {result['self_within_10pct']:.0%}): profile again under these settings"
    )


def plot(result: dict[str, Any], path: Path, title: str) -> None:
    plt = pyplot()
    pred = [r["predicted_ms"] for r in result["rows"]]
    meas = [r["measured_ms"] for r in result["rows"]]
    low, high = 0.9 * min(pred + meas), 1.1 * max(pred + meas)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([low, high], [low, high], "k-", lw=1, label="predicted = measured")
    ax.fill_between([low, high], [0.9 * low, 0.9 * high], [1.1 * low, 1.1 * high], alpha=0.15, label="+-10%")
    ax.scatter(meas, pred, s=18)
    ax.set(
        xlabel="measured latency (ms)", ylabel="predicted latency (ms)", xlim=(low, high), ylim=(low, high)
    )
    ax.set_title(f"{title}\nMAPE {result['mape']:.3f}, within 10%: {result['within_10pct']:.2f}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with replaced_when_done(path) as partial:  # the format goes by the output's name, PNG without a suffix
        fig.savefig(partial, dpi=120, format=path.suffix[1:].lower() or "png")
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    if args.plot:  # before the measurements, not after them
        check_writable(args.plot, "plot")
        args.plot = args.plot if can_plot(f"--plot {args.plot}") else None
    table = LatencyTable.load(args.lut)
    settings = run_settings(table, args, args.force)
    archs = sample_archs(SearchSpace.load(args.space), args.n, args.seed) if args.space else []
    archs += [ArchSpec.from_yaml(path) for path in args.arch]
    if not archs:
        raise UserError("no architecture to check: give --space (with --n) and/or --arch")
    warmup = args.warmup if args.warmup is not None else table.settings.get("warmup", 3)
    repeats = args.repeats if args.repeats is not None else 10
    settle_s = (
        args.settle if args.settle is not None else table.settings.get("settle_s", default_settle(settings))
    )
    result = check(table, archs, settings, warmup, repeats, args.rounds, settle_s, args.noise, args.graph)
    for row in result["rows"]:
        error = row["predicted_ms"] / row["measured_ms"] - 1
        print(
            f"  {row['arch']:<28} predicted {row['predicted_ms']:9.3f} ms  measured {row['measured_ms']:9.3f} ms  {error:+.1%}"
        )
    graph = ", CUDA graphs" if settings.get("cuda_graph") else ""
    if settings["runtime"] == "onnxruntime":
        graph = f", {args.graph} graphs"
    print(
        f"device: {settings['device_name']} ({settings['device']}{runtime_words(settings)}, {settings['dtype']}, "
        f"{settings['threads']} threads, batch {settings['batch']} x {settings['seconds']} s{graph})"
    )
    print(f"mape: {result['mape']:.3f}")
    print(f"spearman: {result['spearman']:.3f}")
    print(f"within_10pct: {result['within_10pct']:.3f}")
    if "self_mape" in result:
        print(
            f"self_within_10pct: {result['self_within_10pct']:.3f} ({result['self_networks']} networks again)"
        )
        print(f"self_mape: {result['self_mape']:.3f}")
    print(f"verdict: {result['verdict']}")
    if args.plot:
        plot(result, args.plot, f"{args.lut.name} on {settings['device_name']}")
        print(f"written: {args.plot}")
    return 0
