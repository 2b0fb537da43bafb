"""Character tokenizer for CTC: blank = 0, unknown = 1, then the characters of the training texts.

The vocabulary is built from the training manifest and saved with the run (JSON), so a derived
model is always decoded with the alphabet it was trained on. The JSON also records which characters
occur in which language, to see at a glance how much of the alphabet is shared.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

BLANK = "<blank>"
UNKNOWN = "<unk>"
BLANK_ID = 0
UNKNOWN_ID = 1
UNKNOWN_SYMBOL = "\u2047"  # what decode() writes for the unknown id ("⁇", as SentencePiece does)
FORMAT_VERSION = 1

_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower case, NFC, whitespace collapsed to single spaces and stripped.

    Used for the vocabulary, for encoding targets and for scoring, so that WER/CER never count
    differences that the tokenizer cannot represent.
    """
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text).lower()).strip()


class CharTokenizer:
    """Maps normalised text to ids and back; characters outside the vocabulary map to unknown."""

    def __init__(self, chars: Sequence[str], languages: dict[str, str] | None = None):
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer: characters must be distinct single characters")
        self.chars = list(chars)
        self.languages = dict(languages or {})
        self.vocab = [BLANK, UNKNOWN, *self.chars]
        self._ids = {c: i + 2 for i, c in enumerate(self.chars)}

    @classmethod
    def build(cls, texts: Iterable[str], langs: Iterable[str | None] | None = None) -> CharTokenizer:
        """Vocabulary of every character in `texts` (sorted); `langs`, parallel to `texts`, fills the
        per-language inventory."""
        texts = list(texts)
        langs = list(langs) if langs is not None else [None] * len(texts)
        if len(langs) != len(texts):
            raise ValueError(f"CharTokenizer.build: {len(texts)} texts but {len(langs)} languages")
        chars: set[str] = set()
        per_lang: dict[str, set[str]] = {}
        for text, lang in zip(texts, langs):
            used = set(normalize_text(text))
            chars |= used
            if lang:
                per_lang.setdefault(lang, set()).update(used)
        languages = {lang: "".join(sorted(used)) for lang, used in sorted(per_lang.items())}
        return cls(sorted(chars), languages)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, unknown: Counter | None = None) -> list[int]:
        """Ids of the normalised text; characters outside the vocabulary become `UNKNOWN_ID` and are
        counted into `unknown` when given."""
        ids = []
        for char in normalize_text(text):
            index = self._ids.get(char)
            if index is None:
                index = UNKNOWN_ID
                if unknown is not None:
                    unknown[char] += 1
            ids.append(index)
        return ids

    def unknown_chars(self, texts: Iterable[str]) -> Counter:
        """How often each character outside the vocabulary occurs in `texts`."""
        counts: Counter = Counter()
        for text in texts:
            counts.update(c for c in normalize_text(text) if c not in self._ids)
        return counts

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, blanks dropped (no CTC repeat-collapsing: that is the decoder's job)."""
        out = []
        for index in ids:
            index = int(index)
            if index == BLANK_ID:
                continue
            if index == UNKNOWN_ID:
                out.append(UNKNOWN_SYMBOL)
            elif 2 <= index < len(self.vocab):
                out.append(self.vocab[index])
            else:
                raise ValueError(f"CharTokenizer.decode: id {index} outside the vocabulary of {len(self)}")
        return "".join(out)

    def to_dict(self) -> dict:
        return {
            "type": "char",
            "version": FORMAT_VERSION,
            "blank_id": BLANK_ID,
            "unknown_id": UNKNOWN_ID,
            "vocab": self.vocab,
            "languages": self.languages,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{path}: tokenizer file not found") from err
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if (
            not isinstance(data, dict)
            or data.get("type") != "char"
            or not isinstance(data.get("vocab"), list)
        ):
            raise ValueError(f"{path}: not a CharTokenizer file (expected type 'char' and a 'vocab' list)")
        vocab = data["vocab"]
        if vocab[:2] != [BLANK, UNKNOWN]:
            raise ValueError(f"{path}: vocab must start with {BLANK!r}, {UNKNOWN!r}; got {vocab[:2]}")
        return cls(vocab[2:], data.get("languages", {}))

    def __repr__(self) -> str:
        return f"CharTokenizer(size={len(self)}, languages={sorted(self.languages)})"
