"""An onnxruntime session on the CPU: what running an exported model and the onnxruntime latency
tables (``supernet.latency.ort``) share, in a module that imports nothing of the training side."""

from __future__ import annotations

from pathlib import Path

from supernet.errors import UserError


def ort_session(path: str | Path, threads: int = 0):
    """A CPU onnxruntime session; ``threads`` 0 lets onnxruntime choose."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise UserError("running an ONNX model needs onnxruntime: pip install 'supernet[deploy]'") from err

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
