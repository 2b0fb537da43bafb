"""CPU latency of a deployed model against its checkpoint: one utterance (batch 1) from waveform
to log-probabilities, the median of ``repeats`` runs after ``warmup``, on ``threads`` threads.

    python -m supernet.deploy.bench CKPT MODEL.onnx [MODEL.int8.onnx ...] [--seconds 4] [--repeats 30]

The figures of ``docs/deploy.md`` come from here. Greedy decoding is left out (the same for all).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from supernet.deploy.inputs import synthetic_waveforms
from supernet.deploy.runtime import CTCModel, OnnxCTC, TorchCTC, pad_waveforms


def median_ms(model: CTCModel, seconds: float, warmup: int, repeats: int) -> dict[str, Any]:
    audio, lengths = pad_waveforms(synthetic_waveforms((seconds,), model.sample_rate, seed=0))
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        model.log_probs(audio, lengths)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "repeats": repeats, "warmup": warmup}


def latency_report(
    checkpoint: str | Path,
    models: list[str | Path],
    seconds: float = 4.0,
    threads: int = 1,
    warmup: int = 5,
    repeats: int = 30,
) -> dict[str, Any]:
    """``{name: timing}`` for the checkpoint in PyTorch and each ONNX model in onnxruntime."""
    torch.set_num_threads(threads)
    report = {"seconds": seconds, "threads": threads, "batch": 1, "torch": torch.__version__}
    report["pytorch"] = median_ms(TorchCTC(checkpoint), seconds, warmup, repeats)
    for path in models:
        report[Path(path).name] = {
            **median_ms(OnnxCTC(path, threads), seconds, warmup, repeats),
            "bytes": Path(path).stat().st_size,
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supernet.deploy.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    report = latency_report(
        args.checkpoint, args.models, args.seconds, args.threads, args.warmup, args.repeats
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
