"""The stateful streaming chunk step as one ONNX graph: fixed shapes, the caches as inputs and outputs.

``ops.streaming`` streams in PyTorch with caches that grow and shrink (nothing at the start, the
held-back frames flushed at the end) and emits a varying number of frames a chunk. An ONNX graph
wants fixed shapes, so the step here (``StreamingStep``) takes exactly ``C`` feature frames a call
and gives exactly ``C / subsampling`` output frames, each op's outputs a fixed number of frames
behind its inputs, every cache a fixed-size tensor that starts at zero (the ops' steps and their
bookkeeping: ``supernet.deploy.onnx_streaming_ops``).

Two counters travel with the caches: ``offset`` (feature frames fed before this chunk: the
positions) and ``length`` (real frames fed so far: where the stream ends). The input
``valid_frames`` is ``C`` for every chunk but the last, which is zero-padded to ``C`` and says how
many frames are real; then ``flush_chunks`` chunks of zeros (``valid_frames`` 0) bring out the
frames still held back. The output ``frame_valid`` marks the output frames that belong to the
stream (it is False for those before its start and past its end).

Supported: linear, skip, zero, tdnn / septdnn (strided, causal), ``res-`` and ``-e<width>`` around
them, conv2d4x, conformer / transformer / mhsa / ebranchformer layers with ``local`` or
left-bounded ``chunk`` attention (``chunk-c8-w16``), ``down2-`` / ``down4-`` around any of these,
and ``lstm``. Anything else (full-context ``abs`` / ``rel`` attention, chunked attention without
``w`` whose cache grows with the stream, ``blstm``, front-end ops) is refused before export,
naming the layer.

Latency: the step's delay (``delay_frames`` in the metadata) is the sum of the ops' delays. Chunked
attention whose attention chunk is longer than the step's chunk at that layer delays every layer
by the part of its chunk still to come, so choose ``--chunk-ms`` a multiple of the attention chunk
(at the layer's frame rate) to get no more delay than the look-ahead.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ops.streaming import NotStreamable
from supernet.deploy.onnx_streaming_ops import AttentionStep, Clock, Rate, Step, group_frames, make_step
from supernet.deploy.runtime import CTCModel
from supernet.errors import UserError

COUNTERS = ("offset", "length")  # int64 scalars: feature frames fed before this chunk; real ones so far
INPUTS = ("features", "valid_frames")
OUTPUTS = ("log_probs", "frame_valid")
STATE_IN, STATE_OUT = "in.", "out."  # prefixes of a state's input and output names


def layer_name(op: nn.Module) -> str:
    return getattr(op, "spec", "") or type(op).__name__


class StreamingStep(nn.Module):
    """One chunk of ``chunk`` normalised feature frames through a ``DerivedNet``, fixed shapes.

    ``forward(features (B, C, F), valid_frames (), offset (), length (), *caches (B, ...))`` ->
    ``(log_probs (B, C / subsampling, V), frame_valid (C / subsampling,), offset, length, *caches)``
    (the counters and caches for the next chunk). ``states`` lists the counters and caches in that
    order: name, shape (``None`` for the batch axis) and dtype; all start at zero.
    """

    def __init__(self, net: nn.Module, chunk: int):
        super().__init__()
        from supernet.deploy.streaming import named_ops

        spec = net.spec
        if chunk % spec.total_stride:
            raise UserError(
                f"a chunk of {chunk} frames is not a multiple of the subsampling {spec.total_stride} "
                f"of architecture {spec.name!r}"
            )
        self.chunk, self.spec = chunk, spec
        rate, width, steps = Rate(chunk, 1, 0), spec.feature_dim, []
        for where, op in named_ops(net.eval()):
            try:
                step = make_step(op, rate, width)
            except NotStreamable as err:
                raise UserError(
                    f"architecture {spec.name!r}: {where} ({layer_name(op)!r}) cannot be exported as a "
                    f"streaming ONNX chunk step: {err}"
                ) from err
            top = where.replace("[", ".").replace("]", "")
            for path, sub in step.named_modules():
                if isinstance(sub, Step):  # nested steps (a residual's branch) name their caches too
                    sub.prefix = f"{top}.{path}." if path else f"{top}."
            steps.append(step)
            rate, width = step.rate_out, spec.dim
        self.steps = nn.ModuleList(steps)
        self.rate_out = rate
        self.caches = {
            s.prefix + name: shape for step in steps for s in step.modules() if isinstance(s, Step)
            for name, shape in s.caches.items()
        }  # fmt: skip

    @property
    def states(self) -> list[dict[str, Any]]:
        counters = [{"name": name, "shape": [], "dtype": "int64"} for name in COUNTERS]
        caches = [
            {"name": name, "shape": [None, *shape], "dtype": "float32"} for name, shape in self.caches.items()
        ]
        return counters + caches

    def initial_state(self, batch: int) -> list[torch.Tensor]:
        counters = [torch.zeros((), dtype=torch.int64) for _ in COUNTERS]
        return counters + [torch.zeros(batch, *shape) for shape in self.caches.values()]

    @property
    def delay_frames(self) -> int:
        """Feature frames the step's outputs lag its input: a call brings out the output frames of
        the features up to ``delay_frames`` before the end of its chunk (0: all of them)."""
        return self.rate_out.delay * self.rate_out.stride

    @property
    def flush_chunks(self) -> int:
        """Chunks of zeros after the last that bring out every held-back frame."""
        return -(-self.rate_out.delay // self.rate_out.frames)

    def forward(self, features, valid_frames, offset, length, *caches):
        length = length + valid_frames
        clock = Clock(offset, length)
        state, new = dict(zip(self.caches, caches)), {}
        x = features
        for step in self.steps:
            x = step(x, clock, state, new)
        log_probs = x.float().log_softmax(dim=-1)
        frame_valid = clock.valid_at(self.rate_out)
        return (log_probs, frame_valid, offset + self.chunk, length, *(new[name] for name in self.caches))


def step_frames(spec, chunk_ms: float, net: nn.Module | None = None) -> int:
    """Feature frames a chunk of ``chunk_ms``, rounded up to a multiple of the subsampling and,
    given the network, of what its ``down2-`` / ``down4-`` layers need for whole groups of frames."""
    from supernet.deploy.streaming import chunk_frames, named_ops

    multiple = spec.total_stride
    if net is not None:
        stride = 1
        for _, op in named_ops(net):
            multiple = math.lcm(multiple, group_frames(op, stride))
            stride *= getattr(op, "stride", 1)
    frames = chunk_frames(spec, chunk_ms)
    return -(-frames // multiple) * multiple


# ----------------------------------------------------------------------------- running it


class OnnxStream:
    """A streaming ONNX model (``supernet export --streaming``) in onnxruntime, numpy only:
    ``accept(features (B, T, F) normalised, any T)`` -> the log-probs of the output frames now
    complete; ``finish()`` the rest. What docs/deploy.md's loop does, with partial chunks buffered."""

    def __init__(self, session, metadata: dict[str, Any]):
        self.session, self.metadata = session, metadata
        self.streaming = metadata["streaming"]
        self.chunk = int(self.streaming["chunk_frames"])
        self.output_names = [o.name for o in session.get_outputs()]
        self.reset()

    def reset(self, batch: int = 1) -> None:
        self.batch = batch
        self.state = {
            s["input"]: np.zeros([batch if d is None else d for d in s["shape"]], dtype=s["dtype"])
            for s in self.streaming["states"]
        }
        self.pending: np.ndarray | None = None
        self.chunk_seconds: list[float] = []

    def _step(self, chunk: np.ndarray, valid: int) -> np.ndarray:
        began = time.perf_counter()
        feeds = {"features": chunk.astype(np.float32), "valid_frames": np.array(valid, dtype=np.int64)}
        outputs = dict(zip(self.output_names, self.session.run(None, {**feeds, **self.state})))
        self.state = {s["input"]: outputs[s["output"]] for s in self.streaming["states"]}
        self.chunk_seconds.append(time.perf_counter() - began)
        return outputs["log_probs"][:, outputs["frame_valid"]]

    def accept(self, features: np.ndarray) -> np.ndarray:
        frames = features if self.pending is None else np.concatenate([self.pending, features], 1)
        whole = frames.shape[1] // self.chunk * self.chunk
        out = [self._step(frames[:, s : s + self.chunk], self.chunk) for s in range(0, whole, self.chunk)]
        self.pending = frames[:, whole:]
        return _joined(out, frames.shape[0], self.metadata["vocab_size"])

    def finish(self) -> np.ndarray:
        """The last partial chunk (zero-padded) and the chunks of zeros that flush the stream."""
        dim = int(self.metadata["features"]["dim"])
        pending = self.pending if self.pending is not None else np.zeros((self.batch, 0, dim), np.float32)
        last = np.zeros((self.batch, self.chunk, dim), np.float32)
        last[:, : pending.shape[1]] = pending
        out = [self._step(last, pending.shape[1])] if pending.shape[1] else []
        zeros = np.zeros_like(last)
        out += [self._step(zeros, 0) for _ in range(int(self.streaming["flush_chunks"]))]
        self.pending = None
        return _joined(out, last.shape[0], self.metadata["vocab_size"])


