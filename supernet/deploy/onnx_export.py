"""ONNX export with dynamic batch and time axes: ``torch.export``, then the dynamo ONNX exporter
(onnxscript's ATen library), the exporters' chatter kept off the console.

The TorchScript exporter (``dynamo=False``) is not used: tried on these ops, it refused the
relative-position attention (``SymbolicValueError`` in ``rel_shift``'s strided view), while the
dynamo path exports every op family of the shipped spaces (LSTMs as ONNX ``LSTM`` nodes,
``ops/recurrent.py``) and matches PyTorch to 1e-5 on them (``tests/test_export.py``, ``docs/deploy.md``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from supernet.deploy.traceable import traceable_ops


class ExportFailed(Exception):
    """The exporter refused the module; ``detail`` is its message's gist, ``log`` its console output."""

    def __init__(self, detail: str, log: str = ""):
        super().__init__(detail)
        self.detail, self.log = detail, log


def export_module(
    model: nn.Module,
    example: tuple[torch.Tensor, torch.Tensor],
    input_names: tuple[str, str],
    output_names: tuple[str, ...],
    opset: int,
) -> tuple[object, int]:
    """``(onnx.ModelProto, shortest time axis)`` of ``model`` traced on ``example`` = ``(inputs (B,
    T, ...), lengths (B,))``, batch and time dynamic. Raises ``ExportFailed``."""
    program = trace(model, example)
    return to_onnx(program, example, input_names, output_names, opset), shortest_time(program)


def trace(model: nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` with dynamic batch and time; raises ``ExportFailed``.

    It runs here, by itself: ``torch.onnx.export`` falls back to other capture strategies when it
    fails, which can fix the time axis at the example's length without a word. The axes are
    ``Dim.DYNAMIC``: the ops' shape arithmetic leaves guards that sympy cannot prove for every
    length (``T != 2``, ``10 % (10 + 10 * (S // 320)) != 0``); they only raise the shortest length
    accepted (``shortest_time``: the metadata records it, callers pad to it).
    """
    dynamic = ({0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}, {0: torch.export.Dim.DYNAMIC})
    return export_program(model, example, dynamic)


def export_program(model: nn.Module, example: tuple, dynamic_shapes) -> torch.export.ExportedProgram:
    """``torch.export`` (non-strict, no grad, the ops in their traceable form, its chatter kept for
    the error); ``ExportFailed`` with the gist of whatever it raised."""
    log = io.StringIO()
    with torch.no_grad(), traceable_ops(), quiet(log):
        try:
            return torch.export.export(model, example, dynamic_shapes=dynamic_shapes, strict=False)
        except Exception as err:  # torch.export raises many kinds; all mean "does not trace"
            raise ExportFailed(gist(err), log.getvalue()) from err


def to_onnx(
    program: torch.export.ExportedProgram,
    example: tuple[torch.Tensor, torch.Tensor],
    input_names: tuple[str, str],
    output_names: tuple[str, ...],
    opset: int,
):
    """The ``onnx.ModelProto`` of a traced program; raises ``ExportFailed``."""
    log = io.StringIO()
    with torch.no_grad(), quiet(log):
        try:
            onnx_program = torch.onnx.export(
                program,
                example,
                dynamo=True,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                external_data=False,
                optimize=True,
                verbose=False,
            )
        except Exception as err:  # an ATen op without an ONNX translation, mostly
            raise ExportFailed(gist(err), log.getvalue()) from err
    return onnx_program.model_proto


def shortest_time(program: torch.export.ExportedProgram) -> int:
    """The least time-axis length the traced graph holds for; ``ExportFailed`` when batch or time
    were fixed at the example's size."""
    first = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == first)
    batch, time = node.meta["val"].shape[:2]
    for axis, size in (("batch", batch), ("time", time)):
        if not isinstance(size, torch.SymInt):
            raise ExportFailed(f"the {axis} axis was fixed at {size} while tracing (not dynamic)")
    return int(program.range_constraints[time.node.expr].lower)


@contextlib.contextmanager
def quiet(log: io.StringIO):
    """The exporter's progress lines and warnings ("torchvision is not installed", ...) go to
    ``log`` instead of the console: torch gives its ``torch.onnx`` logger a stderr handler."""
    handler = logging.StreamHandler(log)
    torch_onnx = logging.getLogger("torch.onnx")
    handlers, level = list(torch_onnx.handlers), torch_onnx.level
    torch_onnx.handlers = [handler]
    torch_onnx.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log):
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_onnx.handlers = handlers
        torch_onnx.setLevel(level)


def gist(err: BaseException) -> str:
    """The first informative line of an exporter error (they run to pages)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if not line.startswith(("Failed to export", "[ONNXRuntimeError]")) and len(line) > 10:
            return f"{type(err).__name__}: {line[:300]}"
    return type(err).__name__ + (f": {lines[0][:300]}" if lines else "")


def save(model, path: Path) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
