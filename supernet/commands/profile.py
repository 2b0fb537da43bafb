"""`supernet profile`: measure a latency lookup table for a search space on this device.

    supernet profile --space st_nas --device cpu --threads 1 --batch 1 --seconds 4 -o lut.json
    supernet profile --space conformer --device cuda --dtype bf16 --batch 16 --seconds 8 --cuda-graph -o lut.json
    supernet profile --space conformer --device cuda --dtype bf16 --chunk-ms 640 -o lut_stream.json
    supernet profile --space st_nas --runtime onnxruntime --int8 -o lut_ort_int8.json   # static int8

Every candidate of every edge and the fixed layers (input op, fixed layers, head with
``--vocab`` outputs and the log-softmax) are timed at the input shape they see inside the
network, inside running networks that together hold every candidate (see
``supernet.latency.NetworkRunner`` for why not alone). ``--arch`` adds hand-designed baselines.
The file records the device name, torch version, dtype, threads, batch, seconds, chunk and
whether passes run as CUDA graphs; using it under other settings is an error unless forced.
On a GPU, ``--cuda-graph`` times the GPU's work alone: without it, small networks are bound by
the host's Python and kernel launches, and their latency follows the host CPU's speed of the
moment (docs/latency.md has the measurements). ``--runtime onnxruntime`` times the ops exported to
ONNX as ``supernet export`` exports models, in onnxruntime on the CPU (``--int8``: quantised as
``supernet export --int8`` quantises, static by default, ``--int8-mode dynamic`` for dynamic), for a
search that targets that deployment (``supernet.latency.ort``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from supernet.archspec import ArchSpec
from supernet.errors import UserError
from supernet.latency import CLOCKS_NAMES, DTYPES, RUNTIMES, make_settings, profile_space
from supernet.latency.settings import INT8_MODES
from supernet.outputs import check_writable, replaced_when_done
from supernet.space import SearchSpace


def add_settings_arguments(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The measurement settings; without ``defaults`` they default to None (taken from a table)."""

    def default(value):
        return value if defaults else None

    parser.add_argument("--device", choices=("cpu", "cuda"), default=default("cpu"))
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=default("torch"),
        help="what runs the network: torch, or onnxruntime (CPU; the ops exported to ONNX as `supernet "
        "export` exports models)",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        default=default(False),
        help="onnxruntime: each op quantised to int8, as `supernet export --int8` quantises models",
    )
    parser.add_argument(
        "--int8-mode",
        choices=INT8_MODES,
        default=None,
        help="with --int8: static (the default, as `supernet export --int8`: QDQ, convolutions and "
        "linears in int8) or dynamic (linears only, activations quantised at run time)",
    )
    parser.add_argument("--dtype", choices=tuple(DTYPES), default=default("fp32"))
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: 1 on the CPU, as on-device inference)",
    )
    parser.add_argument("--batch", type=int, default=default(1), help="utterances per forward pass")
    parser.add_argument("--seconds", type=float, default=default(4.0), help="audio per utterance")
    parser.add_argument(
        "--chunk-ms", type=float, default=None, help="streaming: latency per chunk of this length"
    )
    parser.add_argument("--vocab", type=int, default=default(64), help="output tokens of the head")
    parser.add_argument(
        "--clock",
        choices=CLOCKS_NAMES,
        default=None,
        help="timer: cpu (thread CPU time: steadier on a shared machine; needs --threads 1; the default "
        "on the CPU with one thread) or wall (elapsed time; the default otherwise)",
    )
    parser.add_argument(
        "--cuda-graph",
        action="store_true",
        default=default(False),
        help="GPU: capture each network once as a CUDA graph and time its replays (no launch overhead)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds of running before timing, so clocks settle (default: 2 on cuda, 0 on cpu)",
    )
    parser.add_argument("--warmup", type=int, default=default(3), help="untimed passes before timing")
    parser.add_argument("--repeats", type=int, default=default(10), help="timed passes per network and round")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", required=True, help="a search space YAML or a shipped space name")
    parser.add_argument(
        "--arch",
        type=Path,
        action="append",
        default=[],
        help="also profile this ArchSpec (a path or a shipped name: tdnn_d)",
    )
    add_settings_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3, help="times every network is cycled")
    parser.add_argument(
        "--calibrate",
        type=int,
        default=6,
        help="whole networks spanning the space's cost range, timed beside the ops to calibrate the "
        "table's predictions (0: none)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the table (JSON)")


def run(args: argparse.Namespace) -> int:
    check_writable(args.output, "latency table")  # before minutes of profiling, not after
    threads = args.threads if args.threads is not None else (1 if args.device == "cpu" else None)
    clock = args.clock or ("cpu" if args.device == "cpu" and threads == 1 else "wall")
    try:  # settings that cannot be measured (onnxruntime on a GPU, a mode without --int8): one line
        settings = make_settings(
            args.device,
            args.dtype,
            threads,
            args.batch,
            args.seconds,
            args.chunk_ms,
            args.vocab,
            clock,
            args.cuda_graph,
            args.runtime,
            args.int8,
            args.int8_mode,
        )
    except ValueError as err:
        raise UserError(str(err)) from err
    space = SearchSpace.load(args.space)
    archs = [ArchSpec.from_yaml(path) for path in args.arch]
    table = profile_space(
        space,
        settings,
        args.warmup,
        args.repeats,
        args.rounds,
        archs,
        settle_s=args.settle,
        calibrate=args.calibrate,
    )
    with replaced_when_done(args.output) as partial:  # a killed profile leaves no half table
        table.save(partial)
    timed = [e for e in table.entries.values() if e["ms"] is not None]
    print(
        f"device: {settings['device_name']} ({settings['device']}{runtime_words(settings)}, {settings['dtype']}, "
        f"{settings['threads']} threads)"
    )
    for entry in sorted(timed, key=lambda e: -e["ms"]):
        print(
            f"  {entry['ms']:9.3f} ms  {entry['spec']:<28} {entry['in_dim']}->{entry['out_dim']}, {entry['frames']} frames"
        )
    excluded = sorted({e["spec"] for e in table.entries.values() if e["ms"] is None})
    if excluded:
        print(f"cannot stream (no latency): {', '.join(excluded)}")
    print(f"op_offset_ms: {table.settings['op_offset_ms']:.4f}")
    line = table.calibration
    if line:
        print(
            f"calibration: measured = {line['scale']:.4f} x sum + {line['offset_ms']:.3f} ms over {line['networks']} "
            f"networks (mape {line['raw_mape']:.3f} before, {line['fit_mape']:.3f} after)"
        )
    print(f"written: {args.output} ({len(table.entries)} entries)")
    return 0


def runtime_words(settings: dict) -> str:
    """``", onnxruntime 1.32.0 static int8"`` for an onnxruntime table; nothing for torch."""
    if settings.get("runtime", "torch") == "torch":
        return ""
    int8 = f" {settings.get('int8_mode') or 'dynamic'} int8" if settings.get("int8") else ""
    return f", onnxruntime {settings['onnxruntime']}{int8}"
