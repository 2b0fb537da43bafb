"""Stateful streaming inference of a derived network: feed feature chunks, get log-probs and text.

Each op keeps what its next outputs still read (``ops.streaming``): a TDNN or convolution the last
frames of its kernel, attention the keys and values of its left window, a residual the inputs its
branch holds back. A chunk then costs a chunk's work, not the prefix's, and the outputs over a
stream equal the full-utterance outputs (float rounding apart) whatever the chunk size: an output
comes as soon as its look-ahead has arrived, so the look-ahead is latency, never a different
answer. Chunked attention without a left bound (``chunk-c16``, no ``w``) streams too, but its key
cache grows with the stream: ``chunk-c16-w64`` bounds it.

Features must stream as well: per-utterance normalisation reads the whole utterance first, so the
stream normalises each frame with global statistics (``GlobalCMVN``): those a model was trained
with (``--data.normalisation global``, kept in its checkpoints), or, for a model trained with
per-utterance statistics, ones passed in (then the model sees slightly other features than in
training, and its outputs differ from ``supernet evaluate``'s).

    recognizer = StreamingRecognizer.from_checkpoint("runs/x/checkpoints/last.ckpt")
    for chunk in chunks:                  # (frames, feature_dim) raw log-mels, e.g. 16 frames = 160 ms
        log_probs = recognizer.accept(chunk)      # the output frames now complete
        print(recognizer.text)                    # greedy transcript so far
    recognizer.finish()                   # the held-back frames at the end

``StreamingCTC.from_checkpoint(ckpt, chunk_ms)`` is the same as a ``supernet.deploy.runtime.CTCModel``
(waveforms in, log-probs out, computed chunk by chunk), for ``supernet transcribe --stream --chunk-ms N``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from ops.streaming import NotStreamable, state_tensors
from supernet.data.features import GlobalCMVN
from supernet.data.tokenizer import BLANK_ID, CharTokenizer
from supernet.decoding import greedy_ctc_ids
from supernet.deploy.checkpoint import checkpoint_cmvn
from supernet.deploy.runtime import CTCModel
from supernet.errors import UserError


def named_ops(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network's ops in the order the data flows, named as in its ArchSpec."""
    layers = [(f"layers[{i}]", layer) for i, layer in enumerate(net.layers)]
    return [("input", net.input), *layers, ("head", net.head)]


def check_streamable(net: nn.Module) -> None:
    """Start a stream of no frames in every op of a ``DerivedNet``: a ``UserError`` naming the
    first layer that cannot stream (full-context attention, a BLSTM, a front-end op with no
    streaming path), before any audio."""
    spec = net.spec
    widths = [spec.feature_dim] + [spec.dim] * (len(net.layers) + 1)
    for (where, op), width in zip(named_ops(net), widths):
        try:
            with torch.no_grad():
                op.stream(torch.zeros(1, 0, width), None, False)
        except NotStreamable as err:
            name = getattr(op, "spec", "") or type(op).__name__
            raise UserError(f"architecture {spec.name!r}: {where} ({name!r}) cannot stream: {err}") from err


class StreamingRecognizer:
    """Chunks of features in, the log-probs of the output frames they complete out, for a
    ``DerivedNet`` (put in eval mode).

    ``accept(features, final=False)``: ``(T, F)`` for one stream or ``(B, T, F)`` for B streams
    that advance together; raw features (``cmvn`` normalises them) or normalised ones (no
    ``cmvn``). ``finish()`` ends the stream (the frames held for their look-ahead come out);
    ``reset()`` starts another. ``ids`` / ``texts`` hold the greedy transcript so far.
    """

    def __init__(
        self, net: nn.Module, tokenizer: CharTokenizer | None = None, cmvn: GlobalCMVN | None = None
    ):
        self.net = net.eval()
        check_streamable(self.net)
        self.ops = [op for _, op in named_ops(self.net)]
        self.tokenizer, self.cmvn = tokenizer, cmvn
        self.reset()

    @classmethod
    def from_module(cls, module, cmvn: GlobalCMVN | None) -> StreamingRecognizer:
        """A retrained ``ASRModule`` whose features ``cmvn`` normalises (``require_cmvn``)."""
        return cls(module.net, module.tokenizer, cmvn)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, cmvn: GlobalCMVN | None = None) -> StreamingRecognizer:
        """A retrain checkpoint with the CMVN statistics it was trained with, or ``cmvn``."""
        from supernet.deploy.checkpoint import load_module

        module = load_module(checkpoint)
        return cls.from_module(module, cmvn if cmvn is not None else require_cmvn(checkpoint))

    def reset(self) -> None:
        self.states: list[dict | None] = [None] * len(self.ops)
        self.ids: list[list[int]] = []
        self.finished = False
        self._last: torch.Tensor | None = None  # the last output frame, to merge repeats across chunks
        self._empty: torch.Tensor | None = None  # a chunk of no frames, the shape of those fed

    @torch.no_grad()
    def accept(self, features: torch.Tensor, final: bool = False) -> torch.Tensor:
        """The log-probs ``(T', V)`` (or ``(B, T', V)``) of the output frames now complete."""
        if self.finished:
            raise RuntimeError("this stream has ended (finish was called): reset() to start another")
        single = features.dim() == 2
        x = features[None] if single else features
        self._empty = features[..., :0, :]
        if self.cmvn is not None:
            x = self.cmvn(x)
        for i, op in enumerate(self.ops):
            x, self.states[i] = op.stream(x, self.states[i], final)
        log_probs = x.float().log_softmax(dim=-1)
        self._decode(log_probs)
        self.finished = final
        return log_probs[0] if single else log_probs

    def finish(self) -> torch.Tensor:
        """End the stream: the log-probs of the frames held back for their look-ahead."""
        if self._empty is None:
            raise RuntimeError("nothing was fed to this stream: accept a chunk before finish")
        return self.accept(self._empty, final=True)

    def _decode(self, log_probs: torch.Tensor) -> None:
        """Greedy CTC, continued: the previous chunk's last frame goes first, so a token that
        spans the boundary is not repeated; its own token (when not blank) is dropped."""
        if not self.ids:
            self.ids = [[] for _ in range(log_probs.shape[0])]
        if not log_probs.shape[1]:
            return
        frames = log_probs if self._last is None else torch.cat([self._last, log_probs], 1)
        lengths = torch.full((frames.shape[0],), frames.shape[1])
        for b, new in enumerate(greedy_ctc_ids(frames, lengths, blank=BLANK_ID)):
            carried = self._last is not None and int(self._last[b, 0].argmax()) != BLANK_ID
            self.ids[b].extend(new[1:] if carried else new)
        self._last = log_probs[:, -1:]

    @property
    def texts(self) -> list[str]:
        if self.tokenizer is None:
            raise ValueError("no tokenizer: read ids instead")
        return [self.tokenizer.decode(ids) for ids in self.ids]

    @property
    def text(self) -> str:
        """The transcript so far of a single stream."""
        texts = self.texts
        return texts[0] if texts else ""

    def state_numel(self) -> int:
        """Numbers the stream keeps between chunks (caches and held-back frames, all ops)."""
        return sum(t.numel() for t in state_tensors(self.states))


