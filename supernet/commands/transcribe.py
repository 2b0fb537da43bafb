"""`supernet transcribe MODEL INPUT... [-o OUT.jsonl] [--decoder beam --lm lm.arpa]`: transcripts.

MODEL is a `supernet retrain` checkpoint (PyTorch) or a model written by `supernet export` (.onnx:
onnxruntime and the model's own metadata, nothing else). INPUT is audio files and/or JSONL
manifests; with references (a manifest's `text`) WER and CER are printed. Audio at another sample
rate is resampled. An unreadable file is named, skipped, and counted at the end; the exit status is
then 1 (0 when every file was transcribed). Decoding is greedy CTC unless ``--decoder beam``
(optionally with ``--lexicon`` and a word ``--lm``: ``supernet.decoding``); the decoder is built
before any file is read, so a missing LM or the missing flashlight-text extra stops it at once.
With `--stream` a checkpoint runs chunk by chunk with caches in PyTorch, and a model exported with
`supernet export --streaming` runs its chunk step in onnxruntime (`supernet.deploy.onnx_streaming`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from tqdm import tqdm

from supernet.decoding import add_decoder_arguments, decoder_options, make_decoder
from supernet.errors import UserError
from supernet.outputs import atomic_write_text, check_writable


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a retrain checkpoint (.ckpt) or an exported model (.onnx)")
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files and/or manifests (.jsonl)")
    parser.add_argument("-o", "--output", type=Path, help="write JSONL (one row a file) instead of printing")
    parser.add_argument("--batch-size", type=int, default=8, help="files decoded together")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: its choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--stream", action="store_true",
        help="run chunk by chunk with caches: a checkpoint (supernet.deploy.streaming; needs global CMVN) "
        "or a streaming ONNX model (`supernet export --streaming`)",
    )  # fmt: skip
    parser.add_argument(
        "--chunk-ms", type=float,
        help="with --stream: audio per chunk (ms; default 320 for a checkpoint, the exported chunk for ONNX)",
    )  # fmt: skip
    add_decoder_arguments(parser)


def _streaming_model(args: argparse.Namespace):
    """A checkpoint run as a stream (``StreamingCTC``), or a streaming ONNX model's chunk step in
    onnxruntime (``OnnxStreamingCTC``; its chunk is the one it was exported with)."""
    if args.chunk_ms is not None and args.chunk_ms <= 0:
        raise UserError(f"--chunk-ms must be positive, got {args.chunk_ms:g}")
    if args.model.suffix == ".onnx":
        from supernet.deploy.onnx_streaming import OnnxStreamingCTC

        if not args.model.is_file():
            raise UserError(f"{args.model}: model not found")
        model = OnnxStreamingCTC(args.model, args.threads)
        asked = model.metadata["streaming"].get("requested_chunk_ms")  # before rounding to whole frames
        if args.chunk_ms is not None and not any(
            math.isclose(args.chunk_ms, ms) for ms in (model.chunk_ms, asked) if ms is not None
        ):
            raise UserError(
                f"{args.model}: its chunk step is {model.chunk_ms:g} ms (fixed at export); leave out "
                f"--chunk-ms or export again with --chunk-ms {args.chunk_ms:g}"
            )
        return model
    from supernet.deploy.streaming import StreamingCTC

    return StreamingCTC.from_checkpoint(args.model, 320.0 if args.chunk_ms is None else args.chunk_ms)


def _whole_utterance_model(args: argparse.Namespace):
    """A checkpoint or a whole-utterance ONNX model; a streaming ONNX model needs ``--stream``."""
    from supernet.deploy.runtime import load_model

    if args.model.suffix == ".onnx" and args.model.is_file():
        from supernet.deploy.onnx_streaming import is_streaming_onnx

        if is_streaming_onnx(args.model):
            raise UserError(
                f"{args.model}: a streaming chunk step (exported with --streaming): run it with --stream"
            )
    return load_model(args.model, args.threads)


def run(args: argparse.Namespace) -> int:
    from supernet.deploy.inputs import read_inputs
    from supernet.deploy.transcribe import score, transcribe_items

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.output:
        check_writable(args.output, "output")
    options = decoder_options(args)
    items = read_inputs(args.inputs)
    model = _streaming_model(args) if args.stream else _whole_utterance_model(args)
    decode = make_decoder(options, model.tokenizer)
    results = []
    for result in transcribe_items(model, items, args.batch_size, not args.no_progress, decode):
        results.append(result)
        if result.error is not None:
            tqdm.write(f"skipped: {result.error}", file=sys.stderr)
        elif not args.output:
            tqdm.write(f"{result.item.id}\t{result.text}", file=sys.stdout)
    if args.output:
        atomic_write_text(
            args.output, "".join(json.dumps(r.to_row(), ensure_ascii=False) + "\n" for r in results)
        )
        print(f"wrote {args.output} ({len(results)} lines)")
    if args.stream and model.chunk_seconds:
        ms = sorted(1000 * s for s in model.chunk_seconds)
        print(
            f"streaming: {len(ms)} chunks of {model.chunk_ms:g} ms, compute per chunk median "
            f"{ms[len(ms) // 2]:.2f} ms, p90 {ms[int(0.9 * (len(ms) - 1))]:.2f} ms"
        )
    skipped = [r for r in results if r.error is not None]
    scores = score(results)
    if scores is not None:
        left_out = f"; {len(skipped)} skipped file(s) not scored" if skipped else ""
        print(
            f"WER {scores['wer']:.2%}  CER {scores['cer']:.2%}  ({scores['utterances']} utterances{left_out})"
        )
    if skipped:
        print(f"{len(skipped)} of {len(results)} files skipped (unreadable):", file=sys.stderr)
        for r in skipped:
            print(f"  {r.item.audio_filepath}", file=sys.stderr)
        return 1
    return 0
