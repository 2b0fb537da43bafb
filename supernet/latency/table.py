"""LatencyTable: measured op latencies for one device and settings; predicts architectures.

Each entry is one op *at one place in a network*: ``(op spec, in_dim, out_dim, input frames)``
(a ``Slot``). The frames are what the op sees inside the network for ``seconds`` of audio, after
the strides before it (full-utterance mode), or, with ``chunk_ms``, one chunk at its position plus
the op's own look-ahead (streaming mode: ops that cannot stream are recorded as such, without a
time). The head entry includes the network's final ``float().log_softmax()``, so that the
prediction of an ``ArchSpec`` is simply the sum of its ops' entries (input op, layers, head).

A table is tied to the device, runtime and settings it was measured with (``settings``); ``check``
(and ``load(..., expect=...)``) refuses another device, runtime or other settings, naming the
differing key, unless forced: a table measured on one device silently used for another is a
classic NAS bug. Tables of every runtime (``supernet.latency.ort`` for onnxruntime) share this
format, so a search or a select reads any of them alike.

``costs(space)`` gives a space's ``SpaceCosts``, and ``expected(space, probs)`` the latency
expected under the architecture distribution: differentiable in the probabilities.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from supernet.archspec import ArchSpec
from supernet.latency import calibration
from supernet.latency.costs import SpaceCosts
from supernet.latency.settings import CHECKED_KEYS, LatencyTableError, table_defaults
from supernet.latency.slots import Slot, arch_slots, space_positions
from supernet.shipped import resolve
from supernet.space import SearchSpace

FORMAT = "supernet-latency-table"
VERSION = 1
METRICS = ("ms", "params", "bytes", "flops")


class LatencyTable:
    """Entries ``key -> {ms, params, bytes, streamable, ...}`` measured under ``settings``."""

    def __init__(
        self, settings: dict[str, Any], entries: dict[str, dict[str, Any]], source: str = "<memory>"
    ):
        settings = table_defaults(settings)  # tables written before some keys were recorded
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
            hint = "measure a new table"
            if k in ("runtime", "int8", "int8_mode"):  # a table predicts the runtime it was measured in
                runtime = expect.get("runtime", self.settings["runtime"])
                int8 = " --int8" if expect.get("int8", self.settings["int8"]) else ""
                mode = expect.get("int8_mode", self.settings["int8_mode"])
                int8 += f" --int8-mode {mode}" if int8 and mode else ""
                hint = f"measure a table in that runtime: `supernet profile --runtime {runtime}{int8}`"
            raise LatencyTableError(
                f"{self.source}: settings key {k!r} differs: table has {self.settings.get(k)!r}, "
                f"this run has {expect[k]!r} ({hint}, or pass --force / force=True)"
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
    @property
    def calibration(self) -> dict[str, Any] | None:
        """The line fitted to whole networks (``supernet.latency.calibration``), if measured."""
        return self.settings.get("calibration")

    def predict(self, spec: ArchSpec, metric: str = "ms") -> float:
        """Latency (ms) of one architecture: the sum of its ops' entries (input, layers, head),
        through the table's calibration line."""
        total = self.op_sum(spec, metric)
        return calibration.apply(self.calibration, total) if metric == "ms" else total

    def op_sum(self, spec: ArchSpec, metric: str = "ms") -> float:
        """The sum of the ops' entries, before calibration."""
        slots = arch_slots(spec, self.settings)
        names = ["input", *(f"layers[{i}]" for i in range(len(spec.layers))), "head"]
        return sum(self.value(s, metric, f"{spec.name}.{n}") for s, n in zip(slots, names))

    def predict_params(self, spec: ArchSpec) -> float:
        return self.predict(spec, "params")

    def costs(self, space: SearchSpace, metric: str = "ms") -> SpaceCosts:
        """The space's ``SpaceCosts`` from the entries: every candidate of every edge at every rate
        it can be reached at (``space_positions``). The fixed ops before the first stride edge make
        ``fixed``; those after a stride edge join its costs, at the rate its candidate gives them."""
        fixed, edges, strides = 0.0, {}, {}
        last = None  # the latest stride edge: where the fixed ops after it are counted
        for position, pos in enumerate(space_positions(space, self.settings)):
            where = f"{space.name}.{pos.name or f'position {position}'}"
            values = {r: [self.value(s, metric, where) for s in slots] for r, slots in pos.rates.items()}
            if pos.name is None and last is None:
                fixed += values[1][0]
            elif pos.name is None:  # a fixed op after the stride edge ``last``: its cost follows that choice
                for rate, cost in edges[last].items():
                    for k, stride in enumerate(strides[last]):
                        cost[k] += values[rate * stride][0]
            else:
                edges[pos.name] = values if last is not None or pos.stride_edge else values[1]
            if pos.stride_edge:  # its costs are per rate (a dict): the fixed ops after it join them
                last, strides[pos.name] = pos.name, list(pos.strides)
        line = self.calibration if metric == "ms" else None
        if line:  # linear: the expected latency under any probabilities is calibrated exactly
            scale = line["scale"]
            fixed = calibration.apply(line, fixed)
            edges = {name: _scaled(cost, scale) for name, cost in edges.items()}
        return SpaceCosts(metric, fixed, edges, strides)

    def expected(
        self, space: SearchSpace, probs: dict[str, torch.Tensor], metric: str = "ms"
    ) -> torch.Tensor:
        """Expected latency (ms) under per-edge probabilities; differentiable in ``probs``."""
        return self.costs(space, metric).expected(probs)

    def expected_params(self, space: SearchSpace, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.expected(space, probs, "params")


def _scaled(cost: list[float] | dict[int, list[float]], scale: float):
    if isinstance(cost, dict):
        return {rate: [scale * v for v in values] for rate, values in cost.items()}
    return [scale * v for v in cost]


def check_entries(entries: dict[str, Any], source: str) -> None:
    """Refuse an entry whose ms, params, bytes or flops is NaN, infinite or negative (``ms`` may be None:
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
