"""Word lists spelled in a model's tokens, as flashlight's lexicon decoder reads them.

A user's lexicon is a list of words, one a line, and the words are spelled here with the run's own
tokenizer (``tokenizer.encode``), so a spelling can never disagree with the tokens the model
emits, whatever the tokenizer (characters, or subwords with a ``▁`` word start).

Where the word boundary is a token between words (the space of character tokens), a spelling ends
with it, so that the model must emit a space where the decoder ends a word: flashlight treats the
boundary as optional silence, and without it a lexicon of short words cuts one spoken word into
several (the built-in corpus' dev set, its training words as lexicon, LM weight 0: WER 1.93
without, 1.31 with; ``scripts/decoding_figures.py``). ``BeamSearchDecoder`` gives the last word
its boundary with a frame of its own. A ``▁`` boundary starts a subword spelling already.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from supernet.errors import UserError


class LexiconError(UserError, ValueError):
    """A malformed lexicon file, or one with no word the model can spell; names the file."""


def read_word_list(path: str | Path) -> list[str]:
    """The words of a lexicon file, one a line (blank lines skipped), in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: lexicon not found")
    words = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if len(fields) > 1:
                raise LexiconError(
                    f"{path}:{number}: expected one word a line, got {line.strip()!r} "
                    "(words are spelled with the model's tokenizer; give no spelling)"
                )
            words += fields
    if not words:
        raise LexiconError(f"{path}: no words")
    return words


def token_names(vocab: Sequence[str]) -> list[str]:
    """The vocabulary with every token that holds whitespace (the space of character tokens)
    renamed, since lexicon files separate tokens by whitespace; the names stay distinct."""
    taken = set(vocab)
    names = []
    for index, token in enumerate(vocab):
        if token and not any(c.isspace() for c in token):
            names.append(token)
            continue
        name = "|" if "|" not in taken else f"<token{index}>"
        taken.add(name)
        names.append(name)
    return names


def spell_words(
    words: Iterable[str],
    tokenizer,
    names: Sequence[str],
    boundary: str,
    unknown: str | None,
    trailing_boundary: bool,
) -> tuple[dict[str, list[str]], list[str]]:
    """``({word: spelling in token names}, unspellable words)``. A word is unspellable when the
    tokenizer maps part of it to the ``unknown`` token (a character the model never saw) or it
    spells to nothing but boundaries; boundary tokens at a spelling's ends are dropped, and with
    ``trailing_boundary`` one is put at its end."""
    vocab = list(tokenizer.vocab)
    boundary_id = vocab.index(boundary)
    unknown_id = vocab.index(unknown) if unknown in vocab else None
    spellings: dict[str, list[str]] = {}
    skipped = []
    for word in dict.fromkeys(words):
        ids = list(tokenizer.encode(word))
        while ids and ids[0] == boundary_id:
            ids.pop(0)
        while ids and ids[-1] == boundary_id:
            ids.pop()
        if not ids or unknown_id in ids:
            skipped.append(word)
        else:
            spellings[word] = [names[i] for i in ids] + ([names[boundary_id]] if trailing_boundary else [])
    return spellings, skipped


def write_lexicon(spellings: dict[str, list[str]], path: str | Path) -> Path:
    """flashlight's lexicon format: ``word token token ...``, one word a line."""
    path = Path(path)
    path.write_text(
        "".join(f"{word} {' '.join(tokens)}\n" for word, tokens in spellings.items()), encoding="utf-8"
    )
    return path
