"""CTC beam search with torchaudio's flashlight decoder, optionally with a lexicon and a word LM.

Three modes, by what is given:

- nothing: lexicon-free search over the model's tokens. With beam 1 it is greedy decoding (the
  tests hold it to that); a wider beam keeps several prefixes, each scored by its best alignment
  (flashlight's max merge); on the built-in corpus it gave greedy's WER and CER.
- a lexicon (a word list): only its words come out, each a sequence of tokens (``lexicon``).
- an LM (ARPA or a KenLM binary): words are scored by it at ``lm_weight`` (its log10
  probabilities, scaled) plus ``word_score`` per word. flashlight scores a word LM only with a
  lexicon, so without ``--lexicon`` the lexicon is the LM's own 1-grams (an ARPA file; a binary
  model needs ``--lexicon``).

The word boundary (flashlight's "silence" token) is a parameter, read from the tokenizer when not
given (its ``word_boundary``, or the vocabulary's space or lone ``▁``), so subword tokenizers plug
in: their lexicon spellings come from their own ``encode``.

flashlight adds a boundary before the first frame and after the last, so the search's own
boundary tokens at a transcript's ends are dropped from the ids: what is left is the tokens the
model emitted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from supernet.errors import UserError
from supernet.lm.arpa import ArpaError, arpa_words
from supernet.lm.lexicon import read_word_list, spell_words, token_names, write_lexicon

WORD_BOUNDARIES = (" ", "\u2581")  # characters' space, SentencePiece's word start "▁"
UNKNOWN_WORD = "<unk>"  # flashlight's (and ARPA's) unknown word
INSTALL_HINT = "pip install 'supernet[decoder]'"


def load_ctc_decoder():
    """torchaudio's ``ctc_decoder``, or a UserError naming the missing extra."""
    try:
        import flashlight.lib.text.decoder  # noqa: F401  (torchaudio hides its absence behind a RuntimeError)
        from torchaudio.models.decoder import ctc_decoder
    except (ImportError, RuntimeError) as err:
        raise UserError(
            f"beam-search decoding needs the flashlight-text package: {INSTALL_HINT} ({err})"
        ) from err
    return ctc_decoder


def word_boundary_of(tokenizer) -> str:
    """The tokenizer's word-boundary token: its ``word_boundary`` where it has one that is a token,
    else the first of ``WORD_BOUNDARIES`` its vocabulary holds."""
    vocab = list(tokenizer.vocab)
    own = getattr(tokenizer, "word_boundary", None)
    for token in (own, *WORD_BOUNDARIES):
        if token in vocab:
            return token
    raise UserError(
        "beam search needs a word-boundary token, and the vocabulary has none of "
        f"{', '.join(map(repr, WORD_BOUNDARIES))}; name one (--word-boundary; in retrain --decoder.word_boundary)"
    )


