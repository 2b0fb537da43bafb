"""`supernet export CKPT -o model.onnx [--int8]`: a retrained model as ONNX, checked against PyTorch.

Writes the fp32 model (and with `--int8` a quantised `<stem>.int8.onnx` beside it: static int8
calibrated on the checkpoint's training data or `--calibration DATA`, or `--int8-mode dynamic`),
each carrying its tokens, feature settings and architecture in the metadata, and prints the parity
of the fp32 model with the checkpoint: the largest log-probability difference over valid frames
(target <= 1e-4) and whether greedy transcripts agree. Exit status 1 when parity is not reached
(the model is kept for inspection). Needs the `deploy` extra (onnx, onnxruntime, onnxscript).

With `--streaming --chunk-ms N` it writes the stateful chunk step instead: fixed-shape feature
chunks in, their log-probs and every cache out (`supernet.deploy.onnx_streaming`), checked streamed
through onnxruntime against the full-utterance pass.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from supernet.errors import UserError
from supernet.outputs import atomic_write_json, check_writable


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a checkpoint written by `supernet retrain`")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the ONNX file to write")
    parser.add_argument("--int8", action="store_true", help="also write an int8 model beside it")
    parser.add_argument(
        "--int8-mode",
        choices=("auto", "static", "dynamic"),
        default="auto",
        help="static (calibrated: convolutions and linears in int8), dynamic (linears only, no "
        "calibration), or auto: static when calibration data is known (default)",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        metavar="DATA",
        help="corpus folder or manifest whose training split calibrates static int8 "
        "(default: the checkpoint's training data)",
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument(
        "--streaming", action="store_true",
        help="export the stateful chunk step instead (features in, caches as inputs and outputs; "
        "supernet.deploy.onnx_streaming); needs a model trained with global CMVN",
    )  # fmt: skip
    parser.add_argument(
        "--chunk-ms", type=float, default=320.0,
        help="with --streaming: audio per chunk step (ms; rounded up to whole output frames)",
    )  # fmt: skip
    parser.add_argument(
        "--input",
        choices=("auto", "waveform", "features"),
        default="auto",
        help="model input: waveform (front-end in the graph), features, or auto (waveform if it exports)",
    )
    parser.add_argument(
        "--check-audio", nargs="+", type=Path, help="audio files or manifests for the parity check"
    )
    parser.add_argument(
        "--check-files", type=int, default=8, help="utterances of --check-audio checked (default 8)"
    )
    parser.add_argument("--report", type=Path, help="also write the figures as JSON here")


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


def run(args: argparse.Namespace) -> int:
    _require_deploy_extra()
    from supernet.deploy.export import export_onnx

    check_writable(args.output, "model")
    if args.report:
        check_writable(args.report, "report")
    if args.streaming:
        return _run_streaming(args)
    report = export_onnx(
        args.checkpoint, args.output, int8=args.int8, int8_mode=args.int8_mode,
        calibration=args.calibration, opset=args.opset, input_kind=args.input,
        check_audio=args.check_audio, check_files=args.check_files,
    )  # fmt: skip
    parity = report["parity"]
    print(
        f"wrote {report['onnx']} ({_mb(report['bytes'])}; input: {report['input']}; opset {report['opset']}; "
        f"arch {report['arch']})"
    )
    if report["waveform_fallback"]:
        print(f"  features input because {report['waveform_fallback']}")
    print(f"parity fp32 onnxruntime vs PyTorch: {parity['summary']}")
    if report["int8"]:
        int8 = report["int8"]
        cer = "n/a (no text)" if int8["cer_vs_fp32"] is None else f"{int8['cer_vs_fp32']:.2%}"
        print(
            f"wrote {int8['onnx']} ({_mb(int8['bytes'])}, {int8['bytes'] / report['bytes']:.2f}x fp32; "
            f"{_int8_kind(int8)}); "
            f"int8 vs fp32 transcripts: CER {cer}; max abs log-prob diff {int8['max_abs_diff']:.2e}"
        )
    return _finish(args, report, parity)


def _finish(args: argparse.Namespace, report: dict, parity: dict) -> int:
    """Write the report if asked; exit status 1 when parity with PyTorch was not reached."""
    if args.report:
        atomic_write_json(args.report, report)
    if not parity["ok"]:
        print(
            "supernet export: parity with PyTorch not reached; the model is kept for inspection",
            file=sys.stderr,
        )
        return 1
    return 0


def _int8_kind(int8: dict) -> str:
    if int8["calibration"] is None:
        return f"{int8['mode']} int8"
    used = int8["calibration"]
    return f"static int8 calibrated on {len(used['ids'])} training utterances of {used['data']}"


def _run_streaming(args: argparse.Namespace) -> int:
    """``--streaming``: the chunk step with its caches, checked streamed against the full pass."""
    from supernet.deploy.onnx_streaming import export_streaming

    if args.int8 or args.input == "waveform":
        what = "--int8" if args.int8 else "--input waveform"
        raise UserError(
            f"--streaming exports a float32 model of feature chunks; {what} is not supported with it"
        )
    report = export_streaming(
        args.checkpoint, args.output, args.chunk_ms, opset=args.opset,
        check_audio=args.check_audio, check_files=args.check_files,
    )  # fmt: skip
    step, parity = report["streaming"], report["parity"]
    print(
        f"wrote {report['onnx']} ({_mb(report['bytes'])}; streaming chunk step of {step['chunk_frames']} "
        f"feature frames ({step['chunk_ms']:g} ms) -> {step['output_frames']} output frames; delay "
        f"{step['delay_ms']:g} ms, {step['flush_chunks']} flush chunk(s); {report['states']} state tensors; "
        f"opset {report['opset']}; arch {report['arch']})"
    )
    if report["note"]:
        print(f"  note: {report['note']}")
    print(f"parity streamed onnxruntime vs full-utterance PyTorch: {parity['summary']}")
    return _finish(args, report, parity)


def _require_deploy_extra() -> None:
    missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if not _importable(name)]
    if missing:
        raise UserError(f"export needs {', '.join(missing)}: pip install 'supernet[deploy]'")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
