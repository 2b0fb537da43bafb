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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ops
from supernet.archspec import ArchSpec, OpInfo
from supernet.space import SearchSpace

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
)
METRICS = ("ms", "params", "bytes")
# wall: elapsed time. cpu: the calling thread's CPU time, which with one thread is the latency
# of an idle machine and, unlike wall time, does not grow when other processes pre-empt the run.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


class LatencyTableError(ValueError):
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
    if clock not in CLOCKS:
        raise ValueError(f"clock: {clock!r} is not one of {', '.join(CLOCKS)}")
    if clock == "cpu" and (device != "cpu" or threads != 1):
        raise ValueError("clock: 'cpu' (thread CPU time) measures latency only on the CPU with --threads 1")
    if chunk_ms is not None and chunk_ms <= 0:
        raise ValueError(f"chunk_ms must be positive, got {chunk_ms}")
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

    def expected(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``fixed + sum_edges sum_k p_k * cost_k``; carries the probabilities' graph."""
        missing = sorted(set(self.edges) - set(probs))
        if missing:
            raise KeyError(f"no probabilities for edge(s) {missing}")
        total = None
        for name, cost in self.edges.items():
            p = probs[name]
            if p.shape != (len(cost),):
                raise ValueError(
                    f"edge {name!r}: {len(cost)} candidates, probabilities of shape {tuple(p.shape)}"
                )
            term = (p * torch.tensor(cost, dtype=p.dtype, device=p.device)).sum()
            total = term if total is None else total + term
        return total + self.fixed

    def at(self, choices: dict[str, int]) -> float:
        """The cost of one architecture (candidate index per edge)."""
        return self.fixed + sum(cost[int(choices[name])] for name, cost in self.edges.items())


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
        missing = [k for k in CHECKED_KEYS if k not in settings]
        if missing:
            raise LatencyTableError(f"{source}: settings lack {missing}")
        self.settings = dict(settings)
        self.entries = dict(entries)
        self.source = source

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
        """Read a table; with ``expect``, refuse differing settings unless ``force``."""
        path = Path(path)
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


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return not math.isclose(float(a), float(b), rel_tol=1e-9)
    return a != b


# --- measuring -----------------------------------------------------------------------------------
def time_ms(fn: Callable[[], Any], device: str, warmup: int, repeats: int, clock: str = "wall") -> float:
    """Median time of ``fn`` in ms over ``repeats`` calls after ``warmup`` untimed ones.

    CUDA: events around each call and a synchronize. CPU: ``clock`` "wall" (elapsed) or "cpu"
    (this thread's CPU time; see ``CLOCKS``).
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock {clock!r} is not one of {', '.join(CLOCKS)}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
        else:
            now = CLOCKS[clock]
            for _ in range(repeats):
                t0 = now()
                fn()
                times.append(1000 * (now() - t0))
    return statistics.median(times)


class _HeadWithLogSoftmax(nn.Module):
    """The head as the network runs it: the op, then ``float().log_softmax(-1)``."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x, lengths):
        logits, lengths = self.head(x, lengths)
        return logits.float().log_softmax(dim=-1), lengths


def prepare(module: nn.Module, settings: dict) -> nn.Module:
    """Eval mode on the table's device and dtype (the threads are set by ``use_threads``)."""
    return module.eval().to(device=settings["device"], dtype=DTYPES[settings["dtype"]])


def use_threads(settings: dict) -> None:
    if settings["device"] == "cpu":
        torch.set_num_threads(int(settings["threads"]))


def random_input(frames: int, dim: int, settings: dict, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A contiguous ``(batch, frames, dim)`` input and full lengths on the table's device."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(settings["batch"], frames, dim, generator=gen)
    x = x.to(device=settings["device"], dtype=DTYPES[settings["dtype"]]).contiguous()
    lengths = torch.full((settings["batch"],), frames, dtype=torch.long, device=settings["device"])
    return x, lengths


def measure_slot(slot: Slot, settings: dict, warmup: int, repeats: int) -> dict[str, Any]:
    """Build the op, time it on its input shape, and count its parameters and bytes."""
    op = ops.build(slot.spec, slot.in_dim, slot.out_dim)
    params = sum(p.numel() for p in op.parameters() if p.requires_grad)
    nbytes = sum(t.numel() * t.element_size() for t in [*op.parameters(), *op.buffers()])
    entry: dict[str, Any] = {
        "spec": slot.spec,
        "in_dim": slot.in_dim,
        "out_dim": slot.out_dim,
        "frames": slot.frames,
        "head": slot.head,
        "stride": int(getattr(op, "stride", 1)),
        "lookahead": None if op.lookahead >= ops.UNBOUNDED else int(op.lookahead),
        "streamable": bool(op.streamable),
        "params": params,
        "bytes": nbytes,
        "ms": None,
    }
    if slot.frames is None:
        return entry
    module = prepare(_HeadWithLogSoftmax(op) if slot.head else op, settings)
    x, lengths = random_input(slot.frames, slot.in_dim, settings)
    entry["ms"] = time_ms(lambda: module(x, lengths), settings["device"], warmup, repeats, settings["clock"])
    entry["flops"] = int(op.flops(slot.frames))
    return entry


def profile(
    slots: list[Slot], settings: dict, warmup: int = 5, repeats: int = 30, progress: bool = True
) -> LatencyTable:
    """Measure every distinct slot once (same spec, dims and frames share one entry)."""
    from tqdm import tqdm

    use_threads(settings)
    unique = list({s.key: s for s in slots}.values())
    entries = {}
    for slot in tqdm(unique, desc="profiling ops", unit="op", disable=not progress):
        entries[slot.key] = measure_slot(slot, settings, warmup, repeats)
    return LatencyTable({**settings, "warmup": warmup, "repeats": repeats}, entries)


# --- measuring whole networks the same way (the check) -------------------------------------------
def measure_network(spec: ArchSpec, settings: dict, warmup: int, repeats: int, seed: int = 0) -> float:
    """End-to-end median latency (ms) of ``DerivedNet(spec)`` under the table's settings.

    Full-utterance: one forward pass over ``seconds`` of input. Streaming: one chunk step, each op
    run in order on its chunk plus its look-ahead (the previous output cut or zero-padded to that).
    """
    from supernet.derived import DerivedNet

    use_threads(settings)
    torch.manual_seed(seed)
    net = prepare(DerivedNet(spec, settings["vocab"]), settings)
    slots = arch_slots(spec, settings)
    if settings.get("chunk_ms") is None:
        x, lengths = random_input(slots[0].frames, spec.feature_dim, settings, seed)
        return time_ms(lambda: net(x, lengths), settings["device"], warmup, repeats, settings["clock"])
    bad = [s.describe() for s in slots if s.frames is None]
    if bad:
        raise LatencyTableError(f"{spec.name}: {bad[0]} cannot stream")
    modules = [net.input, *net.layers, _HeadWithLogSoftmax(net.head)]
    x0, _ = random_input(slots[0].frames, spec.feature_dim, settings, seed)
    batch, device = settings["batch"], settings["device"]
    lengths = [torch.full((batch,), s.frames, dtype=torch.long, device=device) for s in slots]

    def chunk_step():
        x = x0
        for module, slot, n in zip(modules, slots, lengths):
            have = x.shape[1]
            x = (
                x[:, : slot.frames]
                if have >= slot.frames
                else nn.functional.pad(x, (0, 0, 0, slot.frames - have))
            )
            x, _ = module(x, n)
        return x

    return time_ms(chunk_step, settings["device"], warmup, repeats, settings["clock"])
