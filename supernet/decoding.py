"""CTC decoding: greedy (best path) by default, beam search with a lexicon and an LM on request.

Best path is what the training metrics need: fast, batched and dependency-free. Beam search
(``supernet.lm.beam``: torchaudio's flashlight decoder, the optional ``flashlight-text`` extra,
``pip install supernet[decoder]``) is for the final figures, where a word LM built from the
training transcripts (``supernet lm build``) or a KenLM file can fix what the acoustics leave
open. ``DecoderOptions`` is the one description of a decoder that ``evaluate`` and
``transcribe`` take from the command line (``add_decoder_arguments``) and put in their reports.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from losses.ctc import BLANK
from supernet.errors import UserError

DECODERS = ("greedy", "beam")
Decoder = Callable[[torch.Tensor, torch.Tensor], list[str]]  # (log_probs, lengths) -> texts


def greedy_ctc_ids(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = BLANK) -> list[list[int]]:
    """Arg-max per frame, merge repeats, drop blanks; frames past ``lengths`` are ignored.

    ``log_probs`` is ``(B, T, V)``; returns one list of token ids per utterance.
    """
    best = log_probs.argmax(dim=-1)  # (B, T)
    time = torch.arange(best.size(1), device=best.device)
    inside = time[None, :] < lengths.to(best.device)[:, None]
    changed = torch.ones_like(inside)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = inside & changed & (best != blank)
    best, keep = best.cpu(), keep.cpu()
    return [row[mask].tolist() for row, mask in zip(best, keep)]


def greedy_ctc_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer, blank: int = BLANK
) -> list[str]:
    """Best-path transcripts as text, through ``tokenizer.decode``."""
    return [tokenizer.decode(ids) for ids in greedy_ctc_ids(log_probs, lengths, blank)]


class GreedyDecoder:
    """``decoder(log_probs, lengths) -> texts`` by best path, as training scores."""

    def __init__(self, tokenizer, blank: int = BLANK):
        self.tokenizer, self.blank = tokenizer, blank

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return greedy_ctc_decode(log_probs, lengths, self.tokenizer, self.blank)


@dataclass(frozen=True)
class DecoderOptions:
    """How to decode CTC outputs.

    Args:
        kind: ``greedy`` (best path) or ``beam`` (flashlight beam search; the rest is for it).
        beam_size: hypotheses kept after each frame.
        lexicon: a word list, one word a line: only these words come out.
        lm: a word n-gram LM, ARPA (``supernet lm build``) or a KenLM binary; its words are the
            lexicon unless ``lexicon`` is given.
        lm_weight: weight of the LM's log10 scores against the acoustic log-probabilities.
        word_score: score added per word (positive: longer transcripts).
        word_boundary: the token between words (default: the vocabulary's space or ``▁``).

    The weights' defaults come from the built-in corpus' ``--text markov`` dev set
    (docs/decoding.md): by dev score (mean of WER and CER) LM weight 1 with word score 0 is within
    0.1 of the grid's best (0.5 and -1 for the demo's tdnn_d; 1 and 1 for an earlier ``st_nas``
    model), and word score 0 keeps a lexicon without an LM from inserting words. Tune both on your
    own dev set.
    """

    kind: str = "greedy"
    beam_size: int = 50
    lexicon: Path | None = None
    lm: Path | None = None
    lm_weight: float = 1.0
    word_score: float = 0.0
    word_boundary: str | None = None

    def __post_init__(self) -> None:
        """Checks with messages that fit both spellings of the options (``--lm``, ``--decoder.lm``)."""
        if self.kind not in DECODERS:
            raise UserError(f"decoder: unknown {self.kind!r}; choose one of {', '.join(DECODERS)}")
        if self.beam_size < 1:
            raise UserError(f"beam size must be at least 1, got {self.beam_size}")
        if self.kind == "greedy":
            beam_only = (
                ("an LM", self.lm),
                ("a lexicon", self.lexicon),
                ("a word boundary", self.word_boundary),
            )
            given = [what for what, value in beam_only if value]
            if given:
                raise UserError(
                    f"{' and '.join(given)} need{'s' if len(given) == 1 else ''} the beam decoder "
                    "(--decoder beam; in retrain --decoder.kind beam)"
                )
        for path, what in ((self.lm, "language model"), (self.lexicon, "lexicon")):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{path}: {what} not found")

    def describe(self) -> dict[str, Any]:
        """What a report records about the decoder."""
        if self.kind == "greedy":
            return {"kind": "greedy"}
        return {
            "kind": "beam",
            "beam_size": self.beam_size,
            "lexicon": None if self.lexicon is None else str(self.lexicon),
            "lm": None if self.lm is None else str(self.lm),
            "lm_weight": self.lm_weight if self.lm is not None else None,
            "word_score": self.word_score,
            "word_boundary": self.word_boundary,  # None: the vocabulary's space or '▁'
        }


def make_decoder(options: DecoderOptions, tokenizer) -> Decoder:
    """The decoder ``options`` describe, for ``tokenizer``'s vocabulary."""
    if options.kind == "greedy":
        return GreedyDecoder(tokenizer)
    from supernet.lm.beam import BeamSearchDecoder  # flashlight-text: only when asked for

    return BeamSearchDecoder(
        tokenizer,
        beam_size=options.beam_size,
        lexicon=options.lexicon,
        lm=options.lm,
        lm_weight=options.lm_weight,
        word_score=options.word_score,
        word_boundary=options.word_boundary,
    )


def add_decoder_arguments(parser: argparse.ArgumentParser) -> None:
    """``--decoder``, ``--beam-size``, ``--lexicon``, ``--lm``, ``--lm-weight``, ``--word-score``,
    ``--word-boundary``: the flags of ``DecoderOptions``."""
    defaults = DecoderOptions()
    group = parser.add_argument_group("decoding")
    group.add_argument(
        "--decoder", choices=DECODERS, default=defaults.kind, help="CTC decoding (default greedy)"
    )
    group.add_argument(
        "--beam-size",
        type=int,
        default=defaults.beam_size,
        help=f"beam: hypotheses kept a frame (default {defaults.beam_size})",
    )
    group.add_argument(
        "--lexicon", type=Path, help="beam: only these words (one a line; the LM's words by default)"
    )
    group.add_argument(
        "--lm", type=Path, help="beam: word n-gram LM, ARPA (`supernet lm build`) or KenLM binary"
    )
    group.add_argument(
        "--lm-weight",
        type=float,
        default=defaults.lm_weight,
        help=f"beam: weight of the LM's log10 scores (default {defaults.lm_weight})",
    )
    group.add_argument(
        "--word-score",
        type=float,
        default=defaults.word_score,
        help=f"beam: score added per word (default {defaults.word_score})",
    )
    group.add_argument("--word-boundary", help="beam: the word-boundary token (default: space or '▁')")


def decoder_options(args: argparse.Namespace) -> DecoderOptions:
    """``DecoderOptions`` from the flags ``add_decoder_arguments`` defines."""
    return DecoderOptions(
        kind=args.decoder,
        beam_size=args.beam_size,
        lexicon=args.lexicon,
        lm=args.lm,
        lm_weight=args.lm_weight,
        word_score=args.word_score,
        word_boundary=args.word_boundary,
    )
