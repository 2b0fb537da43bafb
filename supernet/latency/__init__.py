"""LatencyTable: measured op latencies for one device and settings; predicts architectures.

Each entry is one op *at one place in a network*: ``(op spec, in_dim, out_dim, input frames)``.
The frames are what the op sees inside the network for ``seconds`` of audio, after the strides
before it (full-utterance mode), or, with ``chunk_ms``, one chunk at its position plus the op's
own look-ahead (streaming mode: ops that cannot stream are recorded as such, without a time).
The head entry includes the network's final ``float().log_softmax()``, so that the prediction of
an ``ArchSpec`` is simply the sum of its ops' entries (input op, layers, head).

A table is tied to the device and settings it was measured with (``settings``); ``check`` (and
``load(..., expect=...)``) refuses another device or other settings, naming the differing key,
unless forced: a table measured on one device silently used for another is a classic NAS bug.

``expected(space, probs)`` is the latency expected under the architecture distribution,
``sum_edges sum_k p_k * latency_k + fixed``: differentiable in the probabilities, the quantity a
latency penalty pushes on (ProxylessNAS, FBNet).
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ops
from losses.latency import TARGETS, ResourcePenalty
from supernet.archspec import ArchSpec, OpInfo
from supernet.errors import UserError
from supernet.search.space import SearchSpace
from supernet.shipped import resolve

FORMAT = "supernet-latency-table"
VERSION = 1
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
)
METRICS = ("ms", "params", "bytes")
CLOCKS_NAMES = ("wall", "cpu")


class LatencyTableError(UserError, ValueError):
    """A table that cannot answer: wrong settings, a missing op, an op that cannot stream."""


# --- where the table was measured --------------------------------------------------------------
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
) -> dict[str, Any]:
    """The settings of a measurement on *this* machine (device name and torch version read here)."""
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
    }


# --- where each op sits in a network ------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """One op at one position: the table's key. ``frames`` is None for an op that cannot stream."""

    spec: str
    in_dim: int
    out_dim: int
    frames: int | None
    head: bool = False

    @property
    def key(self) -> str:
        name = f"{self.spec}+log_softmax" if self.head else self.spec
        frames = "stream-excluded" if self.frames is None else f"T{self.frames}"
        return f"{name}|{self.in_dim}>{self.out_dim}|{frames}"

    def describe(self) -> str:
        what = "head" if self.head else "op"
        frames = "(cannot stream)" if self.frames is None else f"{self.frames} frames"
        return f"{what} {self.spec!r} ({self.in_dim}->{self.out_dim}, {frames})"


def network_slots(
    fields: dict[str, Any], layers: list[list[OpInfo]], input_info: OpInfo, head_info: OpInfo, settings: dict
) -> list[list[Slot]]:
    """Slots of every position: ``[[input], [cand, ...] per layer, [head]]``.

    Full-utterance: an op sees ``ceil(T / product of the strides before it)`` frames, ``T`` being
    ``seconds`` of input frames. Streaming: ``ceil(C / strides before it) + its look-ahead``,
    ``C`` being one chunk of input frames; an op with unbounded look-ahead gets ``frames=None``.
    """
    rate = 16_000 if fields["features"] == "raw" else 100
    dim, vocab = fields["dim"], settings["vocab"]
    positions = [([input_info], fields["feature_dim"], dim, False)]
    positions += [(infos, dim, dim, False) for infos in layers]
    positions.append(([head_info], dim, vocab, True))
    chunk = settings.get("chunk_ms")
    frames = round(settings["seconds"] * rate) if chunk is None else round(chunk / 1000 * rate)
    if frames < 1:
        raise LatencyTableError(f"seconds/chunk_ms give no input frame at {rate} frames/s")
    stride, out = 1, []
    for infos, in_dim, out_dim, head in positions:
        here = math.ceil(frames / stride)
        slots = []
        for info in infos:
            if chunk is None:
                n = here
            else:
                n = None if not info.streamable or math.isinf(info.lookahead) else here + int(info.lookahead)
            slots.append(Slot(info.spec, in_dim, out_dim, n, head))
        out.append(slots)
        stride *= infos[0].stride
    return out


