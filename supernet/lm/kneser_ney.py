"""Interpolated modified Kneser-Ney estimation of a word n-gram model (Chen & Goodman 1998).

KenLM's ``lmplz`` is a C++ binary outside PyPI, so the project estimates its own models. The
recipe is lmplz's, so the numbers are comparable with KenLM models of the same text:

- Sentences are padded as ``<s> w1 .. wk </s>``. The highest order uses raw counts; a lower-order
  n-gram uses its continuation count (how many distinct words precede it), except one that begins
  with ``<s>``, which nothing can precede, so it keeps its raw count.
- Order n has three discounts, for n-grams counted once, twice and three or more times, from its
  counts of counts t1..t4: ``Y = t1 / (t1 + 2 t2)``, ``D_k = k - (k + 1) Y t_{k+1} / t_k``. A tiny
  corpus can leave some t_k at zero or a D_k outside (0, k]; that order then falls back to one
  discount ``Y`` for every count (plain interpolated Kneser-Ney), or 0.5 when t1 or t2 is zero
  (lmplz would refuse). ``NgramModel.discount_kinds`` says which order used which.
- ``p(w | h) = (a(hw) - D(a(hw))) / a(h.) + gamma(h) p(w | h')`` with ``gamma(h)`` the mass the
  discounts freed: ``(D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / a(h.)``. Unigrams interpolate with
  the uniform distribution over the vocabulary (the words, ``</s>`` and ``<unk>``), so an unseen
  word gets ``gamma() / |V|`` as ``<unk>``.
- In ARPA terms, a listed n-gram's probability is the interpolated one, and the backoff weight of
  a context is ``gamma(h)``: then ``p(w | h) = b(h) p(w | h')`` for every unlisted ``hw`` is the
  same interpolation, so the model sums to one over the vocabulary for every history.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
DEFAULT_DISCOUNT = 0.5  # when an order's counts of counts cannot give one

Ngram = tuple[str, ...]


@dataclass(frozen=True)
class NgramModel:
    """A backoff n-gram model: ``log10_probs[ngram]`` of every listed n-gram (orders 1..order) and
    ``log10_backoffs[context]`` of every n-gram that is the context of a longer one."""

    order: int
    log10_probs: dict[Ngram, float]
    log10_backoffs: dict[Ngram, float]
    discounts: tuple[tuple[float, float, float], ...]  # (D1, D2, D3+) of orders 1..order
    discount_kinds: tuple[str, ...]  # "modified", "single" or "default", per order

    def counts(self) -> list[int]:
        """Listed n-grams per order, 1..order."""
        per_order = Counter(len(ngram) for ngram in self.log10_probs)
        return [per_order[n] for n in range(1, self.order + 1)]


def padded(sentences: Iterable[Sequence[str]]) -> Iterable[list[str]]:
    for words in sentences:
        yield [BOS, *words, EOS]


def raw_counts(sentences: Iterable[Sequence[str]], order: int) -> list[Counter]:
    """``counts[n][ngram]`` for n = 1..order (index 0 unused) of the padded sentences."""
    counts = [Counter() for _ in range(order + 1)]
    for tokens in padded(sentences):
        for n in range(1, order + 1):
            counts[n].update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return counts


def adjusted_counts(raw: list[Counter], order: int) -> list[Counter]:
    """Raw counts at the highest order and for n-grams that begin with ``<s>``; continuation
    counts (distinct left neighbours) for the rest."""
    adjusted = [Counter() for _ in range(order + 1)]
    adjusted[order] = Counter(raw[order])
    for n in range(1, order):
        continuation = Counter(ngram[1:] for ngram in raw[n + 1])  # each longer type once
        for ngram, count in raw[n].items():
            adjusted[n][ngram] = count if ngram[0] == BOS else continuation[ngram]
    return adjusted


def discounts_of(counts: Iterable[int]) -> tuple[tuple[float, float, float], str]:
    """``((D1, D2, D3+), kind)`` from one order's adjusted counts; see the module docstring."""
    of_counts = Counter(c for c in counts if c <= 4)
    t1, t2, t3, t4 = (of_counts[k] for k in (1, 2, 3, 4))
    if t1 == 0 or t2 == 0:
        return (DEFAULT_DISCOUNT,) * 3, "default"
    y = t1 / (t1 + 2 * t2)
    if t3 > 0 and t4 > 0:
        modified = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
        if all(0 < d <= k for k, d in enumerate(modified, start=1)):
            return modified, "modified"
    return (y, y, y), "single"


def estimate(
    sentences: Iterable[Sequence[str]],
    order: int = 3,
    discounts: Sequence[tuple[float, float, float]] | None = None,
) -> NgramModel:
    """The interpolated modified Kneser-Ney model of ``sentences`` (each a list of words).

    ``discounts`` (one ``(D1, D2, D3+)`` per order) replaces the estimated ones: for tests that
    work an example by hand.
    """
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    sentences = [list(words) for words in sentences]
    if not any(sentences):
        raise ValueError("no words to estimate a language model from")
    if any(w in (BOS, EOS) for words in sentences for w in words):
        raise ValueError(f"a sentence holds {BOS} or {EOS}, which mark sentence edges in the model")
    if discounts is not None:
        if len(discounts) != order:
            raise ValueError(f"discounts: expected {order} triples (one per order), got {len(discounts)}")
        if not all(0 < d <= k for triple in discounts for k, d in enumerate(triple, start=1)):
            raise ValueError(f"discounts: D_k must lie in (0, k], got {list(discounts)}")
    adjusted = adjusted_counts(raw_counts(sentences, order), order)
    del adjusted[1][(BOS,)]  # <s> is a context, never predicted

    chosen, kinds = [], []
    for n in range(1, order + 1):
        if discounts is None:
            d, kind = discounts_of(adjusted[n].values())
        else:
            d, kind = tuple(discounts[n - 1]), "given"
        chosen.append(d)
        kinds.append(kind)

    probs: dict[Ngram, float] = {}
    gammas: dict[Ngram, float] = {}
    vocabulary = {ngram[0] for ngram in adjusted[1]} | {UNK}
    for n in range(1, order + 1):
        d1, d2, d3 = chosen[n - 1]
        totals: dict[Ngram, float] = defaultdict(float)
        freed: dict[Ngram, float] = defaultdict(float)
        for ngram, count in adjusted[n].items():
            totals[ngram[:-1]] += count
            freed[ngram[:-1]] += d1 if count == 1 else d2 if count == 2 else d3
        for context, total in totals.items():
            gammas[context] = freed[context] / total
        for ngram, count in adjusted[n].items():
            context = ngram[:-1]
            discount = d1 if count == 1 else d2 if count == 2 else d3
            lower = 1 / len(vocabulary) if n == 1 else probs[ngram[1:]]
            probs[ngram] = (count - discount) / totals[context] + gammas[context] * lower
        if n == 1:  # <unk> (unseen) gets only the uniform share
            probs.setdefault((UNK,), gammas[()] / len(vocabulary))

    log10_probs = {ngram: math.log10(p) for ngram, p in probs.items()}
    log10_probs[(BOS,)] = -99.0  # ARPA's convention for "never predicted"
    log10_backoffs = {context: math.log10(g) for context, g in gammas.items() if context}
    return NgramModel(order, log10_probs, log10_backoffs, tuple(chosen), tuple(kinds))
