"""SearchSpace: the ArchSpec YAML in which a layer may be a choice of op specs.

```yaml
name: st_nas
features: fbank
feature_dim: 80
dim: 256
input: linear
layers:
  - {name: block1, choice: [tdnn-k3-d1, tdnn-k3-d2, tdnn-k5-d1, tdnn-k5-d2]}
  - tdnn-k3-d1-s3            # a fixed layer
  - {choice: [tdnn-k3-d1, skip]}   # named "layer2" when unnamed
head: linear
```

Every candidate is built and run once when the space is read, so a typo or a dim mismatch fails
with the file, the layer and the candidate. ``derive(choices)`` turns one choice per edge into an
``ArchSpec``: the single hand-off to retrain.

A choice may subsample differently (``{name: stem, choice: [tdnn-k3-d1-s2, tdnn-k3-d1-s3]}``): a
*stride edge*, where the search picks how much, and where, the network subsamples. Every op after
it then sees one of several frame counts, one per reachable ``rate`` (the product of the strides
chosen at the stride edges before it, ``rates``); CTC feasibility is checked at the largest total
stride of any path (``max_total_stride``). Single-path methods run such edges (``uniform`` and the
strategies of ``supernet select``, GDAS: ``gumbel`` with ``hard: true``), ``st`` with a
score-function gradient there; methods that sum candidate outputs need equal shapes and refuse
them (``supernet.search.relaxations``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supernet.archspec import ArchSpec, ArchSpecError, OpInfo, _where, check_op, parse_fields, read_yaml
from supernet.shipped import resolve

# the ArchSpec fields besides its layers that a path shares with its space
NETWORK_FIELDS = ("features", "feature_dim", "dim", "input", "head")


@dataclass(frozen=True)
class Choice:
    """One searchable edge: its name and candidate op specs."""

    name: str
    candidates: tuple[str, ...]


class SearchSpace:
    """A macro-DAG of fixed layers and choices; see the module docstring for the format."""

    def __init__(self, data: Any, source: str = "<dict>"):
        fields = parse_fields(data, source)
        self.source = source
        self.fields = {k: v for k, v in fields.items() if not k.startswith("_")}
        self._input_info: OpInfo = fields["_input_info"]
        self._head_info: OpInfo = fields["_head_info"]
        self.layers: list[str | Choice] = []
        self.layer_infos: list[OpInfo | list[OpInfo]] = []
        names: set[str] = set()
        dim = fields["dim"]
        for i, layer in enumerate(fields["layers"]):
            where = f"layers[{i}]"
            if isinstance(layer, str):
                self.layers.append(layer)
                self.layer_infos.append(check_op(layer, dim, dim, source, where))
                continue
            choice = self._parse_choice(layer, i, where, names)
            infos = [
                check_op(c, dim, dim, source, f"{where}.choice[{j}]") for j, c in enumerate(choice.candidates)
            ]
            self.layers.append(choice)
            self.layer_infos.append(infos)
        if not self.choices:
            raise ArchSpecError(f"{_where(source, 'layers')}: a search space needs at least one choice")

    def _parse_choice(self, layer: Any, i: int, where: str, names: set[str]) -> Choice:
        if not isinstance(layer, dict) or "choice" not in layer:
            raise ArchSpecError(
                f"{_where(self.source, where)}: a layer is an op spec string or a mapping with 'choice', "
                f"got {layer!r}"
            )
        unknown = sorted(set(layer) - {"choice", "name"})
        if unknown:
            raise ArchSpecError(
                f"{_where(self.source, where)}: unknown key {unknown[0]!r} (use 'choice', 'name')"
            )
        candidates = layer["choice"]
        if not isinstance(candidates, list) or len(candidates) < 2:
            raise ArchSpecError(f"{_where(self.source, where)}.choice: needs a list of at least two op specs")
        if len(set(candidates)) != len(candidates):
            raise ArchSpecError(f"{_where(self.source, where)}.choice: repeated candidate in {candidates}")
        name = layer.get("name", f"layer{i}")
        if not isinstance(name, str) or not name or name in names:
            raise ArchSpecError(f"{_where(self.source, where)}.name: {name!r} is empty or not unique")
        names.add(name)
        return Choice(name, tuple(candidates))

    # --- reading ---------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        path = resolve_space_path(path)
        return cls(read_yaml(path, "search space"), source=str(path))

    @classmethod
    def load(cls, space: str | Path | dict | SearchSpace) -> SearchSpace:
        if isinstance(space, SearchSpace):
            return space
        if isinstance(space, dict):
            return cls(space)
        return cls.from_yaml(space)

    def to_dict(self) -> dict[str, Any]:
        layers = [
            layer if isinstance(layer, str) else {"name": layer.name, "choice": list(layer.candidates)}
            for layer in self.layers
        ]
        return {**self.fields, "layers": layers}

    # --- the edges -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.fields["name"]

    @property
    def choices(self) -> list[Choice]:
        return [layer for layer in self.layers if isinstance(layer, Choice)]

    @property
    def edges(self) -> dict[str, list[str]]:
        return {c.name: list(c.candidates) for c in self.choices}

    def droppable(self) -> dict[str, int]:
        """Each edge with a ``skip`` candidate, and its index: choosing it drops the layer (the
        residual path, or the chain itself, carries the signal on), so depth is searchable there."""
        return {name: cands.index("skip") for name, cands in self.edges.items() if "skip" in cands}

    @property
    def stride_edges(self) -> dict[str, list[int]]:
        """The edges whose candidates subsample differently, each candidate's time stride, in
        network order."""
        out = {}
        for layer, info in zip(self.layers, self.layer_infos):
            if isinstance(layer, Choice) and len({i.stride for i in info}) > 1:
                out[layer.name] = [i.stride for i in info]
        return out

    def rates(self) -> list[set[int]]:
        """Each layer's reachable rates: the products of the strides chosen at the stride edges
        before it ({1} before the first, and everywhere in a space without stride edges). A
        layer's total input stride is its rate times the fixed strides before it."""
        reach, out = {1}, []
        for layer, info in zip(self.layers, self.layer_infos):
            out.append(set(reach))
            if isinstance(layer, Choice) and len({i.stride for i in info}) > 1:
                reach = {r * i.stride for r in reach for i in info}
        return out

    @property
    def max_total_stride(self) -> int:
        """The largest total time stride of any path (input op x layers x head, as
        ``ArchSpec.total_stride``): enough to check CTC feasibility for the whole space at once.
        Edges are independent, so the largest product takes each stride edge's largest stride."""
        strides = [self._input_info.stride, self._head_info.stride]
        for info in self.layer_infos:
            strides.append(max(i.stride for i in info) if isinstance(info, list) else info.stride)
        return math.prod(strides)

    @property
    def total_strides(self) -> list[int]:
        """Every total time stride a path of the space can have, sorted (one value without stride
        edges): the output frame rates the search chooses between."""
        edges = self.stride_edges
        fixed = self._input_info.stride * self._head_info.stride
        for layer, info in zip(self.layers, self.layer_infos):
            if isinstance(info, OpInfo):
                fixed *= info.stride
            elif layer.name not in edges:
                fixed *= info[0].stride
        rates = {1}
        for strides in edges.values():
            rates = {r * s for r in rates for s in strides}
        return sorted(fixed * r for r in rates)

    @property
    def num_paths(self) -> int:
        return math.prod(len(c.candidates) for c in self.choices)

    def sample_path(self, rng) -> dict[str, int]:
        """A uniform path (each edge's candidate drawn with ``rng.randrange``, edge by edge): the one
        draw that random baselines, latency checks and calibration share, so a seed means one path."""
        return {c.name: rng.randrange(len(c.candidates)) for c in self.choices}

    def derive(self, choices: dict[str, int | str], name: str | None = None) -> ArchSpec:
        """The ArchSpec that takes ``choices[edge]`` (an index or a spec) at every edge."""
        missing = [c.name for c in self.choices if c.name not in choices]
        if missing:
            raise ValueError(f"{self.source}: no choice given for edge(s) {missing}")
        layers = []
        for layer in self.layers:
            if isinstance(layer, str):
                layers.append(layer)
                continue
            pick = choices[layer.name]
            if isinstance(pick, int):
                layers.append(layer.candidates[pick])
            elif pick in layer.candidates:
                layers.append(pick)
            else:
                raise ValueError(f"edge {layer.name!r}: {pick!r} is not one of {list(layer.candidates)}")
        return ArchSpec.from_dict(
            {**self.fields, "name": name or f"{self.name}-derived", "layers": layers},
            source=f"{self.source} (derived)",
        )

    def index_of(self, spec: ArchSpec) -> dict[str, int]:
        """The choices that give ``spec``; an error if the architecture is not in the space: its
        layers and the fields that shape the network (a head or width of its own is another
        network, whose weights the supernet does not hold). Dropout may differ: it only trains."""
        for field in NETWORK_FIELDS:
            if getattr(spec, field) != self.fields[field]:
                raise ValueError(
                    f"{spec.name!r} has {field} {getattr(spec, field)!r}, the space {self.fields[field]!r}"
                )
        if len(spec.layers) != len(self.layers):
            raise ValueError(f"{spec.name!r} has {len(spec.layers)} layers, the space {len(self.layers)}")
        out = {}
        for i, (mine, theirs) in enumerate(zip(self.layers, spec.layers)):
            if isinstance(mine, str):
                if mine != theirs:
                    raise ValueError(f"layer {i}: {theirs!r} where the space fixes {mine!r}")
            elif theirs not in mine.candidates:
                raise ValueError(
                    f"layer {i} ({mine.name}): {theirs!r} is not a candidate {list(mine.candidates)}"
                )
            else:
                out[mine.name] = mine.candidates.index(theirs)
        return out


def resolve_space_path(space: str | Path) -> Path:
    """A YAML path, or the name of a shipped space (``st_nas``, ``conformer``, ``mixed``)."""
    return resolve("space", space)