def with_boundary_frame(
    log_probs: torch.Tensor, lengths: torch.Tensor, boundary: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One more frame after each utterance's last, certain to be the boundary: the last word's
    spelling ends with a boundary the model had no reason to emit, and this frame gives it free."""
    batch, _, tokens = log_probs.shape
    frame = torch.full((tokens,), -1e9)
    frame[boundary] = 0.0
    extended = torch.cat([log_probs, log_probs.new_full((batch, 1, tokens), -1e9)], dim=1)
    extended[torch.arange(batch), lengths.long()] = frame
    return extended, lengths + 1


class BeamSearchDecoder:
    """``decoder(log_probs (B, T, V), lengths (B,)) -> texts``; ``ids`` gives the token ids.

    Args:
        tokenizer: the model's tokenizer (``vocab``, ``encode``, ``decode``).
        beam_size: hypotheses kept after each frame.
        lexicon: a word list (one word a line); only its words are produced.
        lm: an ARPA or KenLM binary word LM; without ``lexicon`` its 1-grams are the lexicon.
        lm_weight, word_score: the LM's weight and the score added per word.
        word_boundary: the boundary token (default: ``word_boundary_of(tokenizer)``).
        blank: the CTC blank's id.
    """

    def __init__(
        self,
        tokenizer,
        beam_size: int = 50,
        lexicon: str | Path | None = None,
        lm: str | Path | None = None,
        lm_weight: float = 1.0,
        word_score: float = 0.0,
        word_boundary: str | None = None,
        blank: int = 0,
    ):
        ctc_decoder = load_ctc_decoder()
        self.tokenizer = tokenizer
        vocab = list(tokenizer.vocab)
        boundary = word_boundary_of(tokenizer) if word_boundary is None else word_boundary
        if boundary not in vocab:
            raise UserError(f"word boundary {boundary!r} is not a token of the model's vocabulary")
        self.boundary_id = vocab.index(boundary)
        self.blank = blank
        names = token_names(vocab)
        if lm is not None and not Path(lm).is_file():
            raise FileNotFoundError(f"{lm}: language model not found")
        words = self._words(lexicon, lm)
        self.uses_lexicon = words is not None
        # a space between words is a token of its own: spellings end with it (supernet.lm.lexicon)
        self.boundary_frame = self.uses_lexicon and boundary.isspace()
        with tempfile.TemporaryDirectory(prefix="supernet-lexicon-") as folder:
            lexicon_file = None
            if words is not None:
                spellings, self.unspellable = spell_words(
                    words, tokenizer, names, boundary, UNKNOWN_WORD, trailing_boundary=self.boundary_frame
                )
                if not spellings:
                    raise UserError(
                        f"{lexicon or lm}: none of its {len(words)} words can be spelled with the "
                        "model's tokens (another language or alphabet?)"
                    )
                lexicon_file = str(write_lexicon(spellings, Path(folder) / "lexicon.txt"))
            try:
                self.decoder = ctc_decoder(
                    lexicon=lexicon_file,
                    tokens=names,
                    lm=None if lm is None else str(lm),
                    beam_size=beam_size,
                    lm_weight=lm_weight,
                    word_score=word_score,
                    blank_token=names[blank],
                    sil_token=names[self.boundary_id],
                    unk_word=UNKNOWN_WORD,
                )
            except RuntimeError as err:  # KenLM's own errors (a malformed file) and a missing KenLM
                reason = str(err).strip().splitlines()[-1]  # its last line says what is wrong
                raise UserError(f"{lm}: cannot load the language model ({reason})") from err

    @staticmethod
    def _words(lexicon, lm) -> list[str] | None:
        """The lexicon's words: the file's, else the LM's 1-grams, else None (lexicon-free)."""
        if lexicon is not None:
            return read_word_list(lexicon)
        if lm is None:
            return None
        try:
            return arpa_words(lm)
        except ArpaError as err:
            raise UserError(f"{err}; give a lexicon (one word a line) to decode with it") from err

    def hypotheses(self, log_probs: torch.Tensor, lengths: torch.Tensor):
        """The best hypothesis of each utterance (torchaudio's ``CTCHypothesis``)."""
        emissions, lengths = log_probs.detach().float().cpu(), lengths.detach().cpu()
        if self.boundary_frame:
            emissions, lengths = with_boundary_frame(emissions, lengths, self.boundary_id)
        return [best[0] for best in self.decoder(emissions.contiguous(), lengths)]

    def ids(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Token ids of the best hypotheses, boundary tokens at their ends dropped."""
        out = []
        for hypothesis in self.hypotheses(log_probs, lengths):
            ids = hypothesis.tokens.tolist()
            start, end = 0, len(ids)
            while start < end and ids[start] == self.boundary_id:
                start += 1
            while end > start and ids[end - 1] == self.boundary_id:
                end -= 1
            out.append(ids[start:end])
        return out

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        if not self.uses_lexicon:
            return [self.tokenizer.decode(ids) for ids in self.ids(log_probs, lengths)]
        from supernet.data.tokenizer import normalize_text

        # the lexicon's (or LM's) spelling of each word, normalised as references are
        return [normalize_text(" ".join(h.words)) for h in self.hypotheses(log_probs, lengths)]
