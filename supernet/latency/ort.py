"""onnxruntime tables: ops and networks exported to ONNX as ``supernet export`` exports models,
timed in onnxruntime on the CPU (fp32, or int8 weights with ``int8``).

Why each op is a session of its own: a session run is one opaque call with no place for a mark
between two ops, and onnxruntime's profiler reports nodes after its fusions, which no longer map
to one op each. So every op of a network is exported alone (``torch.export`` with dynamic batch
and time, then the dynamo ONNX exporter: ``supernet.deploy.onnx_export``), and a marked pass runs
the op sessions one after another on each other's outputs (each bound once to its inputs and
outputs: ``bound``), so that an op still finds the cache as the network before it leaves it. The unmarked pass runs the network as
one graph: in ``supernet profile`` the ops' graphs joined (``onnx.compose``), which onnxruntime
optimises as a whole; in ``supernet latency-check`` by default the network exported whole, as
``supernet export --input features`` writes it (``--graph composed`` joins the ops' graphs there
too: one export per distinct op instead of one per network). The per-op offset and the calibration
(``supernet.latency.measure.profile``) take out what separate sessions cost (a call's overhead,
fusions across ops).

- int8: each op's graph and each network's quantised by the call ``supernet export --int8`` makes
  (``supernet.deploy.quantize.quantize_int8``), in the table's ``int8_mode``: ``static`` (the
  default, as export's: QDQ, convolutions and linears in int8, per-channel weights, the CTC head
  float) or ``dynamic`` (MatMul and Gemm, activations quantised at run time, convolutions float).
  Static int8 is calibrated here on the graph's own timing input (``timing_feeds``: random
  features of the profiled shape), not on audio: calibration sets only the scales and zero points
  in the graph, not which nodes are quantised, and an int8 kernel's time does not depend on those
  values (measured: see ``timing_feeds``), so the graph quantised once per op and mode serves
  every batch and length.
- Streaming (``chunk_ms``): each op's graph starts by cutting or zero-padding its input to its chunk
  plus look-ahead, as ``NetworkRunner`` does between ops, so that the joined graph is one chunk's
  pass.
- Ops that do not export (none of the shipped families today; LSTM and BLSTM export as ONNX
  ``LSTM`` nodes, ``ops/recurrent.py``): profiling stops before anything is timed, with an error
  naming each such op and where it sits. Not timed in torch instead: a search would then
  pick ops that ``supernet export`` refuses, and one table would mix two runtimes.
- Exports are kept for the process (``_EXPORTED``): ``latency-check`` measures networks a second
  time for its noise floor, and one export costs seconds (a conformer block, ~10 s on the 2-core
  machine; a whole ``budget`` network ~30 s).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from supernet.archspec import ArchSpec
from supernet.latency.measure import CLOCKS, NetworkRunner, _HeadWithLogSoftmax
from supernet.latency.settings import LatencyTableError
from supernet.latency.slots import Slot, arch_slots

GRAPHS = ("exported", "composed")  # a network's graph in latency-check: exported whole, or joined ops
INPUT_NAMES, OUTPUT_NAMES = ("x", "lengths"), ("y", "out_lengths")
TRACE_BATCH = 2  # torch.export fixes an axis traced at size 1: trace two utterances, run any batch
MIN_TRACE_FRAMES = 8  # a streaming op cuts its input itself: trace it on a few frames

CALIBRATION_FEEDS = 3  # static int8: batches of random features that set a timed graph's scales
# (what, spec or arch, dims, frames[, "int8", mode]) -> (ONNX file, shortest time axis it accepts)
_EXPORTED: dict[tuple, tuple[Path, int]] = {}
_FOLDER: tempfile.TemporaryDirectory | None = None


class ChunkInput(nn.Module):
    """An op that first cuts or zero-pads its input to ``frames`` (its chunk plus look-ahead), the
    lengths all ``frames``: a streaming table's op, as ``NetworkRunner`` feeds it. Pad, then cut:
    no branch on the input's length, so the time axis stays dynamic in the export.

    The op is held as ``child`` (``op``; ``head`` for the network's head): the exporter records
    that module path on the op's nodes, and static int8 keeps the nodes under ``head`` float
    (``supernet.deploy.quantize.ctc_head``), as it keeps an exported model's head."""

    def __init__(self, op: nn.Module, frames: int, child: str = "op"):
        super().__init__()
        self.frames, self.child = frames, child
        setattr(self, child, op)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = nn.functional.pad(x, (0, 0, 0, self.frames))[:, : self.frames]
        return getattr(self, self.child)(x, torch.full_like(lengths, self.frames))


class Chain(nn.Module):
    """Modules in sequence: a streaming network (``ChunkInput`` ops) exported whole. The last is
    held as ``head`` (its nodes' module path starts with ``head``, as in ``DerivedNet``: static
    int8 keeps it float)."""

    def __init__(self, modules: list[nn.Module]):
        super().__init__()
        self.ops, self.head = nn.ModuleList(modules[:-1]), modules[-1]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for op in self.ops:
            x, lengths = op(x, lengths)
        return self.head(x, lengths)


class OrtNetworkRunner(NetworkRunner):
    """``DerivedNet(spec)`` exported to ONNX and run in onnxruntime, timed whole or op by op
    (``NetworkRunner``'s repeats and clock, not its torch pass).

    ``op_times`` times each op's own session inside a pass of all of them; ``total_times`` times
    the network's graph (``graph``: ``composed`` from the ops' graphs, or ``exported`` whole).
    Built in two steps: ``export`` (every graph; errors collected by ``ort_runners``), then
    ``open`` (the sessions, bound to their inputs and outputs: ``bound``).
    """

    def __init__(self, spec: ArchSpec, settings: dict, graph: str = "composed", seed: int = 0):
        from supernet.derived import DerivedNet

        if graph not in GRAPHS:
            raise ValueError(f"graph must be one of {', '.join(GRAPHS)}, got {graph!r}")
        self.settings, self.name, self.graph = settings, spec.name, graph
        self.spec = spec
        self.clock = CLOCKS[settings.get("clock", "wall")]
        self.slots = arch_slots(spec, settings)
        bad = [s.describe() for s in self.slots if s.frames is None]
        if bad:
            raise LatencyTableError(f"{spec.name}: {bad[0]} cannot stream")
        self.streaming = settings.get("chunk_ms") is not None
        torch.manual_seed(seed)
        net = DerivedNet(spec, settings["vocab"]).eval()
        self.net = net
        ops = [net.input, *net.layers, _HeadWithLogSoftmax(net.head)]
        if self.streaming:
            children = ["op"] * (len(ops) - 1) + ["head"]
            ops = [ChunkInput(op, slot.frames, child) for op, slot, child in zip(ops, self.slots, children)]
        self.ops = ops
        self.places = ["input", *(f"layers[{i}]" for i in range(len(spec.layers))), "head"]
        gen = torch.Generator().manual_seed(seed)
        batch, frames = settings["batch"], self.slots[0].frames
        self.x = torch.randn(batch, frames, spec.feature_dim, generator=gen).numpy()
        self.lengths = torch.full((batch,), frames, dtype=torch.long).numpy()
        self.op_files: list[Path] = []
        self.net_file: Path | None = None

    # --- graphs ---
    def export(self) -> list[str]:
        """Export every op's graph (and with ``graph="exported"`` the network's); the errors,
        one line per op that does not export (an op exported once serves every network)."""
        errors = []
        if self.graph == "exported":
            try:
                self.net_file = self._network_file()
            except LatencyTableError as err:
                errors.append(str(err))
            return errors
        for op, slot, place in zip(self.ops, self.slots, self.places):
            try:
                self.op_files.append(self._op_file(op, slot, place))
            except LatencyTableError as err:
                errors.append(str(err))
        return errors

    def _op_file(self, op: nn.Module, slot: Slot, place: str) -> Path:
        kind = "input" if place == "input" else "head" if slot.head else "layer"
        frames = slot.frames if self.streaming else None  # full utterances: one graph, any length
        key = ("op", kind, slot.spec, slot.in_dim, slot.out_dim, frames)
        trace = max(slot.frames, MIN_TRACE_FRAMES) if self.streaming else slot.frames
        example = example_input(slot.in_dim, trace)
        where = f"{self.name}.{place}: op {slot.spec!r} ({slot.in_dim}->{slot.out_dim})"
        path, shortest = exported(key, op, example, self.settings, where, slot.frames)
        if not self.streaming and shortest > slot.frames:
            raise LatencyTableError(
                f"{where} exports for at least {shortest} frames, but sees {slot.frames} here: "
                "measure longer inputs (--seconds)"
            )
        return path

    def _network_file(self) -> Path:
        """The network as ``supernet export --input features`` writes it (streaming: its
        ``ChunkInput`` ops in sequence)."""
        module = Chain(self.ops) if self.streaming else self.net
        chunk = self.settings.get("chunk_ms")
        key = ("net", repr(self.spec.to_dict()), self.settings["vocab"], chunk)
        frames = self.slots[0].frames
        example = example_input(self.spec.feature_dim, max(frames, MIN_TRACE_FRAMES) if chunk else frames)
        path, shortest = exported(key, module, example, self.settings, f"{self.name}: the network", frames)
        if shortest > frames:
            raise LatencyTableError(f"{self.name}: exports for at least {shortest} frames, gets {frames}")
        return path

    def open(self) -> None:
        """The sessions, each bound to its inputs and outputs: the ops' in a chain (an op's
        outputs are the next one's inputs), and the network's."""
        from onnxruntime import OrtValue

        from supernet.deploy.session import ort_session

        threads = int(self.settings["threads"])
        inputs = [OrtValue.ortvalue_from_numpy(self.x), OrtValue.ortvalue_from_numpy(self.lengths)]
        self.op_runs, values = [], inputs
        for path in self.op_files:
            session = ort_session(path, threads)
            binding, values = bound(session, values)
            self.op_runs.append((session, binding))
        whole = self.net_file if self.net_file is not None else compose(self.op_files, self.name)
        self.session = ort_session(whole, threads)
        self.binding, _ = bound(self.session, inputs)

    # --- timing (``NetworkRunner`` repeats these) ---
    def _timed_pass(self, marked: bool) -> list[float]:
        clock = self.clock
        if not marked:
            began = clock()
            self.session.run_with_iobinding(self.binding)
            return [1000 * (clock() - began)]
        marks = []
        for session, binding in self.op_runs:
            marks.append(clock())
            session.run_with_iobinding(binding)
        marks.append(clock())
        return [1000 * (b - a) for a, b in zip(marks, marks[1:])]

    def notes(self, slot: Slot) -> dict[str, Any]:
        """What the table records of an op beside its time: the size of its ONNX graph (int8 with
        ``int8``)."""
        index = self.slots.index(slot)
        return {"onnx_bytes": self.op_files[index].stat().st_size} if self.op_files else {}


def ort_runners(archs: list[ArchSpec], settings: dict, graph: str = "composed") -> list[OrtNetworkRunner]:
    """One ready runner per architecture; every op or network that does not export is named in
    one error, before anything is timed."""
    runners = [OrtNetworkRunner(spec, settings, graph) for spec in archs]
    errors = list(dict.fromkeys(line for runner in runners for line in runner.export()))
    if errors:
        raise LatencyTableError(
            f"{len(errors)} op(s) or network(s) cannot be exported to ONNX, so onnxruntime cannot time "
            "them (remove them from the space, or measure a torch table):\n  " + "\n  ".join(errors)
        )
    for runner in runners:
        runner.open()
    return runners


def bound(session, inputs: list) -> tuple[Any, list]:
    """``(binding, outputs)``: ``session`` bound to the ``inputs`` (``OrtValue``s) and to outputs
    allocated once, which each run overwrites. The cheapest call onnxruntime has: a session that
    passes its input through took 0.02 ms a run this way, 0.04 ms with ``run`` on numpy arrays and
    0.10 ms with ``run_with_ort_values`` (which allocates its outputs on each run); separate
    sessions add that to every op, and the table's offset has to take it out again."""
    from onnxruntime import OrtValue

    names = [i.name for i in session.get_inputs()]
    first = session.run_with_ort_values(None, dict(zip(names, inputs)))
    outputs = [OrtValue.ortvalue_from_numpy(value.numpy()) for value in first]
    binding = session.io_binding()
    for name, value in zip(names, inputs):
        binding.bind_ortvalue_input(name, value)
    for out, value in zip(session.get_outputs(), outputs):
        binding.bind_ortvalue_output(out.name, value)
    return binding, outputs


def example_input(dim: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What an op is traced on: two utterances of ``frames`` and about 4/5 of that, zero padded."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([frames, max(1, frames * 4 // 5)])
    x = torch.randn(TRACE_BATCH, frames, dim, generator=gen)
    return x * (torch.arange(frames)[None, :, None] < lengths[:, None, None]), lengths


def exported(
    key: tuple, module: nn.Module, example, settings: dict, where: str, frames: int
) -> tuple[Path, int]:
    """The ONNX file of ``module`` (int8 with ``settings["int8"]``, in ``settings["int8_mode"]``)
    and the shortest time axis it accepts, exported once per process (an int8 graph is quantised
    from the fp32 one kept under ``key``; static int8 calibrated on ``timing_feeds`` of ``frames``
    frames); ``LatencyTableError`` naming ``where`` if it cannot be."""
    from supernet.deploy.onnx_export import ExportFailed, export_module, save

    if key not in _EXPORTED:
        path = folder() / f"{len(_EXPORTED)}.onnx"
        try:
            with torchlib_registry_once():
                proto, shortest = export_module(
                    module.eval(), example, INPUT_NAMES, OUTPUT_NAMES, settings["opset"]
                )
        except ExportFailed as err:
            raise LatencyTableError(f"{where} cannot be exported to ONNX: {err.detail}") from err
        save(proto, path)
        _EXPORTED[key] = path, shortest
    if not settings["int8"]:
        return _EXPORTED[key]
    mode = settings["int8_mode"]
    if (*key, "int8", mode) not in _EXPORTED:
        from supernet.deploy.quantize import quantize_int8

        fp32, shortest = _EXPORTED[key]
        dim = example[0].shape[-1]
        feeds = timing_feeds(dim, frames, settings["batch"]) if mode == "static" else None
        out = fp32.with_name(f"{fp32.stem}.int8-{mode}.onnx")  # both modes may serve one process
        _EXPORTED[(*key, "int8", mode)] = quantize_int8(fp32, out, mode, feeds), shortest
    return _EXPORTED[(*key, "int8", mode)]


def timing_feeds(dim: int, frames: int, batch: int, count: int = CALIBRATION_FEEDS) -> list[dict]:
    """What static int8 calibrates a timed graph on: ``count`` batches of the input it is timed
    on (standard normal features, ``batch`` x ``frames`` x ``dim``, full lengths), not audio.

    Why not audio: the latency of an int8 graph is set by which nodes are quantised (the QDQ
    pairs that onnxruntime fuses into QLinearConv / QLinearMatMul kernels), and that follows
    from the graph and ``STATIC_OPS``, not from the calibration; the calibrated ranges only fill
    in the scales and zero points, which an int8 kernel's time does not depend on. Measured
    (``tests/test_latency_ort_static.py``, and docs/latency.md): an op calibrated on these feeds
    and on feeds of another scale and offset gives the same nodes, op for op. An op in the
    middle of a network also has no audio of its own: its input is the ops' before it.
    """
    gen = torch.Generator().manual_seed(0)
    lengths = torch.full((batch,), frames, dtype=torch.long).numpy()
    return [
        dict(zip(INPUT_NAMES, (torch.randn(batch, frames, dim, generator=gen).numpy(), lengths)))
        for _ in range(count)
    ]


def compose(files: list[Path], name: str) -> Path:
    """One graph of the ops' graphs in sequence (each op's outputs feed the next one's inputs)."""
    import onnx
    import onnx.compose

    model = None
    for i, path in enumerate(files):
        op = onnx.compose.add_prefix(onnx.load_model(str(path)), f"op{i}_")
        if model is None:
            model = op
            continue
        joins = [(f"op{i - 1}_{out}", f"op{i}_{inp}") for out, inp in zip(OUTPUT_NAMES, INPUT_NAMES)]
        model = onnx.compose.merge_models(model, op, io_map=joins)
    out = folder() / f"{name}-composed-{len(list(folder().iterdir()))}.onnx"
    onnx.save_model(model, str(out))
    return out


def folder() -> Path:
    """A temporary folder for this process's ONNX files (removed at exit)."""
    global _FOLDER
    if _FOLDER is None:
        _FOLDER = tempfile.TemporaryDirectory(prefix="supernet-ort-")
    return Path(_FOLDER.name)


_REGISTRIES: dict[Any, Any] = {}


@contextlib.contextmanager
def torchlib_registry_once() -> Iterator[None]:
    """The exporter's registry of ATen -> ONNX functions built once per process, not per export.

    ``torch.onnx.export`` rebuilds it from onnxscript's torchlib on every call (about 1.5 s here, 4 s
    under load: more than exporting a TDNN), and a table exports tens of graphs. Nothing changes
    it after it is built unless a custom translation table is given, which these exports never
    give; the graphs came out byte for byte the same with and without it (a linear and a TDNN op,
    torch 2.11, onnxscript 0.7). A torch without this private hook exports as usual.
    """
    try:
        from torch.onnx._internal.exporter._registration import ONNXRegistry

        build = ONNXRegistry.from_torchlib.__func__
    except (ImportError, AttributeError):
        yield
        return

    def once(cls, *args, **kwargs):
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _REGISTRIES:
            _REGISTRIES[key] = build(cls, *args, **kwargs)
        return _REGISTRIES[key]

    with mock.patch.object(ONNXRegistry, "from_torchlib", classmethod(once)):
        yield
