"""Word lists and sentences for the synthetic corpus.

The words come from the `wordfreq` package's bundled frequency lists (`wordfreq.top_n_list(lang,
n)`: the n most frequent words of the language, from Wikipedia, subtitles, news, books, web text
and more), so every word is a real word of its language and no download is needed. Tokens with
digits, punctuation or letters outside the language's alphabet are dropped, and so are tokens
without a vowel (abbreviations such as "mr" or "nbc", which espeak-ng would spell out).

Sentences draw their words from a `WordStream` by default (`text="random"`): shuffled passes over
the whole list, so a corpus of T words uses min(T, list size) distinct words, which is as many as
its size allows, and no word predicts the next: a language model cannot help there. `text="markov"`
gives the text structure that an n-gram LM can learn (`MarkovText`): a word is followed by one of a
few successors, so a word LM from the training transcripts has something to know. It is a
controlled, very predictable language, so what an LM gains on it is an upper-end figure.
"""

from __future__ import annotations

from functools import cache

import numpy as np

VOCABULARY_SIZE = 3000  # words asked of wordfreq per language, before filtering
MIN_WORDS, MAX_WORDS = 3, 20  # words per sentence
TEXT_KINDS = ("random", "markov")
# The Markov language: the MARKOV_WORDS most frequent words of the list, each followed by one of
# MARKOV_SUCCESSORS others with probabilities ~ 1 / rank (entropy 2.06 bits: a perplexity of 4.2
# for a model that knew the chain; one estimated from a 30-minute corpus knows it only in part).
MARKOV_WORDS, MARKOV_SUCCESSORS = 600, 5

# Letters (lower case) of the languages we know; others keep any alphabetic token.
ALPHABETS: dict[str, str] = {
    "en": "abcdefghijklmnopqrstuvwxyz",
    "es": "abcdefghijklmnopqrstuvwxyzáéíóúüñ",
    "de": "abcdefghijklmnopqrstuvwxyzäöüß",
    "fr": "abcdefghijklmnopqrstuvwxyzàâæçéèêëîïôœùûüÿ",
    "it": "abcdefghijklmnopqrstuvwxyzàèéìíîòóùú",
    "pt": "abcdefghijklmnopqrstuvwxyzáâãàçéêíóôõú",
    "nl": "abcdefghijklmnopqrstuvwxyzéëïóöü",
}
VOWELS = set("aeiouyáéíóúüäöàâæèêëîïôœùûÿìòãõ")
# One-letter words that are words (wordfreq also lists stray letters split off contractions).
ONE_LETTER_WORDS: dict[str, set[str]] = {
    "en": {"a", "i"},
    "es": {"a", "e", "o", "u", "y"},
    "fr": {"a", "à", "y"},
    "it": {"a", "e", "è", "o"},
    "pt": {"a", "e", "é", "o"},
}


def keep_word(word: str, lang: str) -> bool:
    """True for a plain word of `lang`: its letters only, at least one vowel, no stray letter."""
    alphabet = ALPHABETS.get(lang)
    if alphabet is None:
        return word.isalpha() and (len(word) > 1)
    if not word or any(c not in alphabet for c in word) or not (set(word) & VOWELS):
        return False
    return len(word) > 1 or word in ONE_LETTER_WORDS.get(lang, set())


@cache
def word_list(lang: str, size: int = VOCABULARY_SIZE) -> tuple[str, ...]:
    """The filtered `wordfreq` list of `lang`, most frequent first; ValueError names the language."""
    import wordfreq

    # Exact codes only: wordfreq would quietly answer 'eo' (Esperanto) with its English list.
    if lang not in wordfreq.available_languages():
        raise ValueError(f"unknown language {lang!r}: wordfreq has no word list for it")
    words = wordfreq.top_n_list(lang, size)
    kept = tuple(dict.fromkeys(w.lower() for w in words if keep_word(w.lower(), lang)))
    if len(kept) < 100:
        raise ValueError(f"language {lang!r}: wordfreq gives only {len(kept)} usable words")
    return kept


def word_source() -> dict:
    """Where the words come from, for metadata.json."""
    from importlib.metadata import version

    return {
        "package": "wordfreq",
        "version": version("wordfreq"),
        "call": f"wordfreq.top_n_list(lang, {VOCABULARY_SIZE})",
        "filter": "lower case; letters of the language only; at least one vowel; no stray single letters",
        "sampling": "shuffled passes over the list (each word once per pass)",
    }


class WordStream:
    """An endless sequence of words: pass p is the list shuffled by a generator seeded (seed, p)."""

    def __init__(self, words: tuple[str, ...], seed: int, salt: tuple[int, ...] = ()) -> None:
        self.words = words
        self.seed_key = (seed, *salt)
        self.passes = 0
        self.buffer: list[str] = []

    def take(self, n: int) -> list[str]:
        while len(self.buffer) < n:
            rng = np.random.default_rng([*self.seed_key, self.passes])
            self.buffer.extend(self.words[i] for i in rng.permutation(len(self.words)))
            self.passes += 1
        taken, self.buffer = self.buffer[:n], self.buffer[n:]
        return taken


def sentence_length(rng: np.random.Generator) -> int:
    """Words in a sentence: uniform on [MIN_WORDS, MAX_WORDS]."""
    return int(rng.integers(MIN_WORDS, MAX_WORDS + 1))


class MarkovText:
    """Sentences from a fixed first-order chain over ``words``: each word has its successors and
    their probabilities, drawn once from a generator seeded by ``(seed, *salt)``; a sentence starts
    at a uniformly drawn word and follows the chain."""

    def __init__(
        self,
        words: tuple[str, ...],
        seed: int,
        salt: tuple[int, ...] = (),
        size: int = MARKOV_WORDS,
        successors: int = MARKOV_SUCCESSORS,
    ) -> None:
        self.words = words[:size]
        if len(self.words) <= successors:
            raise ValueError(
                f"a Markov language of {successors} successors needs more than {len(self.words)} words"
            )
        rng = np.random.default_rng([seed, *salt])
        self.successors = np.stack(
            [rng.choice(len(self.words), size=successors, replace=False) for _ in self.words]
        )
        weights = 1.0 / np.arange(1, successors + 1)
        self.weights = weights / weights.sum()

    def sentence(self, n: int, rng: np.random.Generator) -> list[str]:
        """``n`` words of the chain, drawn with ``rng``."""
        state = int(rng.integers(len(self.words)))
        out = [state]
        for _ in range(n - 1):
            state = int(self.successors[state][rng.choice(len(self.weights), p=self.weights)])
            out.append(state)
        return [self.words[i] for i in out]


def text_source(text: str) -> dict:
    """How sentences are made, for metadata.json."""
    if text == "random":
        return {
            "text": "random",
            "order": "words in shuffled passes over the list: no word predicts the next",
        }
    return {
        "text": "markov",
        "order": "first-order chain: a uniformly drawn first word, then one of each word's successors",
        "words": f"the {MARKOV_WORDS} most frequent of the list",
        "successors": MARKOV_SUCCESSORS,
        "successor_probabilities": "proportional to 1 / rank",
    }
