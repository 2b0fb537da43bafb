"""SentencePiece subword tokenizers (`--data.tokenizer bpe | unigram`): round trips, saving with the
run and the checkpoint, clear errors, and a data module and a few training steps on BPE targets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import pytorch_lightning as pl
import soundfile as sf

from supernet.asr_module import ASRModule
from supernet.data import preflight
from supernet.data.datamodule import SpeechDataModule, checkpoint_tokenizer
from supernet.data.tokenizer import (
    UNKNOWN_ID,
    UNKNOWN_SYMBOL,
    CharTokenizer,
    SubwordTokenizer,
    build_tokenizer,
    load_tokenizer,
    normalize_text,
    tokenizer_from_vocab,
)
from supernet.deploy.metadata import from_props, model_metadata, to_props, tokenizer_of
from supernet.errors import UserError
from tests.test_data_features import RATE, noise
from tests.test_retrain import TINY_ARCH

TEXTS = {
    "en": ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the mat and the log"],
    "de": ["der hund lief über die straße", "die katze lief über den hof", "der hof und die straße"],
}
TRAIN = [(lang, text) for lang, texts in TEXTS.items() for text in texts]


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def subword(request) -> SubwordTokenizer:
    texts, langs = [t for _, t in TRAIN], [lang for lang, _ in TRAIN]
    size = 40 if request.param == "bpe" else 30  # unigram: at most 33 on these few sentences
    return build_tokenizer(request.param, texts, langs, vocab_size=size)


def test_round_trip_gives_the_normalised_text_back_in_fewer_tokens(subword):
    assert len(subword) == (40 if subword.kind == "bpe" else 30) and subword.word_boundary == "\u2581"
    assert (
        set(subword.languages["de"]) >= set("ßü") and "ß" not in subword.languages["en"]
    )  # one model, both languages
    for _, text in TRAIN:
        ids = subword.encode(text)
        assert subword.decode(ids) == text and len(ids) < len(text)
    messy = "  The  CAT\tsat über\nden HOF "
    assert subword.decode(subword.encode(messy)) == normalize_text(messy) == "the cat sat über den hof"
    # blanks are dropped, and a run of word boundaries is one space
    ids = subword.encode("the cat")
    assert subword.decode([0, *ids[:1], 0, *ids[1:], 0]) == "the cat"
    unknown = Counter()
    ids = subword.encode("the fox jumps!", unknown)
    assert (
        UNKNOWN_ID in ids and subword.decode(ids).startswith("the ") and UNKNOWN_SYMBOL in subword.decode(ids)
    )
    assert unknown == Counter("xjp!") == subword.unknown_chars(["the fox jumps!"])


def test_tokenizer_survives_save_load_checkpoint_and_export(subword, tmp_path):
    loaded = load_tokenizer(subword.save(tmp_path / "run" / "tokenizer.json"))
    assert isinstance(loaded, SubwordTokenizer) and loaded.kind == subword.kind
    assert loaded.vocab == subword.vocab and loaded.languages == subword.languages
    assert all(loaded.encode(t) == subword.encode(t) for _, t in TRAIN)
    # An exported model's metadata carries the model, through ONNX's string properties.
    module = ASRModule(TINY_ARCH, vocab=subword.vocab)
    module.tokenizer = subword  # as a checkpoint gives it back
    exported = tokenizer_of(from_props(to_props(model_metadata(module, "features", 1)), "model.onnx"))
    assert exported.kind == subword.kind and exported.encode(TRAIN[0][1]) == subword.encode(TRAIN[0][1])
    # A model's vocabulary alone (hyperparameters, older exports' tokens) decodes, but cannot encode.
    for rebuilt in (tokenizer_from_vocab(subword.vocab), tokenizer_of({"tokens": subword.vocab})):
        assert isinstance(rebuilt, SubwordTokenizer) and rebuilt.word_boundary == "\u2581"
        assert rebuilt.decode(subword.encode(TRAIN[0][1])) == TRAIN[0][1]
        with pytest.raises(UserError, match="only decodes"):
            rebuilt.encode("the cat")
    # The checkpoint's data-module state gives the model back, for a vocabulary that matches only.
    state = {"SpeechDataModule": {"tokenizer": subword.to_dict()}}
    assert checkpoint_tokenizer(state, tokenizer_from_vocab(subword.vocab)).encode(
        "the cat"
    ) == subword.encode("the cat")
    chars = CharTokenizer.build(["the cat"])
    assert checkpoint_tokenizer(state, chars) is chars
    # The char tokenizer's files and vocabularies read as before.
    assert isinstance(load_tokenizer(chars.save(tmp_path / "chars.json")), CharTokenizer)
    assert isinstance(tokenizer_from_vocab(chars.vocab), CharTokenizer) and chars.word_boundary == " "


def test_bad_options_and_files_raise_clear_errors(tmp_path):
    texts = [t for _, t in TRAIN]
    with pytest.raises(UserError, match="unknown 'wordpiece'; choose one of char, bpe, unigram"):
        build_tokenizer("wordpiece", texts, vocab_size=40)
    with pytest.raises(UserError, match="needs data.vocab_size"):
        build_tokenizer("bpe", texts)
    with pytest.raises(UserError, match="vocab_size is for bpe and unigram"):
        build_tokenizer("char", texts, vocab_size=40)
    letters = len(set("".join(texts)))  # space included
    with pytest.raises(UserError, match=f"too small for the training transcripts: .* at least {letters + 2}"):
        build_tokenizer("bpe", texts, vocab_size=letters + 1)
    with pytest.raises(
        UserError, match=r"too large for the training transcripts: they allow at most \d+ unigram"
    ):
        build_tokenizer("unigram", texts, vocab_size=5000)
    broken = build_tokenizer("bpe", texts, vocab_size=40).to_dict()
    broken["sentencepiece_model"] = "not base64!"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="broken.json: no valid 'sentencepiece_model'"):
        load_tokenizer(tmp_path / "broken.json")


def write_text_corpus(folder: Path, splits: dict[str, list[tuple[str, str]]]) -> Path:
    """Noise audio (0.6 s) with the given `(lang, text)` transcripts, one manifest per split."""
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        lines = []
        for j, (lang, text) in enumerate(rows):
            path = folder / "audio" / f"{split}_{j}.flac"
            sf.write(str(path), noise(0.6, seed=j).numpy(), RATE)
            row = {
                "audio_filepath": f"audio/{path.name}",
                "duration": 0.6,
                "text": text,
                "lang": lang,
                "id": f"{split}-{j}",
            }
            lines.append(json.dumps(row) + "\n")
        (folder / f"{split}.jsonl").write_text("".join(lines))
    return folder


def test_datamodule_and_training_steps_use_bpe_targets(tmp_path):
    corpus = write_text_corpus(tmp_path / "c", {"train": TRAIN * 2, "dev": [("en", "the fox sat")]})
    options = {"num_workers": 0, "max_frames": 400, "arch_fraction": 0.0, "features": "fbank", "n_mels": 20}
    dm = SpeechDataModule(str(corpus), tokenizer="bpe", vocab_size=40, **options)
    dm.setup("fit")
    tok = dm.tokenizer
    assert tok.kind == "bpe" and len(tok) == 40 and "tokenizer: bpe, 40 symbols" in dm.describe()
    assert tok.unknown_chars(["the fox sat"]) == Counter("x")  # built from train, never from dev
    batch = next(iter(dm.train_dataloader()))
    for i, text in enumerate(batch["texts"]):
        n = batch["target_lengths"][i]
        assert tok.decode(batch["targets"][i, :n].tolist()) == text and n < len(text)
    # The CTC check counts the pieces, not the characters.
    fits = preflight.ctc_fits(dm.splits["fit"]["train"], tok, stride=8)
    assert [f.needed for f in fits] == [
        preflight.ctc_frames_needed(tok.encode(u.text)) for u in dm.splits["fit"]["train"]
    ]
    assert all(f.needed < len(f.utterance.text) for f in fits)

    module = ASRModule(TINY_ARCH, vocab=tok.vocab, warmup_steps=1)
    assert module.vocab_size == 40 and module.tokenizer.kind == "sentencepiece"
    trainer = pl.Trainer(
        max_steps=2, limit_val_batches=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    # The checkpoint alone gives a module that encodes with the run's model (evaluate, select).
    loaded = ASRModule.load_from_checkpoint(tmp_path / "last.ckpt", map_location="cpu")
    assert loaded.tokenizer.kind == "bpe" and loaded.tokenizer.encode("the cat") == tok.encode("the cat")
    # Resuming onto other data or options is refused; the same ones take the checkpoint's model.
    other = SpeechDataModule(str(corpus), tokenizer="unigram", vocab_size=30, **options)
    with pytest.raises(UserError, match="checkpoint's bpe tokenizer"):
        other.load_state_dict(dm.state_dict())
    same = SpeechDataModule(str(corpus), tokenizer="bpe", vocab_size=40, **options)
    same.load_state_dict(dm.state_dict())
    assert same.tokenizer.model == tok.model