def _joined(parts: list[np.ndarray], batch: int, vocab: int) -> np.ndarray:
    return np.concatenate(parts, 1) if parts else np.zeros((batch, 0, vocab), np.float32)


def stream_onnx(stream: OnnxStream, features: np.ndarray) -> np.ndarray:
    """One utterance's (or a batch of equal-length ones') normalised features ``(B, T, F)``
    through the streaming model: its log-probs ``(B, ceil(T / subsampling), V)``."""
    stream.reset(features.shape[0])
    return np.concatenate([stream.accept(features), stream.finish()], 1)


def is_streaming_onnx(path: str | Path) -> bool:
    """Whether an ``.onnx`` file is a streaming chunk step (its metadata has ``streaming``)."""
    from supernet.deploy.metadata import read_metadata

    return "streaming" in read_metadata(path)


class OnnxStreamingCTC(CTCModel):
    """A streaming ONNX model as a ``supernet.deploy.runtime.CTCModel``: features per utterance
    (as its metadata describes them, global CMVN included; they are frame-local, so a stream of
    audio gives the same frames), then the chunk step in onnxruntime, one utterance at a time.
    What ``supernet transcribe model.onnx --stream`` runs; ``chunk_seconds`` holds every chunk
    step's compute time."""

    def __init__(self, path: str | Path, threads: int = 0):
        from supernet.deploy.metadata import read_metadata, tokenizer_of
        from supernet.deploy.runtime import _pipeline
        from supernet.deploy.session import ort_session

        self.metadata = read_metadata(path)
        if "streaming" not in self.metadata:
            raise UserError(
                f"{path}: --stream runs a retrain checkpoint (.ckpt) or a streaming ONNX model; this is a "
                "whole-utterance ONNX model (run it without --stream, or export the chunk step with "
                "`supernet export CKPT -o model.onnx --streaming --chunk-ms N`)"
            )
        self.stream = OnnxStream(ort_session(path, threads), self.metadata)
        self.tokenizer = tokenizer_of(self.metadata)
        self.sample_rate = int(self.metadata["features"]["sample_rate"])
        self.chunk_ms = float(self.metadata["streaming"]["chunk_ms"])
        self.pipeline = _pipeline(self.metadata["features"])
        self.chunk_seconds: list[float] = []

    def log_probs(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            features, frames = self.pipeline(audio.float(), lengths)
        rows = []
        for row, n in zip(features.numpy(), frames.tolist()):
            rows.append(torch.from_numpy(stream_onnx(self.stream, row[None, :n])[0]))
            self.chunk_seconds += self.stream.chunk_seconds
        out_lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), out_lengths


