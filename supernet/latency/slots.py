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
    slots = network_slots(fields, infos, probe.input_info, probe.head_info, settings)
    names = [None] + [None if isinstance(layer, str) else layer.name for layer in space.layers] + [None]
    return slots, names


def arch_slots(spec: ArchSpec, settings: dict) -> list[Slot]:
    fields = spec.to_dict()
    layers = [[info] for info in spec.layer_infos]
    return [s[0] for s in network_slots(fields, layers, spec.input_info, spec.head_info, settings)]
