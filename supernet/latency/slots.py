"""Slots: one op at one position of a network, with the input frames it sees there; a table's key."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from supernet.archspec import ArchSpec, OpInfo
from supernet.latency.settings import LatencyTableError
from supernet.space import SearchSpace


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


@dataclass(frozen=True)
class Position:
    """One position of a space (the input op, a layer, the head) with the slots it can take.

    ``rates`` maps each reachable rate (the product of the strides chosen at the stride edges
    before the position: ``SearchSpace.rates``) to every candidate's slot at it; a position before
    any stride edge has the one rate 1. ``strides`` are the candidates' time strides."""

    name: str | None  # the edge; None for a fixed op
    strides: tuple[int, ...]
    rates: dict[int, tuple[Slot, ...]]

    @property
    def stride_edge(self) -> bool:
        return len(set(self.strides)) > 1

    def slots(self) -> list[Slot]:
        """Every distinct slot of the position, rate by rate, candidate by candidate."""
        return list(dict.fromkeys(s for rate in sorted(self.rates) for s in self.rates[rate]))


def network_positions(
    fields: dict[str, Any],
    layers: list[list[OpInfo]],
    input_info: OpInfo,
    head_info: OpInfo,
    settings: dict,
    names: list[str | None] | None = None,
) -> list[Position]:
    """Positions of a network or a space: ``[input, *layers, head]``, each layer a list of
    candidates (one for a fixed op), at every rate the strides before it can reach.

    Full-utterance: an op sees ``ceil(T / product of the strides before it)`` frames, ``T`` being
    ``seconds`` of input frames. Streaming: ``ceil(C / strides before it) + its look-ahead``,
    ``C`` being one chunk of input frames; an op with unbounded look-ahead gets ``frames=None``.
    A layer whose candidates' strides differ multiplies the reachable rates of what follows.
    """
    rate_hz = 16_000 if fields["features"] == "raw" else 100
    dim, vocab = fields["dim"], settings["vocab"]
    names = names or [None] * len(layers)
    positions = [(None, [input_info], fields["feature_dim"], dim, False)]
    positions += [(name, infos, dim, dim, False) for name, infos in zip(names, layers)]
    positions.append((None, [head_info], dim, vocab, True))
    chunk = settings.get("chunk_ms")
    frames = round(settings["seconds"] * rate_hz) if chunk is None else round(chunk / 1000 * rate_hz)
    if frames < 1:
        raise LatencyTableError(f"seconds/chunk_ms give no input frame at {rate_hz} frames/s")
    fixed, reach, out = 1, {1}, []  # the fixed strides so far; the reachable rates
    for name, infos, in_dim, out_dim, head in positions:
        by_rate = {}
        for rate in sorted(reach):
            here = math.ceil(frames / (fixed * rate))  # nested ceilings compose: ceil(ceil(T/a)/b)
            by_rate[rate] = tuple(Slot(i.spec, in_dim, out_dim, _frames(i, here, chunk), head) for i in infos)
        strides = tuple(info.stride for info in infos)
        out.append(Position(name, strides, by_rate))
        if len(set(strides)) > 1:
            reach = {rate * stride for rate in reach for stride in strides}
        else:
            fixed *= strides[0]
    return out


def _frames(info: OpInfo, here: int, chunk: float | None) -> int | None:
    """The frames an op sees given ``here`` frames reach it: all of them, or in streaming mode its
    chunk plus its look-ahead (None for an op that cannot stream)."""
    if chunk is None:
        return here
    return None if not info.streamable or math.isinf(info.lookahead) else here + int(info.lookahead)


def network_slots(
    fields: dict[str, Any], layers: list[list[OpInfo]], input_info: OpInfo, head_info: OpInfo, settings: dict
) -> list[list[Slot]]:
    """Slots of every position: ``[[input], [slot, ...] per layer, [head]]``, every distinct slot
    a layer's candidates can take at the rates reachable there (``network_positions``)."""
    return [p.slots() for p in network_positions(fields, layers, input_info, head_info, settings)]


def space_positions(space: SearchSpace, settings: dict) -> list[Position]:
    """Positions of a search space, each edge's named: every reachable (position, candidate,
    input frames)."""
    infos = [[i] if isinstance(i, OpInfo) else list(i) for i in space.layer_infos]
    fields = space.fields
    probe = ArchSpec.from_dict({**fields, "layers": []}, source=space.source)
    names = [None if isinstance(layer, str) else layer.name for layer in space.layers]
    return network_positions(fields, infos, probe.input_info, probe.head_info, settings, names)


def space_slots(space: SearchSpace, settings: dict) -> tuple[list[list[Slot]], list[str | None]]:
    """Slots of a search space (every distinct slot of each position, at every reachable rate),
    and each position's edge name (None where fixed)."""
    positions = space_positions(space, settings)
    return [p.slots() for p in positions], [p.name for p in positions]


def arch_slots(spec: ArchSpec, settings: dict) -> list[Slot]:
    """One slot per op of an architecture (input, layers, head), at the frames its own strides give."""
    fields = spec.to_dict()
    layers = [[info] for info in spec.layer_infos]
    return [s[0] for s in network_slots(fields, layers, spec.input_info, spec.head_info, settings)]
