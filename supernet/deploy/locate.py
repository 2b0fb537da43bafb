"""Which layer keeps a network from exporting: each op exported alone, in order, on the
activations the previous ops make, until one fails. Run only after the whole network failed, so
the error can name the layer (``layers[3]``, its spec) instead of an exporter traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from supernet.asr_module import ASRModule
from supernet.deploy.onnx_export import ExportFailed, to_onnx, trace


@dataclass(frozen=True)
class Culprit:
    where: str  # "input", "layers[3]" or "head", as ArchSpec errors name fields
    spec: str
    detail: str

    def describe(self) -> str:
        return f"{self.where} ({self.spec!r}) cannot be exported to ONNX: {self.detail}"


def named_ops(module: ASRModule) -> list[tuple[str, str, torch.nn.Module]]:
    """``(field, spec, op)`` of the input op, every layer and the head, in the order data flows."""
    spec, net = module.spec, module.net
    layers = [(f"layers[{i}]", text, op) for i, (text, op) in enumerate(zip(spec.layers, net.layers))]
    return [("input", spec.input, net.input), *layers, ("head", spec.head, net.head)]


def example_features(module: ASRModule, seconds: tuple[float, float] = (1.0, 0.8)):
    """Two utterances of the network's input (features, or samples for raw audio), unequal lengths."""
    rate = module.spec.input_rate
    lengths = torch.tensor([round(s * rate) for s in seconds])
    x = torch.randn(
        2, int(lengths.max()), module.spec.feature_dim, generator=torch.Generator().manual_seed(0)
    )
    return x * (torch.arange(x.shape[1])[None, :, None] < lengths[:, None, None]), lengths


def find_unexportable(module: ASRModule, opset: int) -> Culprit | None:
    """The first op that does not export alone; None when each does (then their combination fails).

    Every op is traced first (``torch.export``, where most failures are), and only then converted
    to ONNX one by one: a tracing failure is found without paying for the conversions before it.
    """
    x, lengths = example_features(module)
    traced = []
    for where, spec, op in named_ops(module):
        try:
            traced.append((where, spec, trace(op.eval(), (x, lengths)), (x, lengths)))
        except ExportFailed as err:
            return Culprit(where, spec, err.detail)
        with torch.no_grad():
            x, lengths = op(x, lengths)
    for where, spec, program, example in traced:
        try:
            to_onnx(program, example, ("x", "lengths"), ("y", "out_lengths"), opset)
        except ExportFailed as err:
            return Culprit(where, spec, err.detail)
    return None