def stream_features(
    recognizer: StreamingRecognizer, features: torch.Tensor, chunk_frames: int
) -> tuple[torch.Tensor, list[float]]:
    """One utterance's features ``(T, F)`` streamed in chunks of ``chunk_frames``: its log-probs
    ``(T', V)`` and the seconds each ``accept`` took (the last entry is ``finish``)."""
    if chunk_frames < 1:
        raise ValueError(f"a chunk needs at least one frame, got {chunk_frames}")
    recognizer.reset()
    outputs, seconds = [], []
    for start in range(0, features.shape[0], chunk_frames):
        began = time.perf_counter()
        outputs.append(recognizer.accept(features[start : start + chunk_frames]))
        seconds.append(time.perf_counter() - began)
    began = time.perf_counter()
    outputs.append(recognizer.finish())
    seconds.append(time.perf_counter() - began)
    return torch.cat(outputs), seconds


def chunk_frames(spec, chunk_ms: float) -> int:
    """Input frames (feature frames, or samples for raw audio) in ``chunk_ms`` of audio."""
    frames = round(chunk_ms * spec.input_rate / 1000)
    if frames < 1:
        raise UserError(f"--chunk-ms {chunk_ms} is less than one input frame ({1000 / spec.input_rate} ms)")
    return frames


def require_cmvn(checkpoint: str | Path) -> GlobalCMVN:
    cmvn = checkpoint_cmvn(checkpoint)
    if cmvn is None:
        raise UserError(
            f"{checkpoint}: trained with per-utterance feature normalisation, which reads the whole "
            "utterance and cannot stream; retrain with --data.normalisation global, or pass global "
            "statistics (GlobalCMVN.fit over training features) knowing the model was not trained on them"
        )
    return cmvn


class StreamingCTC(CTCModel):
    """A retrained model run as a stream of ``chunk_ms`` chunks, one utterance at a time: what
    ``supernet transcribe --stream --chunk-ms N`` runs (``from_checkpoint``). Features are
    computed per utterance (they are frame-local: a stream of audio gives the same frames, each
    12.5 ms of window later)."""

    def __init__(self, module, chunk_ms: float, cmvn: GlobalCMVN):
        from supernet.deploy.graph import feature_pipeline, sample_rate_of

        self.recognizer = StreamingRecognizer.from_module(module, cmvn)
        self.extractor = feature_pipeline(module).extractor.eval()
        self.tokenizer = module.tokenizer
        self.sample_rate = sample_rate_of(self.extractor)
        self.chunk_frames = chunk_frames(module.spec, chunk_ms)
        self.chunk_ms = chunk_ms
        self.chunk_seconds: list[float] = []  # every chunk's compute time, over all utterances

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, chunk_ms: float, cmvn: GlobalCMVN | None = None):
        """A retrain checkpoint with the CMVN statistics it was trained with, or ``cmvn``."""
        from supernet.deploy.checkpoint import load_module

        module = load_module(checkpoint)
        if cmvn is None:
            cmvn = module.cmvn if module.cmvn is not None else require_cmvn(checkpoint)  # the error
        return cls(module, chunk_ms, cmvn)

    @torch.no_grad()
    def log_probs(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, feature_lengths = self.extractor(audio.float(), lengths)
        rows = []
        for row, n in zip(features, feature_lengths.tolist()):
            log_probs, seconds = stream_features(self.recognizer, row[:n], self.chunk_frames)
            rows.append(log_probs)
            self.chunk_seconds += seconds
        out_lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), out_lengths
