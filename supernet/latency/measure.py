"""Measuring: ops timed inside running networks (``NetworkRunner``; in onnxruntime
``supernet.latency.ort.OrtNetworkRunner``), a space's table (``profile_space``), whole networks
(``measure_networks``, what ``latency-check`` compares with).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import ops
from supernet.archspec import ArchSpec
from supernet.latency import calibration
from supernet.latency.allocator import pin_heap_allocator
from supernet.latency.settings import CHECKED_KEYS, DTYPES, LatencyTableError
from supernet.latency.slots import Slot, arch_slots, space_slots
from supernet.latency.table import LatencyTable
from supernet.space import SearchSpace

# wall: elapsed time. cpu: the calling thread's CPU time, which with one thread is the latency of
# an idle machine and, unlike wall time, does not grow when other processes pre-empt the run.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
# Seconds of running before anything is timed, when not given: a GPU raises its clocks (and the
# host CPU its frequency) only under sustained load; a few passes are not enough.
DEFAULT_SETTLE_S = {"cpu": 0.0, "cuda": 2.0}


def default_settle(settings: dict) -> float:
    return DEFAULT_SETTLE_S["cuda" if settings["device"].startswith("cuda") else "cpu"]


def use_threads(settings: dict) -> None:
    """The table's threads, and on the CPU its allocator regime (``supernet.latency.allocator``)."""
    if settings["device"] == "cpu":
        torch.set_num_threads(int(settings["threads"]))
        if settings.get("allocator") == "heap":
            pin_heap_allocator()


