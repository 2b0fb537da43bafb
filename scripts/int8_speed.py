"""fp32 against dynamic and static int8 on the CPU: size, latency and CER, in one process.

    python scripts/int8_speed.py CKPT [CKPT ...] --test corpus/test.jsonl --out /tmp/int8 \
        [--input waveform features] [--seconds 4 8] [--threads 1 2] [--repeats 40] [--json out.json]

For each checkpoint and input kind it exports the fp32 model (`export_asr_module`), quantises it
both ways (`supernet.deploy.quantize`; static calibrated on the checkpoint's training data, or
`--calibration DATA`), then times the three onnxruntime sessions interleaved: each round runs
fp32, dynamic and static once each on the same input, in an order that rotates, so load from
other work falls on all three alike; the figure is the median over rounds, and the ratios are
fp32's median over the int8 model's, from the same rounds. Batch 1, synthetic audio of
`--seconds`; a features model is timed on its features (the front-end is not in the graph).
CER: greedy transcripts of the first `--test-files` utterances of `--test`, against the references
(as `supernet transcribe` scores them) and against the fp32 model's transcripts. The load
average (`os.getloadavg`) is recorded before and after each timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from supernet.deploy.agreement import char_error_rate
from supernet.deploy.calibration import (
    CALIBRATION_UTTERANCES,
    Calibration,
    calibration_feeds,
    calibration_utterances,
    checkpoint_calibration,
)
from supernet.deploy.checkpoint import load_module
from supernet.deploy.export import export_asr_module, model_inputs
from supernet.deploy.inputs import read_inputs, synthetic_waveforms
from supernet.deploy.metadata import read_metadata
from supernet.deploy.quantize import quantize_int8
from supernet.deploy.runtime import OnnxCTC
from supernet.deploy.transcribe import score, transcribe_items

MODELS = ("fp32", "dynamic", "static")


def build(ckpt: Path, out: Path, kind: str, calibration: Calibration | None, count: int) -> dict[str, Any]:
    """The three models of ``ckpt`` with ``kind`` input; their paths, sizes and the calibration."""
    module = load_module(ckpt)
    name = f"{module.spec.name}.{kind}"
    fp32 = out / f"{name}.onnx"
    export_asr_module(module, fp32, input_kind=kind)
    calibration = calibration or checkpoint_calibration(ckpt)
    if calibration is None:
        raise SystemExit(f"{ckpt}: records no training data; pass --calibration DATA")
    utterances = calibration_utterances(calibration, count)
    feeds = calibration_feeds(module, kind, utterances, read_metadata(fp32)["min_input_length"])
    paths = {
        "fp32": fp32,
        "dynamic": quantize_int8(fp32, out / f"{name}.dynamic.onnx", mode="dynamic"),
        "static": quantize_int8(fp32, out / f"{name}.static.onnx", mode="static", calibration=feeds),
    }
    return {
        "module": module,
        "arch": module.spec.name,
        "paths": paths,
        "bytes": {k: p.stat().st_size for k, p in paths.items()},
        "calibration": {"data": str(calibration.data), "ids": [u.id for u in utterances]},
    }


def time_models(built: dict, kind: str, seconds: float, threads: int, warmup: int, repeats: int) -> dict:
    """Median ms per model over interleaved rounds, and fp32's median over each int8 one's."""
    models = {k: OnnxCTC(built["paths"][k], threads) for k in MODELS}
    module = built["module"]
    waveform = synthetic_waveforms((seconds,), models["fp32"].sample_rate, seed=0)
    min_length = int(models["fp32"].metadata.get("min_input_length", 0))
    inputs, lengths = model_inputs(module, kind, waveform, min_length)
    inputs, lengths = inputs.numpy(), lengths.numpy()
    times: dict[str, list[float]] = {k: [] for k in MODELS}
    load_before = os.getloadavg()[0]
    for r in range(warmup + repeats):
        order = MODELS[r % 3 :] + MODELS[: r % 3]
        for k in order:
            start = time.perf_counter()
            models[k].run(inputs, lengths)
            if r >= warmup:
                times[k].append(1000 * (time.perf_counter() - start))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "seconds": seconds,
        "threads": threads,
        "repeats": repeats,
        "median_ms": med,
        "speedup": {k: med["fp32"] / med[k] for k in ("dynamic", "static")},
        "load": [load_before, os.getloadavg()[0]],
    }


def cer_figures(built: dict, items: list) -> dict:
    """CER against the references for each model, and int8 transcripts against fp32's."""
    out: dict[str, Any] = {}
    texts = {}
    for k in MODELS:
        results = list(transcribe_items(OnnxCTC(built["paths"][k], 1), items, progress=False))
        texts[k] = [r.text or "" for r in results]
        out[k] = score(results)
    for k in ("dynamic", "static"):
        out[f"{k}_vs_fp32"] = char_error_rate(texts["fp32"], texts[k])
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| model | input | threads | audio | fp32 ms | dynamic ms | static ms | dynamic x | static x | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for t in row["timings"]:
            m, s = t["median_ms"], t["speedup"]
            lines.append(
                f"| {row['arch']} | {row['input']} | {t['threads']} | {t['seconds']:g} s | {m['fp32']:.1f} | "
                f"{m['dynamic']:.1f} | {m['static']:.1f} | {s['dynamic']:.2f} | {s['static']:.2f} | "
                f"{t['load'][0]:.1f}-{t['load'][1]:.1f} |"
            )
    lines += ["", "| model | input | MB fp32 / dynamic / static | CER fp32 / dynamic / static | "
              "int8 vs fp32 transcripts (CER) dynamic / static | utterances |", "|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        b, c = row["bytes"], row["cer"]
        mb = " / ".join(f"{b[k] / 2**20:.2f}" for k in MODELS)
        if c is None:
            cers, vs, n = "n/a", "n/a", 0
        else:
            cers = " / ".join(f"{100 * c[k]['cer']:.2f}%" for k in MODELS)
            vs = f"{100 * c['dynamic_vs_fp32']:.2f}% / {100 * c['static_vs_fp32']:.2f}%"
            n = c["fp32"]["utterances"]
        lines.append(f"| {row['arch']} | {row['input']} | {mb} | {cers} | {vs} | {n} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the ONNX models")
    parser.add_argument("--input", nargs="+", default=["waveform"], choices=("waveform", "features"))
    parser.add_argument("--calibration", type=Path, help="corpus whose train split calibrates")
    parser.add_argument("--calibration-utterances", type=int, default=CALIBRATION_UTTERANCES)
    parser.add_argument("--test", type=Path, help="manifest for the CER figures")
    parser.add_argument("--test-files", type=int, default=40)
    parser.add_argument("--seconds", nargs="+", type=float, default=[4.0, 8.0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    calibration = Calibration(args.calibration) if args.calibration else None
    items = read_inputs([args.test])[: args.test_files] if args.test else []
    rows = []
    for ckpt in args.checkpoints:
        for kind in args.input:
            built = build(ckpt, args.out, kind, calibration, args.calibration_utterances)
            timings = []
            for threads in args.threads:
                torch.set_num_threads(threads)
                for seconds in args.seconds:
                    timings.append(time_models(built, kind, seconds, threads, args.warmup, args.repeats))
            rows.append(
                {
                    "checkpoint": str(ckpt),
                    "arch": built["arch"],
                    "input": kind,
                    "bytes": built["bytes"],
                    "calibration": built["calibration"],
                    "timings": timings,
                    "cer": cer_figures(built, items) if items else None,
                }
            )
    print(table(rows))
    if args.json:
        report = {"cpus": os.cpu_count(), "onnxruntime": _version("onnxruntime"), "rows": rows}
        args.json.write_text(json.dumps(report, indent=2, default=_plain) + "\n")
    return 0


def _version(name: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(name)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