def space_slots(space: SearchSpace, settings: dict) -> tuple[list[list[Slot]], list[str | None]]:
    """Slots of a search space, and each position's edge name (None where fixed)."""
    infos = [[i] if isinstance(i, OpInfo) else list(i) for i in space.layer_infos]
    fields = space.fields
    probe = ArchSpec.from_dict({**fields, "layers": []}, source=space.source)
    slots = network_slots(fields, infos, probe._input_info, probe._head_info, settings)
    names = [None] + [None if isinstance(layer, str) else layer.name for layer in space.layers] + [None]
    return slots, names


def arch_slots(spec: ArchSpec, settings: dict) -> list[Slot]:
    fields = spec.to_dict()
    layers = [[info] for info in spec._layer_infos]
    return [s[0] for s in network_slots(fields, layers, spec._input_info, spec._head_info, settings)]


# --- costs of a space, ready for a differentiable expectation ------------------------------------
@dataclass
class SpaceCosts:
    """One metric of a space: the fixed part and each edge's per-candidate cost."""

    metric: str
    fixed: float
    edges: dict[str, list[float]]
    # per (device, dtype): the edges' cost vectors, made once; making them anew at every search
    # step would be one blocking host-to-device copy per edge
    _vectors: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def vectors(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        key = (like.device, like.dtype)
        if key not in self._vectors:
            self._vectors[key] = {
                name: torch.tensor(cost, dtype=like.dtype, device=like.device)
                for name, cost in self.edges.items()
            }
        return self._vectors[key]

    def expected(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``fixed + sum_edges sum_k p_k * cost_k``; carries the probabilities' graph."""
        missing = sorted(set(self.edges) - set(probs))
        if missing:
            raise KeyError(f"no probabilities for edge(s) {missing}")
        total = None
        vectors = self.vectors(next(iter(probs.values())))
        for name, cost in self.edges.items():
            p = probs[name]
            if p.shape != (len(cost),):
                raise ValueError(
                    f"edge {name!r}: {len(cost)} candidates, probabilities of shape {tuple(p.shape)}"
                )
            term = (p * vectors[name]).sum()
            total = term if total is None else total + term
        return total + self.fixed

    def at(self, choices: dict[str, int]) -> float:
        """The cost of one architecture (candidate index per edge)."""
        return self.fixed + sum(cost[int(choices[name])] for name, cost in self.edges.items())

    def most_probable_within(
        self, log_probs: dict[str, list[float]], budget: float, max_states: int = 100_000
    ) -> dict[str, int] | None:
        """The path of highest total log-probability whose cost (``at``) is at most ``budget``; None
        if even the cheapest path is over it.

        Why: a penalty on the *expected* cost holds the expectation at the budget, but the argmax
        of every edge can still be over it (several edges each slightly prefer a slow candidate).
        This is a multiple-choice knapsack, solved exactly edge by edge on the Pareto front of
        (cost so far, log-probability so far): a partial path that costs more and is less probable
        than another can never end better. Costs add up in the order ``at`` adds them, so "within"
        means what ``at`` says. Past ``max_states`` partial paths the front is thinned (evenly in
        cost), and the answer is then only near the best; spaces of a few dozen edges stay far below.
        """
        states = [(0.0, 0.0, ())]  # (cost so far, log-probability so far, choices so far)
        for name, costs in self.edges.items():
            scores = log_probs[name]
            grown = [
                (cost + c, score + lp, picks + (k,))
                for cost, score, picks in states
                for k, (c, lp) in enumerate(zip(costs, scores))
                if self.fixed + (cost + c) <= budget  # costs are >= 0: a partial path over stays over
            ]
            grown.sort(key=lambda state: (state[0], -state[1]))
            states, best = [], -math.inf
            for state in grown:  # keep the Pareto front: each kept state beats every cheaper one
                if state[1] > best:
                    states.append(state)
                    best = state[1]
            if len(states) > max_states:
                states = states[:: math.ceil(len(states) / max_states)] + [states[-1]]
            if not states:
                return None
        return dict(zip(self.edges, max(states, key=lambda state: state[1])[2]))


def over_budget(choices: dict[str, int], costs: SpaceCosts | None, budget: float | None) -> bool:
    """Whether a path costs more than a budget (never, without a budget or its costs)."""
    return budget is not None and costs is not None and costs.at(choices) > budget


def choose_path(
    alphas: dict[str, torch.Tensor], costs: SpaceCosts | None, budget: float | None
) -> dict[str, int]:
    """Every edge's argmax; with a budget, the most probable path within it when the argmax is over
    (a warning, and the argmax, when no path fits)."""
    indices = torch.stack([alpha.detach().argmax() for alpha in alphas.values()]).tolist()  # one copy
    choices = dict(zip(alphas, indices))
    if not over_budget(choices, costs, budget):
        return choices
    log_probs = {n: torch.log_softmax(a.detach().double().cpu(), -1).tolist() for n, a in alphas.items()}
    within = costs.most_probable_within(log_probs, budget)
    if within is None:
        warnings.warn(
            f"no path of the space costs at most the budget {budget:g} {costs.metric} (the cheapest costs "
            f"more); keeping the argmax path ({costs.at(choices):g})",
            stacklevel=2,
        )
        return choices
    return within


def param_costs(space: SearchSpace, vocab: int) -> SpaceCosts:
    """Trainable parameters per candidate, from the ops themselves (no table needed)."""

    def count(spec: str, in_dim: int, out_dim: int) -> float:
        return float(sum(p.numel() for p in ops.build(spec, in_dim, out_dim).parameters() if p.requires_grad))

    f, dim = space.fields, space.fields["dim"]
    fixed = count(f["input"], f["feature_dim"], dim) + count(f["head"], dim, vocab)
    edges = {}
    for layer in space.layers:
        if isinstance(layer, str):
            fixed += count(layer, dim, dim)
        else:
            edges[layer.name] = [count(c, dim, dim) for c in layer.candidates]
    return SpaceCosts("params", fixed, edges)


# --- the table -----------------------------------------------------------------------------------
class LatencyTable:
    """Entries ``key -> {ms, params, bytes, streamable, ...}`` measured under ``settings``."""

    def __init__(
        self, settings: dict[str, Any], entries: dict[str, dict[str, Any]], source: str = "<memory>"
    ):
        settings = {"cuda_graph": False, **settings}  # tables written before graphs were measured
        missing = [k for k in CHECKED_KEYS if k not in settings]
        if missing:
            raise LatencyTableError(f"{source}: settings lack {missing}")
        self.settings = dict(settings)
        self.entries = dict(entries)
        self.source = source
        check_entries(self.entries, source)

    @property
    def streaming(self) -> bool:
        return self.settings.get("chunk_ms") is not None

    # --- files ---
    def save(self, path: str | Path) -> None:
        data = {"format": FORMAT, "version": VERSION, "settings": self.settings, "entries": self.entries}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")

    @classmethod
    def load(
        cls, path: str | Path, expect: dict[str, Any] | None = None, force: bool = False
    ) -> LatencyTable:
        """Read a table (a path or a shipped name, ``st_nas_cpu``); with ``expect``, refuse differing
        settings unless ``force``."""
        path = resolve("lut", path)
        try:
            data = json.loads(path.read_text())
        except OSError as err:
            raise LatencyTableError(f"{path}: cannot read the latency table: {err}") from err
        except json.JSONDecodeError as err:
            raise LatencyTableError(f"{path}: not valid JSON: {err}") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LatencyTableError(f"{path}: not a latency table (field 'format' is not {FORMAT!r})")
        if data.get("version") != VERSION:
            raise LatencyTableError(
                f"{path}: field 'version' is {data.get('version')!r}, this code reads {VERSION}"
            )
        for name in ("settings", "entries"):
            if not isinstance(data.get(name), dict):
                raise LatencyTableError(f"{path}: field {name!r} must be a mapping")
        table = cls(data["settings"], data["entries"], source=str(path))
        if expect:
            table.check(expect, force=force)
        return table

    def check(self, expect: dict[str, Any], force: bool = False) -> list[str]:
        """Compare settings with ``expect``; an error naming the first differing key unless ``force``.

        Returns the differing keys (what a forced use ignores).
        """
        differ = [k for k in expect if _differs(self.settings.get(k), expect[k])]
        if differ and not force:
            k = differ[0]
            raise LatencyTableError(
                f"{self.source}: settings key {k!r} differs: table has {self.settings.get(k)!r}, "
                f"this run has {expect[k]!r} (measure a new table, or pass --force / force=True)"
            )
        return differ

    # --- lookups ---
    def entry(self, slot: Slot, where: str = "") -> dict[str, Any]:
        where = f" at {where}" if where else ""
        if slot.frames is None:
            raise LatencyTableError(
                f"{self.source}: {slot.describe()}{where} cannot stream (unbounded look-ahead); "
                f"a streaming table (chunk_ms={self.settings['chunk_ms']}) excludes it: remove it from the space"
            )
        try:
            return self.entries[slot.key]
        except KeyError:
            raise LatencyTableError(
                f"{self.source}: no entry for {slot.describe()}{where}: profile this architecture or "
                f"space with `supernet profile` (key {slot.key!r})"
            ) from None

    def value(self, slot: Slot, metric: str = "ms", where: str = "") -> float:
        if metric not in METRICS:
            raise ValueError(f"metric {metric!r} is not one of {METRICS}")
        if metric != "ms" and slot.frames is None:  # sizes do not depend on streaming
            return float(self._any_entry(slot)[metric])
        return float(self.entry(slot, where)[metric])

    def _any_entry(self, slot: Slot) -> dict[str, Any]:
        prefix = slot.key.rsplit("|", 1)[0] + "|"
        for key, entry in self.entries.items():
            if key.startswith(prefix):
                return entry
        raise LatencyTableError(f"{self.source}: no entry for {slot.describe()}")

    # --- predictions ---
    def predict(self, spec: ArchSpec, metric: str = "ms") -> float:
        """Latency (ms) of one architecture: the sum of its ops' entries (input, layers, head)."""
        slots = arch_slots(spec, self.settings)
        names = ["input", *(f"layers[{i}]" for i in range(len(spec.layers))), "head"]
        return sum(self.value(s, metric, f"{spec.name}.{n}") for s, n in zip(slots, names))

    def predict_params(self, spec: ArchSpec) -> float:
        return self.predict(spec, "params")

    def costs(self, space: SearchSpace, metric: str = "ms") -> SpaceCosts:
        slots, names = space_slots(space, self.settings)
        fixed, edges = 0.0, {}
        for position, (cands, name) in enumerate(zip(slots, names)):
            where = f"{space.name}.{name or f'position {position}'}"
            values = [self.value(s, metric, where) for s in cands]
            if name is None:
                fixed += values[0]
            else:
                edges[name] = values
        return SpaceCosts(metric, fixed, edges)

    def expected(
        self, space: SearchSpace, probs: dict[str, torch.Tensor], metric: str = "ms"
    ) -> torch.Tensor:
        """Expected latency (ms) under per-edge probabilities; differentiable in ``probs``."""
        return self.costs(space, metric).expected(probs)

    def expected_params(self, space: SearchSpace, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.expected(space, probs, "params")


def check_entries(entries: dict[str, Any], source: str) -> None:
    """Refuse an entry whose ms, params or bytes is NaN, infinite or negative (``ms`` may be None:
    an op that was not timed). JSON lets ``NaN`` and ``Infinity`` through, and such a value would
    surface far from the table: as NaN alphas, blamed on the search, once a penalty uses it."""
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            raise LatencyTableError(f"{source}: entry {key!r} must be a mapping, got {type(entry).__name__}")
        for metric in METRICS:
            value = entry.get(metric)
            if value is None and metric == "ms":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                if metric in entry:
                    raise LatencyTableError(f"{source}: entry {key!r}: {metric!r} is {value!r}, not a number")
                continue  # a missing metric is reported where it is asked for
            if not math.isfinite(value) or value < 0:
                raise LatencyTableError(
                    f"{source}: entry {key!r}: {metric!r} is {value!r}; a cost must be finite and at least 0 "
                    "(measure the table again with `supernet profile`)"
                )


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return not math.isclose(float(a), float(b), rel_tol=1e-9)
    return a != b


# --- measuring -----------------------------------------------------------------------------------
# wall: elapsed time. cpu: the calling thread's CPU time, which with one thread is the latency of
# an idle machine and, unlike wall time, does not grow when other processes pre-empt the run.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
# Seconds of running before anything is timed, when not given: a GPU raises its clocks (and the
# host CPU its frequency) only under sustained load; a few passes are not enough.
DEFAULT_SETTLE_S = {"cpu": 0.0, "cuda": 2.0}


def default_settle(settings: dict) -> float:
    return DEFAULT_SETTLE_S["cuda" if settings["device"].startswith("cuda") else "cpu"]


def use_threads(settings: dict) -> None:
    if settings["device"] == "cpu":
        torch.set_num_threads(int(settings["threads"]))


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
    archs: list[ArchSpec], settings: dict, warmup: int, repeats: int, rounds: int = 1, settle_s: float = 0.0
) -> list[float]:
    """End-to-end median latency (ms) of each ``DerivedNet`` under a table's settings.

    The networks are cycled ``rounds`` times (``repeats`` timed passes each time), so that a
    slow spell of the machine is shared by all of them instead of landing on a few.
    """
    runners = [NetworkRunner(spec, settings) for spec in archs]
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
    """Few architectures that together hold every (runnable) candidate of every edge.

    Network ``j`` takes candidate ``(j + e) mod K_e`` at edge ``e`` (rotated, so a candidate meets
    different neighbours); in streaming mode candidates that cannot stream are left out.
    """
    usable = {}
    for layer, infos in zip(space.layers, space.layer_infos):
        if isinstance(layer, str):
            continue
        ok = [i for i, info in enumerate(infos) if settings.get("chunk_ms") is None or info.streamable]
        if not ok:
            raise LatencyTableError(f"{space.source}: edge {layer.name!r}: no candidate can stream")
        usable[layer.name] = ok
    count = max(len(v) for v in usable.values())
    return [
        space.derive(
            {name: ok[(j + e) % len(ok)] for e, (name, ok) in enumerate(usable.items())}, f"cover{j}"
        )
        for j in range(count)
    ]


def profile(
    archs: list[ArchSpec],
    settings: dict,
    warmup: int = 5,
    repeats: int = 30,
    rounds: int = 3,
    extra_slots: list[Slot] = (),
    progress: bool = True,
    settle_s: float | None = None,
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
    so that a streaming table can say why it has no latency for them.
    """
    from tqdm import tqdm

    settle_s = default_settle(settings) if settle_s is None else settle_s
    runners = [NetworkRunner(spec, settings) for spec in archs]
    settled = settle(runners, settle_s)
    samples: dict[str, list[float]] = {}
    entries: dict[str, dict[str, Any]] = {}
    offsets: list[float] = []
    with tqdm(total=rounds * len(runners), desc="profiling", unit="net", disable=not progress) as bar:
        for _ in range(rounds):
            for runner in runners:
                per_op = runner.op_times(warmup, repeats)
                whole = statistics.median(runner.total_times(warmup, repeats))
                offsets.append((whole - sum(statistics.median(t) for t in per_op)) / len(per_op))
                for slot, times in zip(runner.slots, per_op):
                    if slot.key not in entries:
                        entries[slot.key] = static_entry(slot)
                    samples.setdefault(slot.key, []).extend(times)
                bar.update()
    offset = statistics.median(offsets)
    for key, times in samples.items():
        entries[key]["ms_marked"] = statistics.median(times)
        entries[key]["ms"] = max(entries[key]["ms_marked"] + offset, 0.0)
        entries[key]["samples"] = len(times)
    for slot in extra_slots:
        entries.setdefault(slot.key, static_entry(slot))
    measured = {"warmup": warmup, "repeats": repeats, "rounds": rounds, "settle_s": round(settled, 3)}
    return LatencyTable({**settings, **measured, "op_offset_ms": offset}, entries)


def profile_space(
    space: SearchSpace,
    settings: dict,
    warmup: int = 5,
    repeats: int = 10,
    rounds: int = 3,
    archs: list[ArchSpec] = (),
    progress: bool = True,
    settle_s: float | None = None,
) -> LatencyTable:
    """The table of a space (every candidate of every edge at its position, and the fixed
    layers), plus the ops of ``archs`` (baselines to compare with)."""
    slots, _ = space_slots(space, settings)
    excluded = [s for position in slots for s in position if s.frames is None]
    networks = [*covering_archs(space, settings), *archs]
    return profile(networks, settings, warmup, repeats, rounds, excluded, progress, settle_s)


def merge(tables: list[LatencyTable]) -> LatencyTable:
    """One table from several measured with the same settings (e.g. a space and baselines)."""
    first = tables[0]
    entries = {}
    for table in tables:
        table.check({k: first.settings[k] for k in CHECKED_KEYS})
        entries.update(table.entries)
    return LatencyTable(first.settings, entries, first.source)


# --- what a search optimises ---------------------------------------------------------------------
# The SearchModule arguments that configure costs, as ``search_costs`` names them.
PENALTY_ARGS = (
    "latency_table",
    "penalty",
    "penalty_target",
    "penalty_lambda",
    "penalty_beta",
    "budget",
    "reference",
)


@dataclass
class SearchCosts:
    """Expected latency and parameters of a space under the alphas, and the configured penalty."""

    latency: SpaceCosts | None  # None without a table
    params: SpaceCosts
    penalty: ResourcePenalty
    target: str  # latency | params

    @property
    def target_costs(self) -> SpaceCosts | None:
        return self.params if self.target == "params" else self.latency

    def penalised(self, ce: torch.Tensor, probs: dict[str, torch.Tensor], choices: dict[str, int]):
        """``(loss, logs)``: the CE loss with the penalty, and the numbers to log every step."""
        expected = {"params": self.params.expected(probs)}
        logs = {
            "arch/expected_params": expected["params"].detach(),
            "arch/argmax_params": self.params.at(choices),
        }
        if self.latency is not None:
            expected["latency"] = self.latency.expected(probs)
            logs["arch/expected_latency_ms"] = expected["latency"].detach()
            logs["arch/argmax_latency_ms"] = self.latency.at(choices)
        logs["arch/ctc"] = ce.detach()
        if self.penalty.kind == "none":
            return ce, logs
        return self.penalty(ce, expected[self.target]), logs


def search_costs(
    space: SearchSpace,
    vocab: int,
    latency_table: str | Path | None = None,
    penalty: str = "none",
    penalty_target: str = "latency",
    penalty_lambda: float = 0.1,
    penalty_beta: float = 0.6,
    budget: float | None = None,
    reference: float | None = None,
) -> SearchCosts:
    """The costs a ``SearchModule`` logs and penalises. ``reference`` defaults to the expected cost
    under uniform alphas (the search's starting point)."""
    target = penalty_target
    if target not in TARGETS:
        raise ValueError(f"penalty_target: unknown {target!r}; choose one of {', '.join(TARGETS)}")
    if penalty != "none" and target == "latency" and latency_table is None:
        raise ValueError(
            f"penalty {penalty!r} on latency needs a latency_table (make one with `supernet profile`)"
        )
    latency = LatencyTable.load(latency_table).costs(space) if latency_table else None
    params = param_costs(space, vocab)
    costs = {"latency": latency, "params": params}[target]
    if reference is None and costs is not None:
        uniform = {name: torch.full((len(c),), 1.0 / len(c)) for name, c in costs.edges.items()}
        reference = float(costs.expected(uniform))
    return SearchCosts(
        latency, params, ResourcePenalty(penalty, penalty_lambda, penalty_beta, reference, budget), target
    )
