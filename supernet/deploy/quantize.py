"""int8 weights for CPU inference: onnxruntime's dynamic quantisation (weights QInt8, activations
quantised per batch at run time), written beside the fp32 model with the same metadata.

Only the network is quantised. The spectral front-end's MatMul (power spectrum x mel filterbank)
is left in float: its input spans many orders of magnitude, and one uint8 scale per tensor would
flatten the quiet bands that the log brings back up. onnxruntime's shape pre-processing is not
run: its symbolic shape inference stops on these graphs ("Incomplete symbolic shape inference").
"""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

# MatMul and Gemm: linears, attention projections, FFNs. Convolutions stay float: with them in int8
# onnxruntime's ConvInteger made the models about twice as slow (1 thread, 4 s of audio: tdnn_d
# 30.8 ms against 12.7 ms, conformer_s 54.8 against 23.2 ms), so int8 TDNNs would be smaller only.
QUANTISED_OPS = ["MatMul", "Gemm"]
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


def quantize_int8(fp32: str | Path, out: str | Path | None = None) -> Path:
    """Dynamic int8 quantisation of ``fp32``'s network; metadata copied with a ``quantisation`` note."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = int8_path(fp32) if out is None else Path(out)
    model = onnx.load_model(str(fp32))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process, which fails on these graphs (above)
    try:
        quantize_dynamic(
            str(fp32),
            str(out),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTISED_OPS,
            nodes_to_exclude=outside_network(model),
            extra_options={"MatMulConstBOnly": True},  # weights only, never activation x activation
        )
    finally:
        root.setLevel(level)
    props = {p.key: p.value for p in model.metadata_props}
    props["quantisation"] = json.dumps(
        {
            "method": "onnxruntime quantize_dynamic",
            "weights": "QInt8",
            "ops": QUANTISED_OPS,
            "front_end": "float",
        }
    )
    quantised = onnx.load_model(str(out))
    onnx.helper.set_model_props(quantised, props)
    onnx.save_model(quantised, str(out))
    return out
