"""A word n-gram LM from a corpus' training transcripts, as ``supernet lm build`` makes it.

Only the train split is counted (a corpus folder's ``train.jsonl``, or the train part of one
manifest as the data module cuts it, by the same hash), so no dev or test sentence leaks into the decoder. The
dev split is scored, not counted: its perplexity tells how much an LM of this text can help.
Words are the transcripts normalised as for training and scoring (``normalize_text``) and split
at spaces, so the LM's words are the words WER counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supernet.lm.arpa import ArpaModel, write_arpa
from supernet.lm.kneser_ney import estimate


def split_sentences(data: str | Path, langs: list[str] | None = None) -> dict[str, list[list[str]]]:
    """``{"train": sentences, "dev": sentences}``, each sentence a list of normalised words.

    A corpus folder's ``train.jsonl`` and ``dev.jsonl`` are read as they are (no Lightning import:
    the data module is needed only to cut one manifest 90/10 as training does)."""
    from supernet.data.manifest import ManifestError, read_manifest
    from supernet.data.tokenizer import normalize_text

    def of_langs(utterances: list) -> list:
        return utterances if langs is None else [u for u in utterances if u.lang in langs]

    data = Path(data)
    if data.is_dir():
        if not (data / "train.jsonl").is_file():
            raise ManifestError(f"{data}: corpus folder lacks train.jsonl")
        dev = data / "dev.jsonl"
        splits = {
            "train": of_langs(read_manifest(data / "train.jsonl")),
            "dev": of_langs(read_manifest(dev)) if dev.is_file() else [],
        }
    elif data.is_file():  # languages first, then the cut: as the data module does
        from supernet.data.datamodule import DEV_FRACTION, hash_split

        train, dev = hash_split(of_langs(read_manifest(data)), DEV_FRACTION, salt="dev")
        splits = {"train": train, "dev": dev}
    else:
        raise FileNotFoundError(f"{data}: neither a corpus folder nor a manifest file (--data)")
    if not splits["train"]:
        of = f" of {', '.join(langs)} (--langs)" if langs else ""
        raise ManifestError(f"{data}: no training utterance{of}")
    return {name: [normalize_text(u.text).split() for u in utts] for name, utts in splits.items()}


def build_lm(
    data: str | Path, out: str | Path, order: int = 3, langs: list[str] | None = None
) -> dict[str, Any]:
    """Estimate the LM of ``data``'s training transcripts, write it to ``out`` (ARPA), and return
    what was built: sizes, discounts and the dev split's perplexity."""
    sentences = split_sentences(data, langs)
    model = estimate(sentences["train"], order)
    write_arpa(
        model,
        out,
        comments=(
            f"supernet lm build --data {data} --order {order}: interpolated modified Kneser-Ney",
            f"train sentences {len(sentences['train'])}; discounts per order (D1, D2, D3+, kind): "
            + "; ".join(
                f"{n}: {' '.join(f'{d:.4f}' for d in ds)} {kind}"
                for n, (ds, kind) in enumerate(zip(model.discounts, model.discount_kinds), start=1)
            ),
        ),
    )
    perplexity, tokens, unknown = ArpaModel.of(model).perplexity(sentences["dev"])
    return {
        "lm": str(out),
        "order": order,
        "train_sentences": len(sentences["train"]),
        "train_words": sum(len(s) for s in sentences["train"]),
        "vocabulary": len({word for words in sentences["train"] for word in words}),
        "ngrams": model.counts(),
        "discounts": [[round(d, 4) for d in triple] for triple in model.discounts],
        "discount_kinds": list(model.discount_kinds),
        "dev_perplexity": perplexity,
        "dev_tokens": tokens,
        "dev_oov_rate": unknown / tokens if tokens else None,
    }