# ----------------------------------------------------------------------------- export


def streaming_metadata(module, step: StreamingStep, chunk_ms: float) -> dict[str, Any]:
    """The whole-utterance model's metadata (tokens, blank, features with the global CMVN, ...)
    with the chunk step's: its inputs, outputs, chunk, delay and states."""
    from supernet.deploy.metadata import model_metadata

    spec = module.spec
    frame_ms = 1000 / spec.input_rate
    metadata = model_metadata(module, "features", step.chunk)
    states = [
        {**s, "input": STATE_IN + s["name"], "output": STATE_OUT + s["name"], "initial": 0}
        for s in step.states
    ]
    metadata.update(
        input_names=[*INPUTS, *(s["input"] for s in states)],
        output_names=[*OUTPUTS, *(s["output"] for s in states)],
        streaming={
            "chunk_frames": step.chunk,
            "chunk_ms": step.chunk * frame_ms,
            "requested_chunk_ms": chunk_ms,
            "output_frames": step.rate_out.frames,
            "delay_frames": step.delay_frames,
            "delay_ms": step.delay_frames * frame_ms,
            "flush_chunks": step.flush_chunks,
            "states": states,
            "how": "per call: features (B, chunk_frames, F) normalised as `features` says, valid_frames = "
            "the real frames in it (chunk_frames; fewer in the last, zero-padded; 0 in the flush_chunks "
            "chunks of zeros after it), and every state input (zeros at the start of a stream, then the "
            "matching outputs of the previous call). Keep log_probs[:, frame_valid]: their concatenation "
            "is the whole utterance's log-probs. Batch rows are streams of the same length.",
        },
    )
    return metadata


