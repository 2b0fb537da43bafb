"""Tokenizers for CTC: blank = 0, unknown = 1, then characters (`char`, the default) or SentencePiece
subword pieces (`bpe`, `unigram`) of the training texts.

The vocabulary is built from the training manifest and saved with the run (`tokenizer.json`), so a
derived model is always decoded with the units it was trained on. The JSON also records which
characters occur in which language, to see at a glance how much of the alphabet is shared; a
multilingual corpus gets one subword model over all its languages.

What other code may rely on (a beam-search decoder included): `vocab` (index = id), `len()`,
`encode(text)`, `decode(ids)` (blanks dropped, no repeat merging), `unknown_chars(texts)`, `kind`,
and `word_boundary`: the token text that marks words, `" "` for characters (a token of its own)
and `"\u2581"` for SentencePiece (the first letter of a word-initial piece, or a piece alone).
"""

from __future__ import annotations

import base64
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from supernet.errors import UserError

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


def _unknown_chars(texts: Iterable[str], known) -> Counter:
    """How often each character of the normalised `texts` outside `known` occurs."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(c for c in normalize_text(text) if c not in known)
    return counts


def _pieces(tokenizer, ids: Iterable[int]) -> list[str]:
    """The symbols of `ids` in `tokenizer.vocab`, blanks dropped, the unknown id as its symbol; an
    id outside the vocabulary is an error naming the tokenizer."""
    pieces = []
    for index in ids:
        index = int(index)
        if index == BLANK_ID:
            continue
        if index == UNKNOWN_ID:
            pieces.append(UNKNOWN_SYMBOL)
        elif 2 <= index < len(tokenizer.vocab):
            pieces.append(tokenizer.vocab[index])
        else:
            raise ValueError(
                f"{type(tokenizer).__name__}.decode: id {index} outside the vocabulary of {len(tokenizer)}"
            )
    return pieces


class CharTokenizer:
    """Maps normalised text to ids and back; characters outside the vocabulary map to unknown."""

    kind = "char"
    word_boundary = " "

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
        return _unknown_chars(texts, self._ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, blanks dropped (no CTC repeat-collapsing: that is the decoder's job)."""
        return "".join(_pieces(self, ids))

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
        return _write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        path = Path(path)
        data = _read_json(path)
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


# ----------------------------------------------------------------------------- subword units

WORD_BOUNDARY_PIECE = "\u2581"  # "▁": SentencePiece's mark of a word start
SUBWORD_KINDS = ("bpe", "unigram")
TOKENIZER_KINDS = ("char", *SUBWORD_KINDS)
# Fixed, not the machine's core count: every DDP rank trains its own model, and a resumed run trains
# it again, so the result must not depend on where it runs.
SPM_THREADS = 4
SPM_SEED = 0
_TOO_MANY_PIECES = re.compile(r"value <= (\d+)")


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError as err:
        raise UserError(
            "subword tokenizers (data.tokenizer bpe | unigram) need sentencepiece: "
            "pip install 'supernet[tokens]'"
        ) from err
    return sentencepiece


