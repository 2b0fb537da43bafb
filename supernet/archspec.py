"""ArchSpec: a fixed architecture as plain YAML, the single hand-off between search and retrain.

```yaml
name: tdnn_d
features: fbank      # fbank | mfcc | raw  (raw needs a learnable front-end as `input`)
feature_dim: 80
dim: 256
input: linear        # op spec: feature_dim -> dim
layers: [tdnn-k3-d1, tdnn-k3-d1-s3, ...]   # op specs: dim -> dim
head: linear         # op spec: dim -> vocabulary (optional, default linear)
dropout: 0.1         # optional, default 0.0
```

Every op spec is checked by building it through the ``ops`` registry and running it on a few
frames, so a bad spec fails when the file is read, with an error naming the file and field.
``parse_fields`` checks everything but the layers, for search spaces that reuse the format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

import ops
from ops.base import UNBOUNDED
from supernet.errors import UserError
from supernet.outputs import atomic_write_text
from supernet.shipped import resolve

FEATURE_KINDS = ("fbank", "mfcc", "raw", "kaldi_fbank")  # supernet.data.features makes each
FRAME_RATE = 100  # feature frames per second (10 ms hop) for fbank, kaldi_fbank and mfcc
SAMPLE_RATE = 16_000  # input "frames" per second for raw waveforms
_PROBE_VOCAB = 8  # vocabulary size used to check that the head builds

# field -> (accepted types, required, default)
FIELDS: dict[str, tuple[tuple[type, ...], bool, Any]] = {
    "name": ((str,), True, None),
    "features": ((str,), True, None),
    "feature_dim": ((int,), True, None),
    "dim": ((int,), True, None),
    "input": ((str,), True, None),
    "layers": ((list,), True, None),
    "head": ((str,), False, "linear"),
    "dropout": ((float, int), False, 0.0),
}


class ArchSpecError(UserError, ValueError):
    """A malformed architecture file; the message names the file and the field."""


@dataclass(frozen=True)
class OpInfo:
    """What an op declares about itself, read from a built instance."""

    spec: str
    stride: int
    lookahead: float  # input frames to the right; math.inf when unbounded
    streamable: bool
    parameter_free: bool
    flops_per_frame: float  # multiply-adds (as ``Op.flops`` counts them) per input frame of this op

    @classmethod
    def of(cls, op: nn.Module, spec: str, in_frames: int) -> OpInfo:
        lookahead = getattr(op, "lookahead", 0)
        return cls(
            spec=spec,
            stride=int(getattr(op, "stride", 1)),
            lookahead=math.inf if lookahead is None or lookahead >= UNBOUNDED else float(lookahead),
            streamable=bool(getattr(op, "streamable", True)),
            parameter_free=bool(getattr(op, "parameter_free", False)),
            flops_per_frame=_flops_per_frame(op, in_frames),
        )


def _flops_per_frame(op: nn.Module, in_frames: int) -> float:
    """The op's own multiply-add count for ``in_frames`` input frames, divided by ``in_frames``."""
    return float(op.flops(in_frames)) / in_frames


def _where(source: str, name: str) -> str:
    return f"{source}: field {name!r}"


def check_op(spec: Any, in_dim: int, out_dim: int, source: str, where: str) -> OpInfo:
    """Build ``spec`` through the registry and run it on a few frames; errors name ``where``.

    ``where`` is the field, e.g. ``"layers[3]"``. Returns what the op declares about itself.
    """
    if not isinstance(spec, str):
        raise ArchSpecError(
            f"{_where(source, where)}: an op spec must be a string, got {type(spec).__name__}"
        )
    try:
        op = ops.build(spec, in_dim, out_dim)
    except Exception as err:  # the registry's message says what is wrong with the spec
        raise ArchSpecError(f"{_where(source, where)}: op spec {spec!r} rejected: {err}") from err
    stride = int(getattr(op, "stride", 1))
    frames = 4 * stride
    op.eval()
    with torch.no_grad():
        try:
            y, _ = op(torch.zeros(1, frames, in_dim), torch.tensor([frames]))
        except Exception as err:
            raise ArchSpecError(
                f"{_where(source, where)}: op {spec!r} fails on a ({frames} x {in_dim}) input: {err}"
            ) from err
    if y.shape[-1] != out_dim:
        raise ArchSpecError(
            f"{_where(source, where)}: dim mismatch: op {spec!r} maps {in_dim} -> {y.shape[-1]} channels, "
            f"expected {in_dim} -> {out_dim}"
        )
    return OpInfo.of(op, spec, frames)


