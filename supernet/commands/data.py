"""`supernet data import-librispeech ROOT -o MANIFEST`, `supernet data check MANIFEST`,
`supernet data export-lhotse CORPUS OUT` (a corpus as lhotse CutSets) and
`supernet data batches CORPUS` (batch sizes and padding of both samplers)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from supernet.data.audio import TARGET_SAMPLE_RATE
from supernet.errors import UserError
from supernet.outputs import check_writable


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    imp = sub.add_parser("import-librispeech", help="manifest from a LibriSpeech-layout tree")
    imp.add_argument("root", type=Path, help="folder holding SPEAKER/CHAPTER/*.flac and *.trans.txt")
    imp.add_argument("-o", "--output", type=Path, required=True, help="manifest to write (JSONL)")
    imp.add_argument("--skip-bad", action="store_true", help="write the good utterances despite problems")

    check = sub.add_parser("check", help="validate a manifest against its audio and print a report")
    check.add_argument("manifest", type=Path)
    check.add_argument(
        "--tokenizer", type=Path, help="tokenizer JSON (any kind): count characters outside its vocabulary"
    )
    check.add_argument("--sample-rate", type=int, default=TARGET_SAMPLE_RATE, help="target rate (Hz)")
    check.add_argument("--skip-bad", action="store_true", help="count bad lines instead of failing")
    check.add_argument(
        "--fix-out", type=Path, help="write the good lines to this manifest (not the one checked; atomic)"
    )
    check.add_argument(
        "--header-only",
        action="store_true",
        help="read audio headers and last frames only (faster; catches truncated files)",
    )

    export = sub.add_parser(
        "export-lhotse",
        help="write a corpus as lhotse CutSets (folder -> OUT/cuts_SPLIT.jsonl.gz; manifest -> one file)",
    )
    export.add_argument(
        "corpus", type=Path, help="corpus folder (train.jsonl, dev.jsonl, test*.jsonl) or manifest"
    )
    export.add_argument("out", type=Path, help="output folder, or a .jsonl.gz file for a single manifest")

    batches = sub.add_parser("batches", help="batches per epoch and padding of the train split, per sampler")
    batches.add_argument("corpus", type=Path, help="corpus folder or manifest (JSONL or lhotse)")
    batches.add_argument("--max-frames", type=int, default=20000, help="cap on batch size x longest item")
    batches.add_argument("--sampler", choices=("buckets", "lhotse", "both"), default="both")
    batches.add_argument("--num-buckets", type=int, default=16)
    batches.add_argument("--quadratic-duration", type=float, help="lhotse's penalty for long items (s)")
    batches.add_argument("--epochs", type=int, default=3, help="epochs to draw (padding is their mean)")


def _import_librispeech(args: argparse.Namespace) -> int:
    from supernet.data.librispeech import LibriSpeechError, import_librispeech

    try:
        scan = import_librispeech(
            args.root, args.output, skip_bad=args.skip_bad, progress=sys.stderr.isatty()
        )
    except LibriSpeechError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    hours = sum(u.duration for u in scan.utterances) / 3600
    speakers = len({u.speaker for u in scan.utterances})
    print(f"wrote {args.output}: {len(scan.utterances)} utterances, {hours:.3f} h, {speakers} speakers")
    if scan.problems:
        print(f"skipped {len(scan.problems)} problem(s):")
        for problem in scan.problems:
            print(f"  {problem}")
    return 0


def _refuse_overwriting_input(out: Path, manifest: Path) -> None:
    """`--fix-out` onto the manifest being checked would replace the evidence with its clean part."""
    same = out.resolve() == manifest.resolve() or (
        out.exists() and manifest.exists() and os.path.samefile(out, manifest)
    )
    if same:
        raise UserError(
            f"--fix-out {out} is the manifest being checked ({manifest}); write the clean manifest "
            "to another file and replace the original yourself if you want to"
        )


def _check(args: argparse.Namespace) -> int:
    from supernet.data.manifest import check_manifest, write_clean_manifest
    from supernet.data.tokenizer import load_tokenizer

    if args.fix_out:
        _refuse_overwriting_input(args.fix_out, args.manifest)
        check_writable(args.fix_out, "--fix-out")
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    report = check_manifest(
        args.manifest,
        tokenizer=tokenizer,
        sample_rate=args.sample_rate,
        decode=not args.header_only,
        progress=sys.stderr.isatty(),
    )
    print(report.format())
    if args.fix_out:
        count = write_clean_manifest(report, args.fix_out)
        print(f"wrote {count} good lines to {args.fix_out}")
    if report.errors and not args.skip_bad:
        print(
            f"error: {report.bad_lines} bad line(s) in {args.manifest} (use --skip-bad to skip them)",
            file=sys.stderr,
        )
        return 1
    if report.bad_lines:
        print(f"skipped {report.bad_lines} bad line(s)")
    return 0 if report.good else 1


def _export_lhotse(args: argparse.Namespace) -> int:
    """Each split of a corpus folder to `OUT/cuts_SPLIT.jsonl.gz` (named so that `--data OUT` reads
    the same splits back), or one manifest to one CutSet file."""
    from supernet.data import lhotse_io
    from supernet.data.datamodule import read_corpus_folder
    from supernet.data.manifest import read_manifest

    if args.corpus.is_dir():
        if args.out.name.endswith((".jsonl", ".jsonl.gz")):
            raise UserError(f"{args.corpus} is a corpus folder: give an output folder, not {args.out}")
        train, dev, tests = read_corpus_folder(args.corpus)
        targets = {
            lhotse_io.cuts_file(args.out, split): utts
            for split, utts in {"train": train, "dev": dev, **tests}.items()
        }
    elif args.corpus.is_file():
        if not args.out.name.endswith((".jsonl", ".jsonl.gz")):
            raise UserError(
                f"{args.corpus} is one manifest: give an output file NAME.jsonl.gz, not {args.out}"
            )
        targets = {args.out: read_manifest(args.corpus)}
    else:
        raise UserError(f"{args.corpus}: neither a corpus folder nor a manifest file")
    for path in targets:
        check_writable(path, "export-lhotse output")
    for path, utterances in targets.items():
        count = lhotse_io.write_cuts(utterances, path)
        hours = sum(u.duration for u in utterances) / 3600
        print(f"wrote {path}: {count} cuts, {hours:.3f} h")
    return 0


def _batches(args: argparse.Namespace) -> int:
    """What each sampler makes of the train split: batches per epoch, mean batch, padding."""
    from supernet.data.datamodule import SpeechDataModule

    kinds = ("buckets", "lhotse") if args.sampler == "both" else (args.sampler,)
    for kind in kinds:
        data = SpeechDataModule(
            str(args.corpus),
            max_frames=args.max_frames,
            num_buckets=args.num_buckets,
            num_workers=0,
            sampler=kind,
            quadratic_duration=args.quadratic_duration if kind == "lhotse" else None,
        )
        data.setup("validate")  # reads the audio headers: batches are sized by true lengths
        sampler = data.sampler("train", shuffle=True)
        padding = []
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)
            padding.append(sampler.padding_fraction)
            print(f"{kind:8s} epoch {epoch}: {sampler.describe()}")
        print(f"{kind:8s} mean padding over {args.epochs} epoch(s): {100 * sum(padding) / len(padding):.2f}%")
    return 0


def run(args: argparse.Namespace) -> int:
    commands = {
        "import-librispeech": _import_librispeech,
        "export-lhotse": _export_lhotse,
        "batches": _batches,
    }
    return commands.get(args.data_command, _check)(args)
