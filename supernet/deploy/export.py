"""``export_onnx``: a retrain checkpoint -> an ONNX model with its metadata, checked against PyTorch.

The model takes waveforms when the feature front-end (torchaudio's MelSpectrogram / MFCC and the
per-utterance normalisation) exports and matches PyTorch; otherwise it takes the normalised
features, and the metadata's ``features`` says exactly how to compute them. Batch and time are
dynamic: the model is traced on two utterances and checked on three others of other lengths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from supernet.asr_module import ASRModule
from supernet.deploy.calibration import Calibration, Int8Plan, int8_plan
from supernet.deploy.checkpoint import load_module
from supernet.deploy.graph import (
    INPUT_KINDS,
    INPUT_NAMES,
    OUTPUT_NAMES,
    deploy_module,
    feature_pipeline,
    sample_rate_of,
)
from supernet.deploy.inputs import load_waveform, read_inputs, synthetic_waveforms
from supernet.deploy.locate import find_unexportable
from supernet.deploy.metadata import model_metadata, read_metadata, write_props
from supernet.deploy.onnx_export import ExportFailed, export_module, save
from supernet.deploy.parity import TOLERANCE, Parity, check_parity
from supernet.deploy.runtime import pad_time, pad_waveforms
from supernet.deploy.session import ort_session
from supernet.errors import UserError

DEFAULT_OPSET = 18
TRACE_SECONDS = (1.0, 0.8)  # the example the exporter traces: batch 2, unequal lengths
CHECK_SECONDS = (2.33, 0.61, 1.57)  # the default parity check: other lengths, another batch size
MAX_CHECK_FILES = 8


def export_onnx(checkpoint: str | Path, output: str | Path, **options: Any) -> dict[str, Any]:
    """``export_asr_module`` of a retrain checkpoint (its ``options``), the checkpoint named in
    the report; int8 calibration reads the checkpoint's training data unless ``calibration``
    names other data."""
    module = load_module(checkpoint)
    if (
        options.get("int8")
        and options.get("int8_mode", "auto") != "dynamic"
        and not options.get("calibration")
    ):
        from supernet.deploy.calibration import checkpoint_calibration

        options["calibration"] = checkpoint_calibration(checkpoint)
    return {"checkpoint": str(checkpoint), **export_asr_module(module, output, **options)}


def export_asr_module(
    module: ASRModule,
    output: str | Path,
    int8: bool = False,
    int8_mode: str = "auto",
    calibration: str | Path | Calibration | None = None,
    opset: int = DEFAULT_OPSET,
    input_kind: str = "auto",
    check_audio: list[str | Path] | None = None,
    check_files: int = MAX_CHECK_FILES,
) -> dict[str, Any]:
    """Write ``output`` (and ``<stem>.int8.onnx`` with ``int8``) from a module loaded in eval
    mode; returns what was written and the parity figures. ``input_kind``: ``auto`` (waveform if
    it exports cleanly, else features), ``waveform`` or ``features``. ``check_audio``: audio files
    or manifests for the parity check (the first ``check_files`` utterances; default: synthetic
    audio). ``int8_mode``: ``static`` (calibrated on the training split of ``calibration``, a
    corpus folder or manifest), ``dynamic``, or ``auto`` (static when there is calibration data)."""
    if input_kind not in ("auto", *INPUT_KINDS):
        raise UserError(f"input kind must be auto, {' or '.join(INPUT_KINDS)}; got {input_kind!r}")
    output = Path(output)
    plan = int8_plan(int8_mode, calibration) if int8 else None  # bad calibration data fails now
    waveforms = check_waveforms(module, check_audio, check_files)
    kind, parity, fallback = _export_checked(module, output, opset, input_kind, waveforms)
    report: dict[str, Any] = {
        "arch": module.spec.name,
        "onnx": str(output),
        "bytes": output.stat().st_size,
        "opset": opset,
        "input": kind,
        "waveform_fallback": fallback,
        "parity": parity.to_dict(),
        "int8": None,
    }
    if plan is not None:
        report["int8"] = _quantise(module, output, kind, waveforms, parity, plan)
    return report


def _export_checked(
    module: ASRModule, output: Path, opset: int, input_kind: str, waveforms
) -> tuple[str, Parity, str | None]:
    """Export with waveform input, falling back to features when the front-end does not export or
    does not match (in ``auto``); returns the kind, its parity and why waveform was given up."""
    if input_kind != "auto":
        return input_kind, _export_kind(module, output, opset, input_kind, waveforms), None
    try:
        parity = _export_kind(module, output, opset, "waveform", waveforms, name_layer=False)
    except ExportFailed as err:
        reason = f"the feature front-end does not export ({err.detail})"
        return "features", _export_kind(module, output, opset, "features", waveforms), reason
    if parity.ok:
        return "waveform", parity, None
    features = _export_kind(module, output.with_suffix(".features.onnx"), opset, "features", waveforms)
    if not features.ok:  # the network itself differs: the front-end is not to blame
        output.with_suffix(".features.onnx").unlink()
        return "waveform", parity, None
    output.with_suffix(".features.onnx").replace(output)
    reason = f"with the front-end in the graph, parity is not reached ({parity.summary()})"
    return "features", features, reason


def _export_kind(
    module: ASRModule, output: Path, opset: int, kind: str, waveforms, name_layer: bool = True
) -> Parity:
    """Export ``module`` with ``kind`` inputs to ``output``, metadata included; its parity."""
    example = model_inputs(module, kind, trace_waveforms(module))
    try:
        graph = deploy_module(module, kind, for_export=True)
        proto, min_length = export_module(graph, example, INPUT_NAMES[kind], OUTPUT_NAMES, opset)
    except ExportFailed as err:
        if not name_layer:
            raise
        raise unexportable(module, opset, err) from err
    write_props(proto, model_metadata(module, kind, min_length))
    save(proto, output)
    inputs, lengths = model_inputs(module, kind, waveforms, min_length)
    reference = deploy_module(module, kind)  # PyTorch as `supernet evaluate` runs it
    return check_parity(ort_session(output), reference, inputs, lengths, module.tokenizer, TOLERANCE)


def unexportable(module: ASRModule, opset: int, err: ExportFailed) -> UserError:
    """The error for a network that does not export, naming the first layer that does not."""
    culprit = find_unexportable(module, opset)
    arch = module.spec.name
    if culprit is None:
        return UserError(f"architecture {arch!r} cannot be exported to ONNX: {err.detail}")
    return UserError(f"architecture {arch!r}: {culprit.describe()}")


def model_inputs(module: ASRModule, kind: str, waveforms: list[torch.Tensor], min_length: int = 0):
    """``(inputs, lengths)`` of the ``kind`` model for these waveforms, the time axis at least
    ``min_length`` long."""
    audio, lengths = pad_waveforms(waveforms)
    if kind == "features":
        with torch.no_grad():
            audio, lengths = feature_pipeline(module)(audio, lengths)
    return pad_time(audio, min_length), lengths


def trace_waveforms(module: ASRModule) -> list[torch.Tensor]:
    return synthetic_waveforms(TRACE_SECONDS, sample_rate(module), seed=1)


def check_waveforms(
    module: ASRModule, paths: list[str | Path] | None, limit: int = MAX_CHECK_FILES
) -> list[torch.Tensor]:
    """The parity check's audio: the first ``limit`` utterances of ``paths``, else synthetic."""
    if not paths:
        return synthetic_waveforms(CHECK_SECONDS, sample_rate(module), seed=2)
    if limit < 1:
        raise UserError(f"the parity check needs at least 1 file, got {limit}")
    items = read_inputs(paths)[:limit]
    return [load_waveform(item.audio_filepath, sample_rate(module)).samples for item in items]


