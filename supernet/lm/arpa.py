"""ARPA files: write an ``NgramModel``, and read one back (ours or anyone's, KenLM's included).

The writer is what ``supernet lm build`` saves and flashlight's KenLM loads. The reader computes
``p(w | h)`` by ARPA's backoff rule in plain Python: the tests check the written model against it
(sums to one, hand-worked values) and against KenLM, and ``supernet lm build`` reports the dev
perplexity with it. ``arpa_words`` reads only the 1-grams, the words a lexicon needs, so a large
model a user brings is not parsed whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from supernet.errors import UserError
from supernet.lm.kneser_ney import BOS, EOS, UNK, Ngram, NgramModel
from supernet.outputs import atomic_write_text

KENLM_BINARY_MAGIC = b"mmap lm "  # how KenLM's binary format (build_binary) begins


class ArpaError(UserError, ValueError):
    """An unreadable or malformed ARPA file; the message names the file (and line)."""


def write_arpa(model: NgramModel, path: str | Path, comments: Sequence[str] = ()) -> Path:
    """``model`` as an ARPA file; ``comments`` go before ``\\data\\``, where readers skip text."""
    lines = [f"# {comment}" for comment in comments]
    lines += ["", "\\data\\"]
    lines += [f"ngram {n}={count}" for n, count in enumerate(model.counts(), start=1)]
    by_order: list[list[Ngram]] = [[] for _ in range(model.order + 1)]
    for ngram in model.log10_probs:
        by_order[len(ngram)].append(ngram)
    for n in range(1, model.order + 1):
        lines += ["", f"\\{n}-grams:"]
        for ngram in sorted(by_order[n]):
            line = f"{model.log10_probs[ngram]:.7g}\t{' '.join(ngram)}"
            if ngram in model.log10_backoffs:
                line += f"\t{model.log10_backoffs[ngram]:.7g}"
            lines.append(line)
    lines += ["", "\\end\\", ""]
    return atomic_write_text(path, "\n".join(lines))


def _check_text_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: language model not found")
    with path.open("rb") as f:
        if f.read(len(KENLM_BINARY_MAGIC)) == KENLM_BINARY_MAGIC:
            raise ArpaError(f"{path}: a binary KenLM model, not ARPA text; its words cannot be read here")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` from ``\\data\\`` on; ArpaError if there is none."""
    with path.open(encoding="utf-8") as f:
        numbered = enumerate(f, start=1)
        for _, line in numbered:
            if line.strip() == "\\data\\":
                break
        else:
            raise ArpaError(f"{path}: not an ARPA file (no \\data\\ line)")
        for number, line in numbered:
            yield number, line.strip()


def arpa_words(path: str | Path) -> list[str]:
    """The words of an ARPA model's 1-grams, without ``<s>``, ``</s>`` and ``<unk>``."""
    path = Path(path)
    _check_text_file(path)
    words, in_unigrams = [], False
    for number, line in _lines(path):
        if line.startswith("\\"):
            if in_unigrams:
                break
            in_unigrams = line == "\\1-grams:"
        elif in_unigrams and line:
            fields = line.split()
            if len(fields) not in (2, 3):
                raise ArpaError(f"{path}:{number}: expected 'log10prob word [backoff]', got {line!r}")
            words.append(fields[1])
    if not in_unigrams and not words:
        raise ArpaError(f"{path}: no \\1-grams: section")
    return [w for w in words if w not in (BOS, EOS, UNK)]


class ArpaModel:
    """An ARPA model in memory: ``log10_prob(word, history)`` by the backoff rule."""

    def __init__(self, log10_probs: dict[Ngram, float], log10_backoffs: dict[Ngram, float]):
        self.log10_probs = log10_probs
        self.log10_backoffs = log10_backoffs
        self.order = max(len(ngram) for ngram in log10_probs)

    @classmethod
    def load(cls, path: str | Path) -> ArpaModel:
        path = Path(path)
        _check_text_file(path)
        probs: dict[Ngram, float] = {}
        backoffs: dict[Ngram, float] = {}
        n = 0
        for number, line in _lines(path):
            if not line or line.startswith("ngram "):
                continue
            if line.startswith("\\"):
                if line == "\\end\\":
                    break
                if not (line.endswith("-grams:") and line[1:-7].isdigit()):
                    raise ArpaError(f"{path}:{number}: unexpected section {line!r}")
                n = int(line[1:-7])
                continue
            fields = line.split()
            if n == 0 or len(fields) not in (n + 1, n + 2):
                raise ArpaError(f"{path}:{number}: expected a {n}-gram line, got {line!r}")
            try:
                ngram = tuple(fields[1 : n + 1])
                probs[ngram] = float(fields[0])
                if len(fields) == n + 2:
                    backoffs[ngram] = float(fields[-1])
            except ValueError as err:
                raise ArpaError(f"{path}:{number}: {err}") from None
        if not probs:
            raise ArpaError(f"{path}: no n-grams")
        return cls(probs, backoffs)

    @classmethod
    def of(cls, model: NgramModel) -> ArpaModel:
        return cls(model.log10_probs, model.log10_backoffs)

    def vocabulary(self) -> list[str]:
        """The words it predicts: every 1-gram but ``<s>``."""
        return [ngram[0] for ngram in self.log10_probs if len(ngram) == 1 and ngram[0] != BOS]

    def log10_prob(self, word: str, history: Sequence[str] = ()) -> float:
        """``log10 p(word | history)``; a word it does not list is scored as ``<unk>``."""
        if (word,) not in self.log10_probs:
            if (UNK,) not in self.log10_probs:
                return -math.inf  # a model without <unk> gives an unknown word nothing
            word = UNK
        history = tuple(history)[-(self.order - 1) :] if self.order > 1 else ()
        backoff = 0.0
        while True:
            listed = self.log10_probs.get((*history, word))
            if listed is not None:
                return backoff + listed
            backoff += self.log10_backoffs.get(history, 0.0)
            history = history[1:]

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> tuple[float, int, int]:
        """``(perplexity, scored tokens, unknown words)`` over the sentences, ``</s>`` included
        (KenLM's convention: unknown words are scored as ``<unk>`` and counted)."""
        total, tokens, unknown = 0.0, 0, 0
        for words in sentences:
            history: list[str] = [BOS]
            for word in [*words, EOS]:
                unknown += (word,) not in self.log10_probs
                total += self.log10_prob(word, history)
                history.append(word)
                tokens += 1
        return (10 ** (-total / tokens) if tokens else math.nan), tokens, unknown
