"""Transcription of audio files and manifests with a checkpoint or an exported model.

Files are read a batch at a time and resampled to the model's rate; a file that cannot be read is
recorded with its error and skipped, and the rest go on. Results come back in input order. The
model gives log-probabilities and a decoder (``supernet.decoding``: greedy unless told otherwise,
or a beam search with an LM) turns them into text, the same for ONNX and PyTorch models.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from supernet.data.audio import AudioError
from supernet.data.tokenizer import normalize_text
from supernet.decoding import Decoder, GreedyDecoder
from supernet.deploy.inputs import Item, load_waveform
from supernet.deploy.runtime import CTCModel, pad_waveforms

PROGRESS_MIN_FILES = 8  # fewer files than this: no progress bar


@dataclass(frozen=True)
class Result:
    item: Item
    text: str | None = None  # the transcript; None when the file was skipped
    error: str | None = None  # why the file was skipped
    file_rate: int | None = None  # the file's sample rate (resampled when not the model's)

    def to_row(self) -> dict[str, Any]:
        """A JSONL row: the manifest's fields (``text`` is the reference) and ``pred_text``."""
        row: dict[str, Any] = {"audio_filepath": self.item.audio_filepath, "id": self.item.id}
        if self.item.duration is not None:
            row["duration"] = self.item.duration
        if self.item.text is not None:
            row["text"] = self.item.text
        if self.error is not None:
            return {**row, "error": self.error}
        return {**row, "pred_text": self.text, "sample_rate": self.file_rate}


def transcribe_items(
    model: CTCModel,
    items: list[Item],
    batch_size: int = 8,
    progress: bool = True,
    decode: Decoder | None = None,
) -> Iterator[Result]:
    """One ``Result`` per item, in order, a batch at a time; a tqdm bar on stderr for many files.
    ``decode`` turns log-probabilities into texts (default: greedy with the model's tokenizer)."""
    decode = decode or GreedyDecoder(model.tokenizer)
    show = progress and len(items) >= PROGRESS_MIN_FILES
    # disable=None: tqdm draws the bar only on a terminal, never into a log file
    with tqdm(
        total=len(items), unit="file", desc="transcribe", file=sys.stderr, disable=None if show else True
    ) as bar:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            yield from _transcribe_batch(model, batch, decode)
            bar.update(len(batch))


def _transcribe_batch(model: CTCModel, batch: list[Item], decode: Decoder) -> list[Result]:
    loaded, results = {}, {}
    for i, item in enumerate(batch):
        try:
            loaded[i] = load_waveform(item.audio_filepath, model.sample_rate)
        except AudioError as err:
            results[i] = Result(item, error=str(err))
    if loaded:
        texts = decode(*model.log_probs(*pad_waveforms([w.samples for w in loaded.values()])))
        for (i, waveform), text in zip(loaded.items(), texts):
            results[i] = Result(batch[i], text=text, file_rate=waveform.file_rate)
    return [results[i] for i in range(len(batch))]


def score(results: list[Result]) -> dict[str, Any] | None:
    """WER and CER (jiwer, references normalised as in training) over the transcribed items that
    have a reference; None when none has."""
    scored = [r for r in results if r.error is None and r.item.text]
    if not scored:
        return None
    import jiwer

    refs = [normalize_text(r.item.text) for r in scored]
    hyps = [r.text for r in scored]
    words, chars = jiwer.process_words(refs, hyps), jiwer.process_characters(refs, hyps)
    return {"utterances": len(scored), "wer": words.wer, "cer": chars.cer}
