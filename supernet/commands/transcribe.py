"""`supernet transcribe MODEL INPUT... [-o OUT.jsonl]`: greedy CTC transcripts of audio files.

MODEL is a `supernet retrain` checkpoint (PyTorch) or a model written by `supernet export` (.onnx:
onnxruntime and the model's own metadata, nothing else). INPUT is audio files and/or JSONL
manifests; with references (a manifest's `text`) WER and CER are printed. Audio at another sample
rate is resampled. An unreadable file is named, skipped, and counted at the end; the exit status is
then 1 (0 when every file was transcribed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from supernet.errors import UserError
from supernet.outputs import atomic_write_text, check_writable


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a retrain checkpoint (.ckpt) or an exported model (.onnx)")
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files and/or manifests (.jsonl)")
    parser.add_argument("-o", "--output", type=Path, help="write JSONL (one row a file) instead of printing")
    parser.add_argument("--batch-size", type=int, default=8, help="files decoded together")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: its choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from supernet.deploy.inputs import read_inputs
    from supernet.deploy.runtime import load_model
    from supernet.deploy.transcribe import score, transcribe_items

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.output:
        check_writable(args.output, "output")
    items = read_inputs(args.inputs)
    model = load_model(args.model, args.threads)
    results = []
    for result in transcribe_items(model, items, args.batch_size, progress=not args.no_progress):
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
