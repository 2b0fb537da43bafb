"""`supernet evaluate CKPT --data PATH [-o REPORT.json]`: accuracy and cost of a trained model.

The report (JSON) holds, per test set, WER/CER with jiwer's word alignment counts (hits,
substitutions, deletions, insertions); the parameter count and the size of the weights; the peak
memory of scoring; and the latency of one utterance (``--seconds``, default 10 s, batch 1) from
waveform to text (features, network, decoding): the median of ``--repeats`` runs after
``--warmup`` runs, on the CPU and, when present, on CUDA, with the real-time factor
(latency / audio duration).

Decoding is greedy unless ``--decoder beam`` (``supernet.decoding``): beam search, optionally with
a lexicon and a word LM (``--lm``, from ``supernet lm build`` or a KenLM file). The beam search runs
on the CPU whatever the device, and its time is part of the latency; the report's ``decoder``
says which decoding made the figures.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` while scoring the test sets. On the CPU,
the process' peak resident set size (``ru_maxrss``) and its growth during scoring; it is a
high-water mark of the whole process (Python, libraries, data), so the growth is what the
evaluation added on top of what was already resident, not a per-tensor count (tracemalloc does
not see PyTorch's allocator).

``--data`` is a corpus folder (its ``test*.jsonl`` sets) or one manifest (all of it, one set).
The checkpoint is self-contained: the architecture and vocabulary come from its hyperparameters.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from supernet.asr_module import ASRModule
from supernet.data.audio import TARGET_SAMPLE_RATE
from supernet.data.datamodule import SpeechDataset, collate_speech, resolve_splits
from supernet.data.features import FeaturePipeline
from supernet.data.manifest import ManifestError, read_manifest
from supernet.data.preflight import check_audio
from supernet.data.tokenizer import normalize_text
from supernet.decoding import Decoder, DecoderOptions, add_decoder_arguments, decoder_options, make_decoder
from supernet.deploy.checkpoint import load_module
from supernet.deploy.graph import feature_pipeline
from supernet.outputs import atomic_write_text, check_writable


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a checkpoint written by `supernet retrain`")
    parser.add_argument("--data", required=True, type=Path, help="corpus folder or manifest (.jsonl)")
    parser.add_argument("-o", "--output", type=Path, help="report path (default: print only)")
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per batch when scoring")
    parser.add_argument("--seconds", type=float, default=10.0, help="utterance length for latency")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs (the median is reported)")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="device for scoring"
    )
    add_decoder_arguments(parser)


def test_sets(data: Path) -> dict[str, list]:
    """``{name: utterances}``: a corpus folder's test sets, or the whole of one manifest."""
    if data.is_file():
        return {data.stem: read_manifest(data)}
    return resolve_splits(data, arch_fraction=0.0)["test"]


@torch.no_grad()
def transcribe(
    module: ASRModule,
    pipeline: FeaturePipeline,
    audio: torch.Tensor,
    lengths: torch.Tensor,
    decode: Decoder | None = None,
) -> list[str]:
    """Waveforms ``(B, S)`` -> texts: features, network, CTC decoding (default: the module's greedy)."""
    features, feature_lengths = pipeline(audio, lengths)
    log_probs, out_lengths = module.net(features, feature_lengths)
    return (decode or module.decode)(log_probs, out_lengths)


def score(
    module, pipeline, utterances, batch_size: int, device: torch.device, decode: Decoder | None = None
) -> dict[str, Any]:
    """WER/CER of one test set with jiwer's alignment counts."""
    import jiwer  # only here: the GPU machines do not have it

    utterances = sorted(utterances, key=lambda u: u.duration)  # similar lengths batch together
    dataset = SpeechDataset(utterances, module.tokenizer, TARGET_SAMPLE_RATE)
    refs, hyps = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_speech):
        audio, lengths = batch["audio"].to(device), batch["audio_lengths"].to(device)
        hyps += transcribe(module, pipeline, audio, lengths, decode)
        refs += [normalize_text(t) for t in batch["texts"]]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {
        "utterances": len(refs),
        "wer": words.wer,
        "cer": chars.cer,
        "hits": words.hits,
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
        "reference_words": words.hits + words.substitutions + words.deletions,
    }