class _HeadWithLogSoftmax(nn.Module):
    """The head as the network runs it: the op, then ``float().log_softmax(-1)``."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x, lengths):
        logits, lengths = self.head(x, lengths)
        return logits.float().log_softmax(dim=-1), lengths


class NetworkRunner:
    """``DerivedNet(spec)`` on the table's device, dtype and input, timed whole or op by op.

    Ops are timed *inside* the running network (a mark before and after each op), not alone:
    alone, an op finds its weights and input hot in cache on every repeat, and on a CPU the sum
    of such times falls 20-30% short of the network's. On a GPU a mark is a CUDA event; with
    ``cuda_graph`` the pass is captured once as a CUDA graph and replayed (the marks are timing
    events captured inside a second graph), so that what is timed is the GPU's work, not the
    host's Python and kernel launches. Streaming: each op gets its chunk plus its look-ahead
    (the previous output cut or zero-padded to that many frames).
    """

    def __init__(self, spec: ArchSpec, settings: dict, seed: int = 0):
        from supernet.derived import DerivedNet

        self.settings, self.device = settings, settings["device"]
        self.cuda = self.device.startswith("cuda")
        self.clock = CLOCKS[settings.get("clock", "wall")]
        self.slots = arch_slots(spec, settings)
        self.name = spec.name
        bad = [s.describe() for s in self.slots if s.frames is None]
        if bad:
            raise LatencyTableError(f"{spec.name}: {bad[0]} cannot stream")
        torch.manual_seed(seed)
        dtype = DTYPES[settings["dtype"]]
        self.net = DerivedNet(spec, settings["vocab"]).eval().to(device=self.device, dtype=dtype)
        self.modules = [self.net.input, *self.net.layers, _HeadWithLogSoftmax(self.net.head)]
        batch = settings["batch"]
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, self.slots[0].frames, spec.feature_dim, generator=gen)
        self.x = x.to(device=self.device, dtype=dtype).contiguous()
        self.lengths = [
            torch.full((batch,), s.frames, dtype=torch.long, device=self.device) for s in self.slots
        ]
        self.streaming = settings.get("chunk_ms") is not None
        self.graphs = self._capture() if settings.get("cuda_graph") else None

    def _run(self, mark: Callable[[], None] | None = None) -> torch.Tensor:
        """One pass; ``mark()`` is called before each op and after the last."""
        if not self.streaming and mark is None:  # the network's own forward
            return self.net(self.x, self.lengths[0])[0]
        x, n = self.x, self.lengths[0]
        for module, slot, lengths in zip(self.modules, self.slots, self.lengths):
            if self.streaming:
                have = x.shape[1]
                x = (
                    x[:, : slot.frames]
                    if have >= slot.frames
                    else nn.functional.pad(x, (0, 0, 0, slot.frames - have))
                )
                n = lengths
            if mark is not None:
                mark()
            x, n = module(x, n)
        if mark is not None:
            mark()
        return x

    def _capture(self) -> tuple[Any, Any, list]:
        """``(whole, marked, events)``: the pass as a CUDA graph, and again with a timing event
        captured before each op and after the last."""
        if not self.cuda:
            raise LatencyTableError("cuda_graph: CUDA graphs need --device cuda")
        with torch.inference_mode():
            side = torch.cuda.Stream()  # warm-up off the capture stream, as torch.cuda.graph asks
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._run()
            torch.cuda.current_stream().wait_stream(side)
            torch.cuda.synchronize()
            events = [
                torch.cuda.Event(enable_timing=True, external=True) for _ in range(len(self.modules) + 1)
            ]
            whole, marked = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(whole):
                    self._run()
                pending = iter(events)
                with torch.cuda.graph(marked):
                    self._run(lambda: next(pending).record())
            except RuntimeError as err:
                raise LatencyTableError(f"{self.name}: cannot capture as a CUDA graph: {err}") from err
        return whole, marked, events

    def _timed_pass(self, marked: bool) -> list[float]:
        """One pass; the intervals (ms) between its marks (one interval when not ``marked``)."""
        if self.graphs is not None:
            whole, graph, events = self.graphs
            if marked:
                graph.replay()
                torch.cuda.synchronize()
                return [a.elapsed_time(b) for a, b in zip(events, events[1:])]
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            whole.replay()
            end.record()
            torch.cuda.synchronize()
            return [start.elapsed_time(end)]
        marks: list = []
        if self.cuda:

            def mark():
                event = torch.cuda.Event(enable_timing=True)
                event.record()
                marks.append(event)
        else:

            def mark():
                marks.append(self.clock())

        if marked:
            self._run(mark)
        else:
            mark()
            self._run()
            mark()
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(marks, marks[1:])]
        return [1000 * (b - a) for a, b in zip(marks, marks[1:])]

    def _repeat(self, warmup: int, repeats: int, marked: bool) -> list[list[float]]:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        use_threads(self.settings)
        with torch.inference_mode():
            for _ in range(warmup):
                self._timed_pass(marked)
            return [self._timed_pass(marked) for _ in range(repeats)]

    def op_times(self, warmup: int, repeats: int) -> list[list[float]]:
        """``repeats`` timings (ms) of each op, in the order of ``slots``."""
        return [list(times) for times in zip(*self._repeat(warmup, repeats, marked=True))]

    def total_times(self, warmup: int, repeats: int) -> list[float]:
        """``repeats`` end-to-end times (ms) of one unmarked pass (the check's "measured")."""
        return [run[0] for run in self._repeat(warmup, repeats, marked=False)]

    def notes(self, slot: Slot) -> dict[str, Any]:
        """What the table records of an op beside its time and ``static_entry`` (nothing here)."""
        return {}


def network_runners(archs: list[ArchSpec], settings: dict, graph: str = "exported") -> list[NetworkRunner]:
    """A runner per architecture in the table's runtime: torch (``NetworkRunner``) or onnxruntime
    (``OrtNetworkRunner``, whose network graph is ``graph``: ``exported`` whole or ``composed``
    of its ops' graphs; torch ignores it)."""
    if settings.get("runtime", "torch") == "torch":
        return [NetworkRunner(spec, settings) for spec in archs]
    from supernet.latency.ort import ort_runners

    return ort_runners(archs, settings, graph)


def settle(runners: list[NetworkRunner], seconds: float) -> float:
    """Run the networks in turn for at least ``seconds`` before anything is timed; the seconds
    spent. Clocks that are still rising would otherwise make early measurements slow."""
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        for runner in runners:
            runner.total_times(0, 1)
            if time.perf_counter() - began >= seconds:
                break
    return time.perf_counter() - began


def measure_networks(
    archs: list[ArchSpec],
    settings: dict,
    warmup: int,
    repeats: int,
    rounds: int = 1,
    settle_s: float = 0.0,
    graph: str = "exported",
) -> list[float]:
    """End-to-end median latency (ms) of each ``DerivedNet`` under a table's settings (in
    onnxruntime: its ``graph``, see ``network_runners``).

    The networks are cycled ``rounds`` times (``repeats`` timed passes each time), so that a
    slow spell of the machine is shared by all of them instead of landing on a few.
    """
    runners = network_runners(archs, settings, graph)
    settle(runners, settle_s)
    samples: list[list[float]] = [[] for _ in runners]
    for _ in range(rounds):
        for runner, times in zip(runners, samples):
            times.extend(runner.total_times(warmup, repeats))
    return [statistics.median(times) for times in samples]


def static_entry(slot: Slot) -> dict[str, Any]:
    """What an op is, without timing it: stride, look-ahead, parameters, bytes."""
    op = ops.build(slot.spec, slot.in_dim, slot.out_dim)
    entry = {
        "spec": slot.spec,
        "in_dim": slot.in_dim,
        "out_dim": slot.out_dim,
        "frames": slot.frames,
        "head": slot.head,
        "stride": int(op.stride),
        "lookahead": None if op.lookahead >= ops.UNBOUNDED else int(op.lookahead),
        "streamable": bool(op.streamable),
        "params": sum(p.numel() for p in op.parameters() if p.requires_grad),
        "bytes": sum(t.numel() * t.element_size() for t in [*op.parameters(), *op.buffers()]),
        "ms": None,
    }
    if slot.frames is not None:
        entry["flops"] = int(op.flops(slot.frames))
    return entry


def covering_archs(space: SearchSpace, settings: dict) -> list[ArchSpec]:
    """Few architectures that together hold every (runnable) candidate of every edge, at every
    rate it can be reached at (``space_positions``).

    Network ``j`` takes candidate ``(j + e) mod K_e`` at edge ``e`` (rotated, so a candidate meets
    different neighbours); in streaming mode candidates that cannot stream are left out. With
    stride edges the rotation runs once per assignment of a stride to every stride edge (a stride
    edge rotating among its candidates of that stride), so that every op after them is measured at
    every frame count; a network that adds no slot to those before it is left out.
    """
    usable = {}
    for layer, infos in zip(space.layers, space.layer_infos):
        if isinstance(layer, str):
            continue
        ok = [i for i, info in enumerate(infos) if settings.get("chunk_ms") is None or info.streamable]
        if not ok:
            raise LatencyTableError(f"{space.source}: edge {layer.name!r}: no candidate can stream")
        usable[layer.name] = ok
    strided = space.stride_edges
    assignments = itertools.product(*(sorted({strided[n][k] for k in usable[n]}) for n in strided))
    archs, seen = [], set()
    for assignment in assignments:
        chosen = dict(zip(strided, assignment))
        allowed = {
            name: [k for k in ok if name not in chosen or strided[name][k] == chosen[name]]
            for name, ok in usable.items()
        }
        for j in range(max(len(v) for v in allowed.values())):
            path = {name: ok[(j + e) % len(ok)] for e, (name, ok) in enumerate(allowed.items())}
            spec = space.derive(path, f"cover{len(archs)}")
            keys = {slot.key for slot in arch_slots(spec, settings)}
            if strided and keys <= seen:
                continue
            seen |= keys
            archs.append(spec)
    return archs


def profile(
    archs: list[ArchSpec],
    settings: dict,
    warmup: int = 5,
    repeats: int = 30,
    rounds: int = 3,
    extra_slots: list[Slot] = (),
    progress: bool = True,
    settle_s: float | None = None,
    calibrate: list[ArchSpec] = (),
) -> LatencyTable:
    """Time every op of ``archs`` inside its network; one entry per distinct key.

    After ``settle_s`` seconds of running (default: 2 s on a GPU, none on a CPU) the networks
    are cycled ``rounds`` times (``repeats`` marked and ``repeats`` unmarked passes each time), so
    that a slow spell of a shared machine does not land on some ops only. An entry's ``ms`` is
    the median over all its timed calls (every network, round and position where the same spec,
    dims and frames occur) plus the per-op offset ``op_offset_ms``: the median over networks and
    rounds of ``(unmarked pass - sum of the ops' medians) / ops``. The offset takes out what the
    marks themselves cost (on a GPU without graphs, a CUDA event's launch per op) and puts back
    what a pass costs beyond its ops (a graph's launch), so that the entries of a network add up
    to its end-to-end time (an op that does nothing, ``skip``, is kept at 0 rather than below
    it). ``extra_slots`` are recorded without a time (ops that cannot stream)
    so that a streaming table can say why it has no latency for them. In onnxruntime, a
    network's unmarked pass runs its ops' graphs joined into one (``supernet.latency.ort``).

    ``calibrate``: more whole networks, timed end to end in the same rounds (interleaved with the
    ops); with ``archs`` they fit the table's calibration line (``supernet.latency.calibration``).
    """
    from tqdm import tqdm

    settle_s = default_settle(settings) if settle_s is None else settle_s
    everything = network_runners([*archs, *calibrate], settings, graph="composed")
    runners, checkers = everything[: len(archs)], everything[len(archs) :]
    settled = settle(runners + checkers, settle_s)
    samples: dict[str, list[float]] = {}
    entries: dict[str, dict[str, Any]] = {}
    offsets: list[float] = []
    wholes: list[list[float]] = [[] for _ in [*runners, *checkers]]
    total = rounds * (len(runners) + len(checkers))
    with tqdm(total=total, desc="profiling", unit="net", disable=not progress) as bar:
        for _ in range(rounds):
            for i, runner in enumerate(runners):
                per_op = runner.op_times(warmup, repeats)
                whole = runner.total_times(warmup, repeats)
                wholes[i].extend(whole)
                offsets.append(
                    (statistics.median(whole) - sum(statistics.median(t) for t in per_op)) / len(per_op)
                )
                for slot, times in zip(runner.slots, per_op):
                    if slot.key not in entries:
                        entries[slot.key] = {**static_entry(slot), **runner.notes(slot)}
                    samples.setdefault(slot.key, []).extend(times)
                bar.update()
            for i, checker in enumerate(checkers, start=len(runners)):
                wholes[i].extend(checker.total_times(warmup, repeats))
                bar.update()
    offset = statistics.median(offsets)
    for key, times in samples.items():
        entries[key]["ms_marked"] = statistics.median(times)
        entries[key]["ms"] = max(entries[key]["ms_marked"] + offset, 0.0)
        entries[key]["samples"] = len(times)
    for slot in extra_slots:
        entries.setdefault(slot.key, static_entry(slot))
    measured = {"warmup": warmup, "repeats": repeats, "rounds": rounds, "settle_s": round(settled, 3)}
    table = LatencyTable({**settings, **measured, "op_offset_ms": offset}, entries)
    if calibrate:
        sums = [table.op_sum(spec) for spec in [*archs, *calibrate]]
        table.settings["calibration"] = calibration.fit(sums, [statistics.median(w) for w in wholes])
    return table


def profile_space(
    space: SearchSpace,
    settings: dict,
    warmup: int = 5,
    repeats: int = 10,
    rounds: int = 3,
    archs: list[ArchSpec] = (),
    progress: bool = True,
    settle_s: float | None = None,
    calibrate: int = 6,
) -> LatencyTable:
    """The table of a space (every candidate of every edge at its position, and the fixed
    layers), plus the ops of ``archs`` (baselines to compare with), calibrated on ``calibrate``
    paths spanning the space's cost range (0: no calibration)."""
    slots, _ = space_slots(space, settings)
    excluded = [s for position in slots for s in position if s.frames is None]
    networks = [*covering_archs(space, settings), *archs]
    spanning = calibration.spanning_archs(space, settings, calibrate)
    return profile(networks, settings, warmup, repeats, rounds, excluded, progress, settle_s, spanning)


def merge(tables: list[LatencyTable]) -> LatencyTable:
    """One table from several measured with the same settings (e.g. a space and baselines)."""
    first = tables[0]
    entries = {}
    for table in tables:
        table.check({k: first.settings[k] for k in CHECKED_KEYS})
        entries.update(table.entries)
    return LatencyTable(first.settings, entries, first.source)
