"""`supernet corpus`: build the synthetic multilingual corpus (espeak-ng speech of real words).

    supernet corpus --out data/demo --langs en,es,de --minutes 30 --seed 0 [--workers N] [--overwrite]
        [--text random|markov]

Prints each split's utterances, minutes and speakers, and each language's word counts. A folder
that already holds this very corpus is kept as is; one holding anything else is replaced only with
``--overwrite``. What is built, and how: ``supernet.data.corpus``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from supernet.data.corpus import DEFAULT_LANGS, CorpusError, build_corpus, build_parameters, holds_corpus
from supernet.data.sentences import TEXT_KINDS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="corpus folder to write")
    parser.add_argument(
        "--langs", default=",".join(DEFAULT_LANGS), help="comma-separated languages (en,es,de)"
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="total minutes of audio (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument(
        "--text",
        choices=TEXT_KINDS,
        default="random",
        help="random words (default), or markov: sentences with structure a word LM can learn",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what --out holds (another corpus or other files) once the new corpus is complete",
    )


def run(args: argparse.Namespace) -> int:
    langs = tuple(lang.strip() for lang in args.langs.split(",") if lang.strip())
    kept = holds_corpus(Path(args.out), build_parameters(langs, args.minutes, args.seed, args.text))
    try:
        out = build_corpus(args.out, langs, args.minutes, args.seed, args.workers, args.overwrite, args.text)
    except CorpusError as err:
        print(f"supernet corpus: error: {err}", file=sys.stderr)
        return 2
    meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    for split, info in meta["splits"].items():
        print(
            f"{split:5s} {info['utterances']:5d} utterances {info['hours'] * 60:7.2f} min {len(info['speakers'])} speakers"
        )
    for lang, info in meta["languages"].items():
        print(f"{lang}: {info['words']} words, {info['distinct_words']} distinct")
    print(f"kept {out}: it already holds this corpus" if kept else f"wrote {out}")
    return 0
