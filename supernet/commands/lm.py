"""`supernet lm build --data CORPUS -o lm.arpa [--order 3] [--langs en,es]`: a word n-gram LM.

Interpolated modified Kneser-Ney (``supernet.lm.kneser_ney``) over the training transcripts only,
written as ARPA for ``--decoder beam --lm lm.arpa`` in ``evaluate`` and ``transcribe`` (KenLM
loads it; a KenLM model of your own works there too). Prints what was built as JSON, with the
dev split's perplexity and out-of-vocabulary rate: the dev text is scored, never counted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from supernet.errors import UserError
from supernet.outputs import check_writable


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="lm_command", required=True, metavar="ACTION")
    build = sub.add_parser("build", help="estimate an ARPA word LM from a corpus' training transcripts")
    build.add_argument("--data", required=True, type=Path, help="corpus folder or manifest (.jsonl)")
    build.add_argument("-o", "--output", required=True, type=Path, help="the ARPA file to write")
    build.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    build.add_argument("--langs", help="comma-separated languages to keep (default: all)")


def run(args: argparse.Namespace) -> int:
    from supernet.lm.build import build_lm

    if args.order < 1:
        raise UserError(f"--order must be at least 1, got {args.order}")
    if not args.data.exists():
        raise FileNotFoundError(f"{args.data}: corpus folder or manifest not found (--data)")
    check_writable(args.output, "language model")
    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()] if args.langs else None
    report = build_lm(args.data, args.output, args.order, langs)
    print(json.dumps(report, indent=2))
    return 0