class SubwordTokenizer:
    """SentencePiece pieces for CTC: blank = 0, unknown = 1 (SentencePiece's own `<unk>`), then the
    model's pieces in its order (id = SentencePiece id + 1).

    Trained on `normalize_text` of the training transcripts with SentencePiece's own normalisation
    off (`identity`) and every character kept (`character_coverage` 1), so `decode(encode(t))` is
    `normalize_text(t)` for text of known characters. The model (a serialised protobuf of a few kB)
    travels inside `tokenizer.json`, base64-encoded, so a run folder holds one tokenizer file.

    Decoding needs only the vocabulary: the pieces are joined and each `▁` starts a word. A
    tokenizer rebuilt from a vocabulary alone (`tokenizer_from_vocab`: a checkpoint's
    hyperparameters, an exported model's tokens) therefore decodes; encoding needs the model.
    """

    word_boundary = WORD_BOUNDARY_PIECE

    def __init__(
        self,
        kind: str,
        vocab: Sequence[str],
        model: bytes | None = None,
        languages: dict[str, str] | None = None,
    ):
        if list(vocab[:2]) != [BLANK, UNKNOWN]:
            raise ValueError(
                f"SubwordTokenizer: vocab must start with {BLANK!r}, {UNKNOWN!r}; got {vocab[:2]}"
            )
        self.kind = kind
        self.vocab = list(vocab)
        self.model = model
        self.languages = dict(languages or {})
        self._processor = None
        if model is not None:
            processor = _sentencepiece().SentencePieceProcessor(model_proto=model)
            pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
            if [BLANK, *pieces] != self.vocab:
                raise ValueError("SubwordTokenizer: the vocabulary is not the sentencepiece model's pieces")
            self._processor = processor
        # SentencePiece keeps every character of its training text as a piece; others become unknown
        self._chars = {p.replace(WORD_BOUNDARY_PIECE, " ") for p in self.vocab[2:] if len(p) == 1}

    @classmethod
    def train(
        cls,
        kind: str,
        texts: Iterable[str],
        vocab_size: int,
        langs: Iterable[str | None] | None = None,
        source: str = "the training transcripts",
    ) -> SubwordTokenizer:
        """A `kind` (bpe | unigram) model of `vocab_size` outputs, blank and unknown included.
        `source` names the texts in errors (a vocabulary too small or too large for them)."""
        if kind not in SUBWORD_KINDS:
            raise UserError(f"data.tokenizer: unknown {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
        texts = [normalize_text(text) for text in texts]
        languages = CharTokenizer.build(texts, langs).languages
        symbols = set("".join(texts)) | {" "}  # the space is "▁", a piece of every model
        smallest = len(symbols) + 2
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < smallest:
            raise UserError(
                f"data.vocab_size {vocab_size!r} is too small for {source}: its {len(symbols)} characters "
                f"(space included) are pieces of their own, so with blank and unknown it takes at least {smallest}"
            )
        spm = _sentencepiece()
        model = io.BytesIO()
        spm.set_random_generator_seed(SPM_SEED)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts),
                model_writer=model,
                model_type=kind,
                vocab_size=vocab_size - 1,  # SentencePiece counts its <unk>, not the CTC blank
                character_coverage=1.0,
                normalization_rule_name="identity",
                unk_id=0,
                unk_piece=UNKNOWN,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                num_threads=SPM_THREADS,
                max_sentence_length=1 << 16,  # bytes; longer transcripts would be left out silently
                minloglevel=2,
            )
        except RuntimeError as err:
            most = _TOO_MANY_PIECES.search(str(err))
            if most:
                raise UserError(
                    f"data.vocab_size {vocab_size} is too large for {source}: they allow at most "
                    f"{int(most.group(1)) + 1} {kind} tokens (blank and unknown included)"
                ) from err
            raise UserError(f"sentencepiece could not train a {kind} model on {source}: {err}") from err
        processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        return cls(kind, [BLANK, *pieces], model.getvalue(), languages)

    @classmethod
    def from_vocab(cls, vocab: Sequence[str]) -> SubwordTokenizer:
        """A decode-only tokenizer of these pieces (bpe or unigram: the list does not say which)."""
        return cls("sentencepiece", vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, unknown: Counter | None = None) -> list[int]:
        """Ids of the normalised text's pieces; characters outside the model become `UNKNOWN_ID`
        (SentencePiece joins a run of them into one) and are counted into `unknown` when given."""
        if self._processor is None:
            raise UserError(
                "this subword tokenizer was rebuilt from a vocabulary (a model's hyperparameters or an "
                "exported model's tokens) and only decodes; encoding needs its sentencepiece model: "
                "load the run's tokenizer.json (supernet.data.tokenizer.load_tokenizer)"
            )
        text = normalize_text(text)
        if unknown is not None:
            unknown.update(char for char in text if char not in self._chars)
        return [index + 1 for index in self._processor.encode(text)]

    def unknown_chars(self, texts: Iterable[str]) -> Counter:
        """How often each character outside the model occurs in `texts`."""
        return _unknown_chars(texts, self._chars)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`: blanks dropped (no CTC repeat-collapsing), pieces joined, a `▁` read as a
        word start; runs of boundaries count once and none leads or trails."""
        return " ".join("".join(_pieces(self, ids)).replace(WORD_BOUNDARY_PIECE, " ").split())

    def to_dict(self) -> dict:
        if self.model is None:
            raise ValueError(
                "SubwordTokenizer: rebuilt from a vocabulary, it has no sentencepiece model to save"
            )
        return {
            "type": self.kind,
            "version": FORMAT_VERSION,
            "blank_id": BLANK_ID,
            "unknown_id": UNKNOWN_ID,
            "word_boundary": WORD_BOUNDARY_PIECE,
            "vocab": self.vocab,
            "languages": self.languages,
            "sentencepiece_model": base64.b64encode(self.model).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: dict, source: str) -> SubwordTokenizer:
        try:
            model = base64.b64decode(data["sentencepiece_model"], validate=True)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{source}: no valid 'sentencepiece_model' (base64 text) in the tokenizer"
            ) from err
        try:
            return cls(data["type"], data["vocab"], model, data.get("languages"))
        except (RuntimeError, ValueError) as err:  # RuntimeError: SentencePiece cannot parse the model
            raise ValueError(f"{source}: {err}") from err

    def save(self, path: str | Path) -> Path:
        return _write_json(path, self.to_dict())

    def __repr__(self) -> str:
        return f"SubwordTokenizer(kind={self.kind}, size={len(self)}, languages={sorted(self.languages)})"


Tokenizer = CharTokenizer | SubwordTokenizer


def _read_json(path: str | Path) -> object:
    """A tokenizer file's JSON; a missing file or bad JSON named."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: tokenizer file not found") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _write_json(path: str | Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def build_tokenizer(
    kind: str,
    texts: Iterable[str],
    langs: Iterable[str | None] | None = None,
    vocab_size: int | None = None,
    source: str = "the training transcripts",
) -> Tokenizer:
    """The `kind` (`char`, `bpe`, `unigram`) tokenizer of the training `texts`; `vocab_size` (the
    model's outputs, blank and unknown included) is for subword kinds only."""
    if kind == "char":
        if vocab_size is not None:
            raise UserError(
                "data.vocab_size is for bpe and unigram tokenizers; the char tokenizer takes every character "
                "of the training transcripts (leave vocab_size unset)"
            )
        return CharTokenizer.build(texts, langs)
    if kind not in SUBWORD_KINDS:
        raise UserError(f"data.tokenizer: unknown {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
    if vocab_size is None:
        raise UserError(
            f"data.tokenizer {kind} needs data.vocab_size: the model's outputs, blank and unknown included"
        )
    return SubwordTokenizer.train(kind, texts, vocab_size, langs, source)


def tokenizer_from_dict(data: object, source: str) -> Tokenizer:
    """The tokenizer a `to_dict()` describes; `source` names it in errors."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind in SUBWORD_KINDS:
        return SubwordTokenizer.from_dict(data, source)
    if kind != "char" or not isinstance(data.get("vocab"), list):
        raise ValueError(
            f"{source}: not a tokenizer (expected type {', '.join(TOKENIZER_KINDS)} and a 'vocab' list)"
        )
    vocab = data["vocab"]
    if vocab[:2] != [BLANK, UNKNOWN]:
        raise ValueError(f"{source}: vocab must start with {BLANK!r}, {UNKNOWN!r}; got {vocab[:2]}")
    return CharTokenizer(vocab[2:], data.get("languages", {}))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A saved tokenizer of any kind (`tokenizer.json` of a run)."""
    return tokenizer_from_dict(_read_json(path), str(path))


def tokenizer_from_vocab(vocab: Sequence[str]) -> Tokenizer:
    """The tokenizer a vocabulary list describes (a model's `vocab` hyperparameter, an exported
    model's tokens): characters when every token after blank and unknown is one character other
    than `▁`, else SentencePiece pieces, which decode but do not encode."""
    if list(vocab[:2]) != [BLANK, UNKNOWN]:
        raise ValueError(f"vocab must start with {BLANK!r}, {UNKNOWN!r}; got {list(vocab[:2])}")
    if all(len(token) == 1 and token != WORD_BOUNDARY_PIECE for token in vocab[2:]):
        return CharTokenizer(list(vocab[2:]))
    return SubwordTokenizer.from_vocab(vocab)