def export_streaming(
    checkpoint: str | Path,
    output: str | Path,
    chunk_ms: float,
    opset: int = 18,
    check_audio: list[str | Path] | None = None,
    check_files: int = 8,
) -> dict[str, Any]:
    """``export_streaming_module`` of a retrain checkpoint (trained with global CMVN)."""
    from supernet.deploy.checkpoint import load_module

    module = load_module(checkpoint)
    report = export_streaming_module(
        module, output, chunk_ms, opset, check_audio, check_files, str(checkpoint)
    )
    return {"checkpoint": str(checkpoint), **report}


def export_streaming_module(
    module,
    output: str | Path,
    chunk_ms: float,
    opset: int = 18,
    check_audio: list[str | Path] | None = None,
    check_files: int = 8,
    source: str = "the model",
) -> dict[str, Any]:
    """Write the chunk step of ``module`` (eval mode, ``module.cmvn`` set) to ``output`` with its
    metadata, and check it: streamed through onnxruntime, check utterances must give the
    full-utterance PyTorch log-probs (within ``TOLERANCE``) and greedy texts."""
    from supernet.deploy.metadata import write_props
    from supernet.deploy.onnx_export import ExportFailed, save

    if chunk_ms <= 0:
        raise UserError(f"--chunk-ms must be positive, got {chunk_ms:g}")
    if getattr(module, "cmvn", None) is None:
        raise UserError(
            f"{source}: trained with per-utterance feature normalisation, which reads the whole "
            "utterance and cannot stream; retrain with --data.normalisation global"
        )
    output = Path(output)
    step = StreamingStep(module.net, step_frames(module.spec, chunk_ms, module.net)).eval()
    example = (
        torch.randn(2, step.chunk, module.spec.feature_dim),
        torch.tensor(step.chunk, dtype=torch.int64),
        *step.initial_state(2),
    )
    try:
        proto = export_step(step, example, opset)
    except ExportFailed as err:
        raise UserError(
            f"architecture {module.spec.name!r}: the streaming step does not export: {err.detail}"
        ) from err
    metadata = streaming_metadata(module, step, chunk_ms)
    write_props(proto, metadata)
    save(proto, output)
    parity = check_streaming_parity(module, output, check_audio, check_files)
    return {
        "arch": module.spec.name,
        "onnx": str(output),
        "bytes": output.stat().st_size,
        "opset": opset,
        "input": "features",
        "streaming": {k: v for k, v in metadata["streaming"].items() if k not in ("states", "how")},
        "states": len(step.states),
        "state_numbers": sum(math.prod(s["shape"][1:]) for s in step.states[len(COUNTERS) :]),
        "parity": parity.to_dict(),
        "note": misaligned_note(step),
    }


def misaligned_note(step: StreamingStep) -> str | None:
    """Why the step delays more than it need, when its chunk does not line up with chunked attention."""
    frame_ms = 1000 / step.spec.input_rate
    chunks = {
        s.attention.chunk * s.rate_in.stride * frame_ms
        for s in step.modules()
        if isinstance(s, AttentionStep)
        and s.attention.kind == "chunk"
        and s.rate_in.frames % s.attention.chunk
    }
    if not chunks:
        return None
    longest = max(chunks)
    return (
        f"the step's {step.chunk * frame_ms:g} ms are not a whole number of the {longest:g} ms attention chunks: "
        f"each such layer finishes part of its chunk a step later (delay {step.delay_frames * frame_ms:g} ms); "
        f"a --chunk-ms that is a multiple of {longest:g} avoids it"
    )


