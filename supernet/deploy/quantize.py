"""int8 models for CPU inference, written beside the fp32 model with the same metadata:

- ``static`` (the default where calibration audio is known): onnxruntime's static quantisation in
  QDQ form, weights QInt8 per output channel (7-bit range, ``reduce_range``: AVX2 without VNNI
  saturates the u8 x s8 products of full 8-bit weights), activations QUInt8 with scales measured
  on a few utterances of the training split. Convolutions become ``QLinearConv`` and linears
  ``QLinearMatMul`` / ``QGemm``; the masks, ReLUs, reshapes and transposes between them stay in
  uint8, so onnxruntime's graph optimiser fuses each Q -> op -> DQ chain into int8 kernels.
- ``dynamic``: onnxruntime's dynamic quantisation of MatMul and Gemm (activations quantised per
  batch at run time); no calibration data, but convolutions stay float.

Only the network is quantised, and static int8 keeps its output layer (the CTC head) float. The
spectral front-end's DFT and its MatMul (power spectrum x mel filterbank) are left in float: the
spectrum spans many orders of magnitude, and one uint8 scale per tensor would flatten the quiet
bands that the log brings back up. onnxruntime's pre-processing
(``quant_pre_process``) is not run: its symbolic shape inference stops on these graphs
("Incomplete symbolic shape inference"), and with ``skip_symbolic_shape`` it runs but drops the
nodes' name scopes that tell the front-end apart, for no clear gain in speed (docs/deploy.md).
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supernet.errors import UserError

MODES = ("static", "dynamic")
# dynamic: MatMul and Gemm (linears, attention projections, FFNs). Convolutions stay float: with
# them in int8 onnxruntime's ConvInteger made the models about three times as slow (1 thread, 4 s
# of audio: tdnn_d 23.2 ms against 7.9 ms, conformer_s 42.1 against 15.8 ms; scripts/int8_ablation.py).
QUANTISED_OPS = ["MatMul", "Gemm"]
# static: the compute ops, and the ops between them that can run on uint8 (QLinearWhere for the
# padding masks): with these float, conformer_s's subsampling spent 3 ms a run converting to and
# from float around one mask and one transpose (1.35x over fp32 instead of 1.45x).
STATIC_OPS = ["Conv", "MatMul", "Gemm", "Relu", "Where", "Transpose", "Reshape", "Squeeze", "Unsqueeze"]
SCOPES = "pkg.torch.onnx.name_scopes"  # the module path the dynamo exporter records on each node


def int8_path(fp32: str | Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``."""
    fp32 = Path(fp32)
    return fp32.with_name(f"{fp32.stem}.int8{fp32.suffix}")


def outside_network(model) -> list[str]:
    """Names of the nodes that no module under ``net`` made (the front-end's). None in a graph
    without a ``net`` module, which is all network: a features-input model (its exported module
    is the network itself), or one op of a latency table (``supernet.latency.ort``)."""
    scoped = []
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == SCOPES), None)
        if scopes is not None:
            scoped.append((node.name, "net" in ast.literal_eval(scopes)))
    if not any(in_net for _, in_net in scoped):
        return []
    return [name for name, in_net in scoped if not in_net]


def ctc_head(model) -> list[str]:
    """Names of the nodes of the network's output layer (``net.head``; ``head`` in a
    features-input graph). Static int8 keeps it float: on tdnn_d (123 test utterances) its int8
    logits changed 1.29% of the characters of the fp32 transcripts, against 0.89% with it float
    (conformer_s 1.85% against 1.47%; ``scripts/int8_ablation.py``), for a layer of one small
    matrix product."""
    names = []
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == SCOPES), None)
        if scopes is not None and {"head", "net.head"} & set(ast.literal_eval(scopes)):
            names.append(node.name)
    return names


def quantize_int8(
    fp32: str | Path,
    out: str | Path | None = None,
    mode: str = "dynamic",
    calibration: Iterable[dict[str, Any]] | None = None,
) -> Path:
    """int8 quantisation of ``fp32``'s network (``mode``: ``static`` or ``dynamic``), metadata
    copied with a ``quantisation`` note. ``static`` needs ``calibration``: the model's input
    feeds (``{input name: array}``, one batch each) whose activation ranges set the scales."""
    import onnx

    if mode not in MODES:
        raise UserError(f"int8 mode must be {' or '.join(MODES)}; got {mode!r}")
    out = int8_path(fp32) if out is None else Path(out)
    model = onnx.load_model(str(fp32))
    with _quiet():  # its advice to pre-process, which fails on these graphs (above)
        if mode == "static":
            if calibration is None:
                raise UserError("static int8 needs calibration audio (or use dynamic int8)")
            feeds = list(calibration)
            if not feeds:
                raise UserError("static int8: no calibration utterances")
            note = _quantize_static(fp32, out, outside_network(model) + ctc_head(model), feeds)
        else:
            note = _quantize_dynamic(fp32, out, outside_network(model))
    props = {p.key: p.value for p in model.metadata_props}
    props["quantisation"] = json.dumps({**note, "front_end": "float"})
    quantised = onnx.load_model(str(out))
    onnx.helper.set_model_props(quantised, props)
    onnx.save_model(quantised, str(out))
    return out


def _quantize_dynamic(fp32: str | Path, out: Path, excluded: list[str]) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32),
        str(out),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=QUANTISED_OPS,
        nodes_to_exclude=excluded,
        extra_options={"MatMulConstBOnly": True},  # weights only, never activation x activation
    )
    return {"method": "onnxruntime quantize_dynamic", "weights": "QInt8", "ops": QUANTISED_OPS}


def _quantize_static(fp32: str | Path, out: Path, excluded: list[str], feeds: list[dict]) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(fp32),
        str(out),
        feed_reader(feeds),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=STATIC_OPS,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return {
        "method": "onnxruntime quantize_static (QDQ, MinMax calibration)",
        "weights": "QInt8 per channel, reduce_range",
        "activations": "QUInt8",
        "ops": STATIC_OPS,
        "calibration_batches": len(feeds),
        "head": "float",
    }


def feed_reader(feeds: list[dict[str, Any]]):
    """An onnxruntime ``CalibrationDataReader`` over ``feeds`` (made here: onnxruntime is
    imported only when quantising)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, Any]] = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._feeds, None)

        def rewind(self) -> None:
            self._feeds = iter(feeds)

    return _Reader()


@contextmanager
def _quiet():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