def sample_rate(module: ASRModule) -> int:
    return sample_rate_of(feature_pipeline(module).extractor)


def _quantise(
    module: ASRModule, output: Path, kind: str, waveforms, fp32: Parity, plan: Int8Plan
) -> dict[str, Any]:
    """The int8 model beside ``output`` and how its transcripts compare with the fp32 model's."""
    from supernet.deploy.agreement import char_error_rate
    from supernet.deploy.calibration import calibration_feeds
    from supernet.deploy.quantize import quantize_int8

    min_length = read_metadata(output)["min_input_length"]
    feeds = None
    if plan.mode == "static":
        feeds = calibration_feeds(module, kind, list(plan.utterances), min_length)
    path = quantize_int8(output, mode=plan.mode, calibration=feeds)
    inputs, lengths = model_inputs(module, kind, waveforms, min_length)
    int8 = check_parity(ort_session(path), deploy_module(module, kind), inputs, lengths, module.tokenizer)
    return {
        "onnx": str(path),
        "mode": plan.mode,
        "calibration": plan.calibration_report(),
        "bytes": path.stat().st_size,
        "same_lengths": int8.same_lengths,
        "max_abs_diff": int8.max_abs_diff,
        "texts": int8.onnx_texts,
        "cer_vs_fp32": char_error_rate(fp32.onnx_texts, int8.onnx_texts),
    }