def parse_fields(data: Any, source: str, allowed_extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check every ArchSpec field except the contents of ``layers``; fill in defaults.

    Checks: unknown and missing fields, types, feature kind, positive dims, dropout range, that
    the input op maps ``feature_dim -> dim`` and the head ``dim -> vocabulary``, and that raw
    audio has a front-end (an op that strides over samples) as input. Returns the fields with
    defaults filled in and ``layers`` as given (a list), plus ``_input_info`` / ``_head_info``.
    """
    if not isinstance(data, dict):
        raise ArchSpecError(
            f"{source}: an architecture must be a mapping of fields, got {type(data).__name__}"
        )
    unknown = sorted(set(data) - set(FIELDS) - set(allowed_extra))
    if unknown:
        raise ArchSpecError(f"{source}: unknown field {unknown[0]!r} (known fields: {', '.join(FIELDS)})")
    fields: dict[str, Any] = {}
    for name, (types, required, default) in FIELDS.items():
        if name not in data:
            if required:
                raise ArchSpecError(f"{source}: missing field {name!r}")
            fields[name] = default
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise ArchSpecError(
                f"{_where(source, name)}: expected {wanted}, got {type(value).__name__} {value!r}"
            )
        fields[name] = value
    fields.update({k: data[k] for k in allowed_extra if k in data})

    if fields["features"] not in FEATURE_KINDS:
        raise ArchSpecError(
            f"{_where(source, 'features')}: {fields['features']!r} is not one of {', '.join(FEATURE_KINDS)}"
        )
    for name in ("feature_dim", "dim"):
        if fields[name] < 1:
            raise ArchSpecError(f"{_where(source, name)}: must be positive, got {fields[name]}")
    fields["dropout"] = float(fields["dropout"])
    if not 0.0 <= fields["dropout"] < 1.0:
        raise ArchSpecError(f"{_where(source, 'dropout')}: must be in [0, 1), got {fields['dropout']}")
    if fields["features"] == "raw" and fields["feature_dim"] != 1:
        raise ArchSpecError(
            f"{_where(source, 'feature_dim')}: dim mismatch: raw audio has feature_dim 1, got {fields['feature_dim']}"
        )

    input_info = check_op(fields["input"], fields["feature_dim"], fields["dim"], source, "input")
    if fields["features"] == "raw" and input_info.stride * FRAME_RATE < SAMPLE_RATE // 10:
        raise ArchSpecError(
            f"{_where(source, 'input')}: features: raw needs a learnable front-end as input op "
            f"(one that turns samples into frames), got {fields['input']!r} with stride {input_info.stride}"
        )
    fields["_input_info"] = input_info
    fields["_head_info"] = check_op(fields["head"], fields["dim"], _PROBE_VOCAB, source, "head")
    if fields["_head_info"].stride != 1:
        raise ArchSpecError(f"{_where(source, 'head')}: the head must not subsample, got {fields['head']!r}")
    return fields


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document of ``path``; unreadable files and bad YAML name the file."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as err:
        raise ArchSpecError(f"{path}: cannot read the {what} file: {err}") from err
    except yaml.YAMLError as err:
        raise ArchSpecError(f"{path}: not valid YAML: {err}") from err


def resolve_arch_path(arch: str | Path) -> Path:
    """A YAML path, or the name of a shipped baseline (``tdnn_d``, ``conformer_s``, ``blstm``)."""
    return resolve("arch", arch)


@dataclass
class ArchSpec:
    """A fixed architecture; validated on construction (see the module docstring)."""

    name: str
    features: str
    feature_dim: int
    dim: int
    input: str
    layers: list[str]
    head: str = "linear"
    dropout: float = 0.0
    source: str = field(default="<dict>", repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = parse_fields(self.to_dict(), self.source)
        self.dropout = fields["dropout"]
        self._input_info: OpInfo = fields["_input_info"]
        self._head_info: OpInfo = fields["_head_info"]
        self._layer_infos: list[OpInfo] = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, dict):
                raise ArchSpecError(
                    f"{_where(self.source, f'layers[{i}]')}: {layer!r} is a search choice, not an op spec "
                    "(a search space is not a fixed architecture)"
                )
            self._layer_infos.append(check_op(layer, self.dim, self.dim, self.source, f"layers[{i}]"))
        self.layers = list(self.layers)

    # --- reading and writing -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> ArchSpec:
        fields = parse_fields(data, source)
        return cls(**{name: fields[name] for name in FIELDS}, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ArchSpec:
        """Read an ArchSpec YAML: a path, or a shipped baseline's name (``tdnn_d``, ``conformer_s``)."""
        path = resolve_arch_path(path)
        return cls.from_dict(read_yaml(path, "architecture"), source=str(path))

    @classmethod
    def load(cls, arch: str | Path | dict | ArchSpec) -> ArchSpec:
        """An ArchSpec from a YAML path, a shipped name, a dict or an ArchSpec (returned as is)."""
        if isinstance(arch, ArchSpec):
            return arch
        if isinstance(arch, dict):
            return cls.from_dict(arch)
        return cls.from_yaml(arch)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": self.features,
            "feature_dim": self.feature_dim,
            "dim": self.dim,
            "input": self.input,
            "layers": list(self.layers),
            "head": self.head,
            "dropout": self.dropout,
        }

    def to_yaml(self, path: str | Path) -> None:
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None))

    # --- what the architecture costs ------------------------------------------------------
    @property
    def input_rate(self) -> int:
        """Input frames per second: feature frames, or samples for raw audio."""
        return SAMPLE_RATE if self.features == "raw" else FRAME_RATE

    @property
    def input_info(self) -> OpInfo:
        return self._input_info

    @property
    def layer_infos(self) -> list[OpInfo]:
        return list(self._layer_infos)

    @property
    def head_info(self) -> OpInfo:
        return self._head_info

    @property
    def op_infos(self) -> list[OpInfo]:
        """Input op, layers, head: in the order the data flows."""
        return [self._input_info, *self._layer_infos, self._head_info]

    @property
    def total_stride(self) -> int:
        return math.prod(info.stride for info in self.op_infos)

    @property
    def total_lookahead(self) -> float:
        """Input frames the network reads to the right of a frame: sum of lookahead_i x the
        product of the strides before op i (one frame of op i spans that many input frames).
        ``math.inf`` when any op looks at the whole utterance."""
        total, stride = 0.0, 1
        for info in self.op_infos:
            total += info.lookahead * stride
            stride *= info.stride
        return total

    @property
    def parameter_free_count(self) -> int:
        """Layers that are skip or zero: the sign of a search collapsing onto them."""
        return sum(info.parameter_free for info in self._layer_infos)

    @property
    def streamable(self) -> bool:
        return all(info.streamable for info in self.op_infos)

    def build_ops(self, vocab_size: int) -> list[nn.Module]:
        """The derived network's ops (``supernet.derived.DerivedNet``), in the order the data
        flows: the input op, the layers, a head over ``vocab_size`` tokens; with the spec's dropout."""
        dims = [
            (self.input, self.feature_dim, self.dim),
            *((layer, self.dim, self.dim) for layer in self.layers),
            (self.head, self.dim, vocab_size),
        ]
        return [ops.build(spec, n_in, n_out, dropout=self.dropout) for spec, n_in, n_out in dims]

    def params(self, vocab_size: int) -> int:
        """Trainable parameters of the derived network with a ``vocab_size`` head: its ops' (the
        network adds none of its own)."""
        return sum(p.numel() for op in self.build_ops(vocab_size) for p in op.parameters() if p.requires_grad)

    def flops_per_second(self) -> float:
        """Multiply-adds per second of audio (``Op.flops`` summed; x2 for FLOPs) of the input op
        and layers: each op's count per input frame times its input frame rate, which the
        strides before it divide. The head is left out: it depends on the vocabulary."""
        total, rate = 0.0, float(self.input_rate)
        for info in [self._input_info, *self._layer_infos]:
            total += info.flops_per_frame * rate
            rate /= info.stride
        return total
