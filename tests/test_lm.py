"""The word n-gram LM: Kneser-Ney estimates worked by hand, normalisation, ARPA round trip through
KenLM, and `supernet lm build` on a corpus made here (train split only)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from supernet.commands.cli import main as cli_main
from supernet.data import sentences
from supernet.lm.arpa import ArpaError, ArpaModel, arpa_words, write_arpa
from supernet.lm.kneser_ney import BOS, EOS, UNK, discounts_of, estimate

# Two sentences, order 2, every discount 0.5. Continuation counts of the unigrams: a 1 (after <s>),
# b 2 (after a, <s>), </s> 1 (after b); |V| = 4 (a, b, </s>, <unk>). Unigram total 4, freed mass
# 3 x 0.5, so gamma() = 1.5 / 4 = 0.375 and each word gets 0.375 / 4 = 0.09375 from the uniform.
TINY = [["a", "b"], ["b"]]
TINY_DISCOUNTS = [(0.5, 0.5, 0.5)] * 2
HAND = {
    (("a",), ()): (1 - 0.5) / 4 + 0.09375,  # 0.21875
    (("b",), ()): (2 - 0.5) / 4 + 0.09375,  # 0.46875
    ((EOS,), ()): (1 - 0.5) / 4 + 0.09375,  # 0.21875
    ((UNK,), ()): 0.09375,
    # context <s>: a 1, b 1 (raw counts), total 2, gamma(<s>) = 1 / 2
    (("a",), (BOS,)): 0.5 / 2 + 0.5 * 0.21875,  # 0.359375
    (("b",), (BOS,)): 0.5 / 2 + 0.5 * 0.46875,  # 0.484375
    # context a: b 1, gamma(a) = 0.5; context b: </s> 2, gamma(b) = 0.5 / 2
    (("b",), ("a",)): 0.5 / 1 + 0.5 * 0.46875,  # 0.734375
    ((EOS,), ("b",)): 1.5 / 2 + 0.25 * 0.21875,  # 0.8046875
    (("a",), ("b",)): 0.25 * 0.21875,  # unseen: backoff only
    (("zzz",), ("b",)): 0.25 * 0.09375,  # unknown word: <unk> after backing off
}
CORPUS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat saw the dog",
    "the cat ate",
    "a dog ate the cat food",
    "the mat was on the log",
]


def test_hand_worked_interpolated_kneser_ney():
    model = ArpaModel.of(estimate(TINY, order=2, discounts=TINY_DISCOUNTS))
    for ((word,), history), p in HAND.items():
        assert 10 ** model.log10_prob(word, history) == pytest.approx(p, rel=1e-12), (word, history)


def test_modified_discounts_follow_chen_goodman():
    # counts of counts t1..t4 = 4, 2, 1, 1: Y = 4 / 8; D1 = 1 - 2Y 2/4, D2 = 2 - 3Y 1/2, D3 = 3 - 4Y
    assert discounts_of([1, 1, 1, 1, 2, 2, 3, 4, 9]) == ((0.5, 1.25, 1.0), "modified")
    # no count of 3 or 4: the single Kneser-Ney discount Y
    assert discounts_of([1, 1, 2]) == ((0.5, 0.5, 0.5), "single")
    assert discounts_of([3, 4]) == ((0.5, 0.5, 0.5), "default")


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_sum_to_one_for_every_history(order):
    model = estimate([s.split() for s in CORPUS * 3 + ["cat cat cat dog"]], order)
    arpa = ArpaModel.of(model)
    vocabulary = arpa.vocabulary()
    assert set(vocabulary) == {w for s in CORPUS for w in s.split()} | {EOS, UNK}
    histories = [(), (BOS,), ("the",), ("on", "the"), (BOS, "the", "cat"), ("mat", "cat"), ("zzz", "dog")]
    for history in histories:
        total = sum(10 ** arpa.log10_prob(w, history) for w in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-9), history


def test_arpa_file_loads_in_kenlm_with_the_same_scores(tmp_path):
    decoder = pytest.importorskip("flashlight.lib.text.decoder")
    dictionary = pytest.importorskip("flashlight.lib.text.dictionary")
    model = estimate([s.split() for s in CORPUS], order=3)
    path = write_arpa(model, tmp_path / "lm.arpa", comments=["made by a test"])
    ours = ArpaModel.load(path)
    assert ours.log10_probs == pytest.approx(model.log10_probs, abs=1e-6)
    words = sorted({w for s in CORPUS for w in s.split()} | {EOS, UNK, "zzz"})
    kenlm = decoder.KenLM(str(path), dictionary.Dictionary(words))
    for sentence in ["the cat sat on the log", "a dog sat", "zzz the mat"]:
        state, history = kenlm.start(False), [BOS]
        for word in sentence.split():
            state, score = kenlm.score(state, words.index(word))
            assert score == pytest.approx(ours.log10_prob(word, history), abs=1e-5), (sentence, word)
            history.append(word)
        _, score = kenlm.finish(state)
        assert score == pytest.approx(ours.log10_prob(EOS, history), abs=1e-5)
    assert arpa_words(path) == sorted({w for s in CORPUS for w in s.split()})


def test_bad_arpa_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.arpa"):
        arpa_words(tmp_path / "missing.arpa")
    text = tmp_path / "notes.txt"
    text.write_text("just some text\n")
    with pytest.raises(ArpaError, match="notes.txt: not an ARPA file"):
        ArpaModel.load(text)
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\x00\x01")
    with pytest.raises(ArpaError, match="lm.bin: a binary KenLM model"):
        arpa_words(binary)
    broken = tmp_path / "broken.arpa"
    broken.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0 a b c d\n\\end\\\n")
    with pytest.raises(ArpaError, match=r"broken.arpa:5: expected a 1-gram line"):
        ArpaModel.load(broken)


def test_lm_build_counts_only_the_train_split(tmp_path, capsys):
    def manifest(name, texts):
        rows = [
            {"audio_filepath": f"{name}{i}.flac", "duration": 1.0, "text": t} for i, t in enumerate(texts)
        ]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    manifest("train", [s.upper() for s in CORPUS])  # normalised as for training: lower case
    manifest("dev", ["the cat sat on the dog", "dev only words"])
    manifest("test", ["test only words"])
    out = tmp_path / "lm.arpa"
    assert cli_main(["lm", "build", "--data", str(tmp_path), "-o", str(out), "--order", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    words = set(arpa_words(out))
    assert words == {w for s in CORPUS for w in s.split()}  # no dev or test word
    assert report["train_sentences"] == len(CORPUS) and report["ngrams"][0] == len(words) + 3
    assert report["dev_oov_rate"] == pytest.approx(3 / 11)  # "dev only words" of 9 words + 2 </s>
    model = ArpaModel.load(out)
    dev = [["the", "cat", "sat", "on", "the", "dog"], ["dev", "only", "words"]]
    assert report["dev_perplexity"] == pytest.approx(model.perplexity(dev)[0])
    assert model.order == 2


def test_lm_build_errors_name_the_input(tmp_path, capsys):
    out = str(tmp_path / "lm.arpa")
    assert cli_main(["lm", "build", "--data", str(tmp_path / "nowhere"), "-o", out]) == 2
    assert "nowhere: corpus folder or manifest not found (--data)" in capsys.readouterr().err
    assert cli_main(["lm", "build", "--data", str(tmp_path), "-o", out]) == 2
    assert "lacks train.jsonl" in capsys.readouterr().err
    assert cli_main(["lm", "build", "--data", str(tmp_path), "-o", out, "--order", "0"]) == 2
    assert "--order must be at least 1" in capsys.readouterr().err
    row = {"audio_filepath": "a.flac", "duration": 1.0, "text": "hola", "lang": "es"}
    (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
    assert cli_main(["lm", "build", "--data", str(tmp_path), "-o", out, "--langs", "en,de"]) == 2
    assert "no training utterance of en, de (--langs)" in capsys.readouterr().err


def test_markov_corpus_text_has_structure_that_an_lm_learns():
    """`supernet corpus --text markov`: every word pair is a chain step, and an LM of 300 training
    sentences predicts held-out ones far better than random sentences of the same words."""
    chain = sentences.MarkovText(sentences.word_list("en"), seed=0)
    rng = np.random.default_rng(0)
    train, held_out = (
        [chain.sentence(sentences.sentence_length(rng), rng) for _ in range(n)] for n in (300, 50)
    )
    index = {word: i for i, word in enumerate(chain.words)}
    for sentence in train:
        assert all(index[b] in chain.successors[index[a]] for a, b in zip(sentence, sentence[1:]))
    stream = sentences.WordStream(chain.words, seed=0)
    shuffled = [stream.take(len(sentence)) for sentence in held_out]
    lm = ArpaModel.of(estimate(train, order=3))
    assert lm.perplexity(held_out)[0] < 50 and lm.perplexity(shuffled)[0] > 400
    again = sentences.MarkovText(sentences.word_list("en"), seed=0)  # seeded: the same chain
    assert again.sentence(8, np.random.default_rng(1)) == chain.sentence(8, np.random.default_rng(1))


def test_the_corpus_plans_markov_sentences_and_records_the_choice():
    from supernet.data import corpus

    plan = corpus.LanguagePlan("en", seed=0, text="markov")
    index = {word: i for i, word in enumerate(plan.markov.words)}
    for _ in range(20):
        words = plan.next().text.split()
        assert all(index[b] in plan.markov.successors[index[a]] for a, b in zip(words, words[1:]))
    assert "text" not in corpus.build_parameters(["en"], 1.0, 0)  # older corpora still match
    assert corpus.build_parameters(["en"], 1.0, 0, "markov")["text"] == "markov"
    with pytest.raises(corpus.CorpusError, match="text: unknown 'poems'"):
        corpus.build_corpus("unused", ["en"], 1.0, 0, text="poems")


def test_estimate_refuses_sentence_marks_and_empty_text():
    with pytest.raises(ValueError, match="<s>"):
        estimate([["a", BOS]])
    with pytest.raises(ValueError, match="no words"):
        estimate([[], []])
    assert math.isinf(ArpaModel({("a",): -0.1}, {}).log10_prob("b"))  # no <unk>: nothing for b
    assert set(ArpaModel.of(estimate(TINY, 1)).vocabulary()) == {"a", "b", EOS, UNK}