def latency(
    module,
    pipeline,
    device: torch.device,
    seconds: float,
    warmup: int,
    repeats: int,
    decode: Decoder | None = None,
) -> dict[str, Any]:
    """Median wall time of one ``seconds``-long utterance, waveform to text, batch 1."""
    audio = 0.1 * torch.randn(
        1, int(seconds * TARGET_SAMPLE_RATE), generator=torch.Generator().manual_seed(0)
    )
    audio, lengths = audio.to(device), torch.tensor([audio.shape[1]], device=device)
    module, pipeline = module.to(device), pipeline.to(device)
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        transcribe(module, pipeline, audio, lengths, decode)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {"median_ms": 1000 * median, "rtf": median / seconds, "repeats": repeats}
    if device.type == "cpu":
        result["threads"] = torch.get_num_threads()
    else:
        result["name"] = torch.cuda.get_device_name(device)
    return result


def weights_bytes(module: ASRModule) -> int:
    """Size of the network's weights as ``torch.save`` writes them (no optimizer state)."""
    buffer = io.BytesIO()
    torch.save(module.net.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def evaluate(
    checkpoint: Path,
    data: Path,
    batch_size: int = 8,
    seconds: float = 10.0,
    warmup: int = 2,
    repeats: int = 10,
    device: str = "auto",
    decoder: DecoderOptions = DecoderOptions(),
) -> dict[str, Any]:
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    module = load_module(checkpoint)
    pipeline = feature_pipeline(module)
    decode = make_decoder(decoder, module.tokenizer)  # loads the LM once, before any audio
    spec = module.spec
    sets = test_sets(Path(data))
    audio = check_audio([u for utts in sets.values() for u in utts])  # before any decoding, not mid-way
    if audio.errors:
        raise ManifestError(
            f"{data}: {audio.describe_errors()}; fix them with `supernet data check --fix-out`"
        )

    module, pipeline = module.to(device), pipeline.to(device)
    rss_before = _max_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    results = {name: score(module, pipeline, utts, batch_size, device, decode) for name, utts in sets.items()}
    if device.type == "cuda":
        memory = {"device": "cuda", "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    else:
        rss_after = _max_rss_mb()
        memory = {"device": "cpu", "peak_rss_mb": rss_after, "peak_rss_growth_mb": rss_after - rss_before}
    memory["batch_size"] = batch_size

    timing = {"cpu": latency(module, pipeline, torch.device("cpu"), seconds, warmup, repeats, decode)}
    if torch.cuda.is_available():
        timing["cuda"] = latency(module, pipeline, torch.device("cuda"), seconds, warmup, repeats, decode)
    return {
        "checkpoint": str(checkpoint),
        "arch": spec.name,
        "decoder": decoder.describe(),
        "test": results,
        "params": sum(p.numel() for p in module.net.parameters()),
        "weights_bytes": weights_bytes(module),
        "checkpoint_bytes": Path(checkpoint).stat().st_size,
        "flops_per_second": spec.flops_per_second(),
        "total_stride": spec.total_stride,
        "total_lookahead": None
        if math.isinf(spec.total_lookahead)
        else spec.total_lookahead,  # null: unbounded
        "streamable": spec.streamable,
        "memory": memory,
        "latency": {"utterance_seconds": seconds, "batch_size": 1, **timing},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="supernet evaluate", description=__doc__.split("\n\n")[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    if args.output:  # before the evaluation, not after it
        check_writable(args.output, "report")
    decoder = decoder_options(args)  # a missing LM or lexicon file fails here, before the evaluation
    report = evaluate(
        args.checkpoint,
        args.data,
        args.batch_size,
        args.seconds,
        args.warmup,
        args.repeats,
        args.device,
        decoder,
    )
    text = json.dumps(report, indent=2)
    if args.output:
        atomic_write_text(args.output, text + "\n")
    print(text, file=sys.stdout)
    return 0