def export_step(step: StreamingStep, example: tuple, opset: int):
    """The ``onnx.ModelProto`` of the step, the batch axis dynamic; ``ExportFailed``.

    The TorchScript exporter first: the step has fixed shapes but for the batch, which is what it
    handles, and it takes about 1-2 s where ``torch.export`` and the dynamo exporter take 20-50 s
    (tiny tdnn_d and chunked conformer_s, this 2-core machine). The dynamo path is the fallback
    (the TorchScript exporter is deprecated in torch)."""
    from supernet.deploy.onnx_export import ExportFailed, gist, quiet, to_onnx
    from supernet.deploy.traceable import traceable_ops

    inputs = [*INPUTS, *(STATE_IN + s["name"] for s in step.states)]
    outputs = [*OUTPUTS, *(STATE_OUT + s["name"] for s in step.states)]
    scalars = {
        "valid_frames",
        "frame_valid",
        *(prefix + c for prefix in (STATE_IN, STATE_OUT) for c in COUNTERS),
    }
    batched = [name for name in inputs + outputs if name not in scalars]
    log, buffer = io.StringIO(), io.BytesIO()
    with torch.no_grad(), traceable_ops(), quiet(log):
        try:
            torch.onnx.export(
                step, example, buffer, dynamo=False, opset_version=opset, input_names=inputs,
                output_names=outputs, dynamic_axes={name: {0: "batch"} for name in batched},
            )  # fmt: skip
            import onnx

            return onnx.load_from_string(buffer.getvalue())
        except Exception as err:  # the TorchScript exporter's many error kinds
            first = ExportFailed(gist(err), log.getvalue())
    try:
        return to_onnx(trace_step(step, example), example, inputs, outputs, opset)
    except ExportFailed as err:
        raise ExportFailed(f"{first.detail}; with torch.export: {err.detail}", err.log) from err


def trace_step(step: StreamingStep, example: tuple) -> torch.export.ExportedProgram:
    """``torch.export`` of the step, the batch axis dynamic (features and caches); ``ExportFailed``."""
    from supernet.deploy.onnx_export import export_program

    batch = torch.export.Dim.DYNAMIC
    dynamic = [{0: batch}, None, None, None, tuple({0: batch} for _ in step.caches)]  # *caches: one entry
    return export_program(step, example, dynamic)


def check_streaming_parity(module, path: Path, check_audio=None, check_files: int = 8):
    """The streaming ONNX model against the full-utterance PyTorch network, one utterance at a time."""
    from supernet.deploy.export import check_waveforms
    from supernet.deploy.graph import feature_pipeline
    from supernet.deploy.metadata import read_metadata
    from supernet.deploy.parity import TOLERANCE, Parity, texts
    from supernet.deploy.runtime import pad_waveforms
    from supernet.deploy.session import ort_session

    stream = OnnxStream(ort_session(path), read_metadata(path))
    audio, lengths = pad_waveforms(check_waveforms(module, check_audio, check_files))
    with torch.no_grad():
        features, frames = feature_pipeline(module)(audio, lengths)
        reference, ref_lengths = (t.numpy() for t in module.net(features, frames))
    diff, valid, same_lengths, got = 0.0, 0, True, np.zeros_like(reference)
    for b, n in enumerate(frames.tolist()):
        log_probs = stream_onnx(stream, features[b : b + 1, :n].numpy())[0]
        m = int(ref_lengths[b])
        if log_probs.shape[0] != m:
            same_lengths, diff = False, float("inf")
            continue
        got[b, :m] = log_probs
        diff, valid = max(diff, float(np.abs(log_probs - reference[b, :m]).max(initial=0.0))), valid + m
    torch_texts = texts(reference, ref_lengths, module.tokenizer)
    onnx_texts = texts(got, ref_lengths, module.tokenizer)
    return Parity(
        diff,
        valid,
        len(ref_lengths),
        same_lengths,
        torch_texts == onnx_texts,
        torch_texts,
        onnx_texts,
        TOLERANCE,
    )
