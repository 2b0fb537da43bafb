"""Where a table is measured: the device, runtime, dtype, threads, input size and clock
(``make_settings``).

A table's numbers hold only under the settings it was measured with; ``CHECKED_KEYS`` are the
ones whose difference makes them meaningless (``LatencyTable.check`` compares them). The runtime
is one of them: ``torch`` (eager PyTorch, or CUDA graphs) or ``onnxruntime`` (the ops exported to
ONNX as ``supernet export`` exports models, on the CPU, in fp32 or ``int8``, quantised as
``int8_mode`` says: ``static`` or ``dynamic``, ``supernet.deploy.quantize``): the same network runs
at another speed in each, and a search must target the one it will be deployed on.
``LatencyTableError`` is the error of every part of ``supernet.latency``: a table that cannot
answer (wrong settings, a missing op, an op that cannot stream).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from supernet.errors import UserError
from supernet.latency.allocator import pin_heap_allocator

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# The settings a table is valid for; any difference makes its numbers meaningless.
CHECKED_KEYS = (
    "device",
    "device_name",
    "torch",
    "dtype",
    "threads",
    "batch",
    "seconds",
    "chunk_ms",
    "vocab",
    "clock",
    "cuda_graph",
    "allocator",
    "runtime",
    "int8",
    "int8_mode",
    "onnxruntime",
)
CLOCKS_NAMES = ("wall", "cpu")
RUNTIMES = ("torch", "onnxruntime")
# how int8 tables quantise (``supernet.deploy.quantize.MODES``, not imported: it is the deploy
# wing's); static is the default, as in ``supernet export --int8``
INT8_MODES = ("static", "dynamic")
# The opset of the ONNX graphs an onnxruntime table times: the one `supernet export` writes
# (``supernet.deploy.export.DEFAULT_OPSET``; not imported here, it would load Lightning).
ONNX_OPSET = 18


class LatencyTableError(UserError, ValueError):
    """A table that cannot answer: wrong settings, a missing op, an op that cannot stream."""


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo: what a table is keyed by."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_settings(
    device: str = "cpu",
    dtype: str = "fp32",
    threads: int | None = None,
    batch: int = 1,
    seconds: float = 4.0,
    chunk_ms: float | None = None,
    vocab: int = 64,
    clock: str = "wall",
    cuda_graph: bool = False,
    runtime: str = "torch",
    int8: bool = False,
    int8_mode: str | None = None,
) -> dict[str, Any]:
    """The settings of a measurement on *this* machine (device name, torch and onnxruntime
    versions read here). ``int8_mode`` (``static`` unless given) is recorded with ``int8``, None
    without it."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: {device!r} is not cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda asked for, but torch sees no CUDA device")
    if batch < 1 or seconds <= 0 or vocab < 2:
        raise ValueError(
            f"batch ({batch}), seconds ({seconds}) and vocab ({vocab}) must be positive (vocab >= 2)"
        )
    if clock not in CLOCKS_NAMES:
        raise ValueError(f"clock: {clock!r} is not one of {', '.join(CLOCKS_NAMES)}")
    if clock == "cpu" and (device != "cpu" or threads != 1):
        raise ValueError("clock: 'cpu' (thread CPU time) measures latency only on the CPU with --threads 1")
    if chunk_ms is not None and chunk_ms <= 0:
        raise ValueError(f"chunk_ms must be positive, got {chunk_ms}")
    if cuda_graph and device != "cuda":
        raise ValueError("cuda_graph: CUDA graphs (timing replays of a captured pass) need device cuda")
    check_runtime(runtime, device, dtype, int8, int8_mode)
    onnx = runtime == "onnxruntime"
    return {
        "device": device,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "dtype": dtype,
        "threads": int(threads if threads is not None else torch.get_num_threads()),
        "batch": int(batch),
        "seconds": float(seconds),
        "chunk_ms": None if chunk_ms is None else float(chunk_ms),
        "vocab": int(vocab),
        "clock": clock,
        "cuda_graph": bool(cuda_graph),
        # CPU: glibc's malloc pinned to the heap for every measurement (``supernet.latency.allocator``)
        "allocator": pin_heap_allocator() if device == "cpu" else None,
        "runtime": runtime,
        "int8": bool(int8),
        "int8_mode": (int8_mode or INT8_MODES[0]) if int8 else None,
        "onnxruntime": onnxruntime_version() if onnx else None,
        "opset": ONNX_OPSET if onnx else None,
    }


def check_runtime(runtime: str, device: str, dtype: str, int8: bool, int8_mode: str | None = None) -> None:
    """Refuse settings the runtime cannot measure: onnxruntime runs here on the CPU in fp32
    (its CUDA provider is not installed), and int8 is onnxruntime's quantisation (``int8_mode``:
    static or dynamic, only with ``int8``)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: {runtime!r} is not one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime" and (device != "cpu" or dtype != "fp32"):
        raise ValueError(
            f"runtime onnxruntime: tables are measured on the CPU in fp32 (asked: {device}, {dtype}); "
            "for int8 weights add --int8"
        )
    if int8 and runtime != "onnxruntime":
        raise ValueError("int8: int8 models are onnxruntime's quantisation; add --runtime onnxruntime")
    if int8_mode is not None and int8_mode not in INT8_MODES:
        raise ValueError(f"int8_mode: {int8_mode!r} is not one of {', '.join(INT8_MODES)}")
    if int8_mode is not None and not int8:
        raise ValueError(f"int8_mode: --int8-mode {int8_mode} quantises an int8 table; add --int8")


def table_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` of a table written before some keys were recorded, completed as it was
    measured: before CUDA graphs (none), before the CPU allocator was pinned (the system's),
    before onnxruntime tables (torch), and before int8 modes (an int8 table was dynamic: the
    only quantisation onnxruntime tables had)."""
    cpu = settings.get("device") == "cpu"
    settings = {
        "cuda_graph": False,
        "allocator": "system" if cpu else None,
        "runtime": "torch",
        "int8": False,
        "onnxruntime": None,
        **settings,
    }
    settings.setdefault("int8_mode", "dynamic" if settings["int8"] else None)
    return settings


def onnxruntime_version() -> str:
    """The installed onnxruntime's version; a clear error when the deploy extra is missing."""
    try:
        import onnxruntime
    except ImportError as err:
        raise LatencyTableError(
            "runtime onnxruntime needs onnx, onnxruntime and onnxscript: pip install 'supernet[deploy]'"
        ) from err
    return onnxruntime.__version__
