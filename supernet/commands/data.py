"""`supernet data import-librispeech ROOT -o MANIFEST` and `supernet data check MANIFEST`."""

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
        "--tokenizer", type=Path, help="tokenizer JSON: count characters outside its vocabulary"
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
    from supernet.data.tokenizer import CharTokenizer

    if args.fix_out:
        _refuse_overwriting_input(args.fix_out, args.manifest)
        check_writable(args.fix_out, "--fix-out")
    tokenizer = CharTokenizer.load(args.tokenizer) if args.tokenizer else None
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


def run(args: argparse.Namespace) -> int:
    if args.data_command == "import-librispeech":
        return _import_librispeech(args)
    return _check(args)
