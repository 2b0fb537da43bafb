"""Beam search (flashlight through torchaudio): beam 1 without an LM is greedy decoding; an LM from
a tiny corpus picks the in-corpus word where the acoustics cannot; the decoder reaches
`transcribe`; missing files and the missing extra get errors that name them."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from supernet.commands.cli import main as cli_main
from supernet.data.tokenizer import CharTokenizer
from supernet.decoding import DecoderOptions, greedy_ctc_ids, make_decoder
from supernet.deploy.inputs import Item
from supernet.deploy.runtime import CTCModel
from supernet.deploy.transcribe import transcribe_items
from supernet.errors import UserError
from supernet.lm.arpa import write_arpa
from supernet.lm.kneser_ney import estimate

pytest.importorskip("flashlight.lib.text.decoder")

from supernet.lm.beam import BeamSearchDecoder  # noqa: E402

TOKENIZER = CharTokenizer.build(["the cat sat on a hat mat"])
SPACE = TOKENIZER.vocab.index(" ")


def frames(*spelled: str | dict[str, float]) -> torch.Tensor:
    """Log-probs ``(1, T, V)``: each entry a frame (a character at 0.9, or ``{char: p}``), each
    followed by a blank frame (blank at 0.9); what probability is left is spread evenly."""
    rows = []
    for entry in spelled:
        for probs in (entry if isinstance(entry, dict) else {entry: 0.9}, {"<blank>": 0.9}):
            row = torch.full((len(TOKENIZER),), (1 - sum(probs.values())) / (len(TOKENIZER) - len(probs)))
            for token, p in probs.items():
                row[TOKENIZER.vocab.index(token)] = p
            rows.append(row.log())
    return torch.stack(rows)[None]


def strip_boundaries(ids: list[int]) -> list[int]:
    while ids and ids[0] == SPACE:
        ids = ids[1:]
    while ids and ids[-1] == SPACE:
        ids = ids[:-1]
    return ids


def test_beam_1_without_lm_is_greedy_on_random_log_probs():
    generator = torch.Generator().manual_seed(0)
    log_probs = (3 * torch.randn(64, 40, len(TOKENIZER), generator=generator)).log_softmax(-1)
    lengths = torch.randint(1, 41, (64,), generator=generator)
    greedy = [strip_boundaries(ids) for ids in greedy_ctc_ids(log_probs, lengths)]
    beam = BeamSearchDecoder(TOKENIZER, beam_size=1)
    assert beam.ids(log_probs, lengths) == greedy
    assert sum(map(len, greedy)) > 500 and sum(SPACE in ids for ids in greedy) > 40  # words, not blanks
    texts = make_decoder(DecoderOptions(kind="beam", beam_size=1), TOKENIZER)(log_probs, lengths)
    assert texts == [TOKENIZER.decode(ids) for ids in greedy]


@pytest.mark.parametrize(
    "corpus, expected",
    [(["the cat sat", "a hat"], "the cat sat"), (["the hat sat", "a cat"], "the hat sat")],
)
def test_an_lm_prefers_the_word_sequence_of_its_corpus(tmp_path, corpus, expected):
    """'c' and 'h' are equally likely in the frame that decides between "cat" and "hat", and both
    words are in the LM; only its bigram "the cat" (or "the hat") can break the tie."""
    lm = write_arpa(estimate([s.split() for s in corpus], order=2), tmp_path / "lm.arpa")
    log_probs = frames(*"the ", {"c": 0.45, "h": 0.45}, *"at sat")
    decoder = make_decoder(DecoderOptions(kind="beam", beam_size=8, lm=lm, lm_weight=1.0), TOKENIZER)
    assert decoder(log_probs, torch.tensor([log_probs.shape[1]])) == [expected]


def test_a_lexicon_keeps_only_its_words(tmp_path):
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("the\nmat\nsat\nüber\n")  # "über" cannot be spelled: no 'ü' in the model
    log_probs = frames(*"the ", {"c": 0.5, "m": 0.4}, *"at sat")
    lengths = torch.tensor([log_probs.shape[1]])
    assert make_decoder(DecoderOptions(kind="beam"), TOKENIZER)(log_probs, lengths) == ["the cat sat"]
    decoder = BeamSearchDecoder(TOKENIZER, beam_size=8, lexicon=lexicon)
    assert decoder(log_probs, lengths) == ["the mat sat"] and decoder.unspellable == ["über"]


class FixedModel(CTCModel):
    """Stands for a checkpoint or ONNX model: the same log-probs for every waveform."""

    sample_rate = 16000
    tokenizer = TOKENIZER

    def log_probs(self, audio, lengths):
        emitted = frames(*"the ", {"c": 0.45, "h": 0.45}, *"at sat")
        return emitted.expand(len(audio), -1, -1), torch.full((len(audio),), emitted.shape[1])


def test_transcribe_decodes_with_the_lm(tmp_path):
    lm = write_arpa(estimate([["the", "hat", "sat"], ["a", "cat"]], order=2), tmp_path / "lm.arpa")
    sf.write(tmp_path / "u.wav", np.zeros(1600, dtype=np.float32), 16000)
    items = [Item(str(tmp_path / "u.wav"), "u"), Item(str(tmp_path / "missing.wav"), "m")]
    decode = make_decoder(DecoderOptions(kind="beam", lm=lm, lm_weight=1.0), TOKENIZER)
    results = list(transcribe_items(FixedModel(), items, progress=False, decode=decode))
    assert results[0].text == "the hat sat" and "missing.wav" in results[1].error


def test_missing_files_and_options_are_named(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="missing.arpa: language model not found"):
        DecoderOptions(kind="beam", lm=tmp_path / "missing.arpa")
    with pytest.raises(UserError, match=r"an LM needs the beam decoder \(--decoder beam"):
        DecoderOptions(kind="greedy", lm=tmp_path / "missing.arpa")
    with pytest.raises(UserError, match="a word boundary needs the beam decoder"):  # was ignored
        DecoderOptions(kind="greedy", word_boundary="|")
    argv = ["transcribe", "model.onnx", "a.wav", "--decoder", "beam", "--lexicon", str(tmp_path / "gone.txt")]
    assert cli_main(argv) == 2
    assert "gone.txt: lexicon not found" in capsys.readouterr().err

    spelled = tmp_path / "spelled.txt"
    spelled.write_text("cat\nhat h a t\n")
    with pytest.raises(UserError, match=r"spelled.txt:2: expected one word a line"):
        BeamSearchDecoder(TOKENIZER, lexicon=spelled)
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("über\nöl\n")
    with pytest.raises(UserError, match="foreign.txt: none of its 2 words can be spelled"):
        BeamSearchDecoder(TOKENIZER, lexicon=foreign)
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\x00")
    with pytest.raises(UserError, match="lm.bin: a binary KenLM model.*give a lexicon"):
        BeamSearchDecoder(TOKENIZER, lm=binary)
    broken = tmp_path / "broken.arpa"
    broken.write_text(
        "\\data\\\nngram 1=2\nngram 2=1\n\n\\1-grams:\n-1\t<s>\n-1\ta\n\n\\2-grams:\n-1\ta b\n\\end\\\n"
    )
    with pytest.raises(UserError, match="broken.arpa: cannot load the language model .*missing </s>"):
        BeamSearchDecoder(TOKENIZER, lm=broken)
    with pytest.raises(UserError, match="word boundary '_' is not a token"):
        BeamSearchDecoder(TOKENIZER, word_boundary="_")


def test_missing_flashlight_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flashlight.lib.text.decoder", None)  # as if not installed
    missing = r"needs the flashlight-text package: pip install 'supernet\[decoder\]'"
    with pytest.raises(UserError, match=missing):
        make_decoder(DecoderOptions(kind="beam"), TOKENIZER)
    greedy = make_decoder(DecoderOptions(), TOKENIZER)  # needs no flashlight
    assert greedy(frames(*"a"), torch.tensor([2])) == ["a"]
