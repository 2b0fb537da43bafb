"""ArchSpec validation, YAML round trip, hand-computed costs, and DerivedNet shapes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from supernet.archspec import ArchSpec, ArchSpecError, parse_fields
from supernet.derived import DerivedNet, Encoder

ARCH_DIR = Path(__file__).resolve().parents[1] / "supernet" / "configs" / "arch"

# Costs below are worked out by hand from this spec (see test_costs_by_hand).
SMALL = {
    "name": "small",
    "features": "fbank",
    "feature_dim": 4,
    "dim": 8,
    "input": "linear",
    "layers": ["tdnn-k3-d1", "tdnn-k3-d2-s2", "skip", "tdnn-k5-d1"],
    "head": "linear",
    "dropout": 0.0,
}


def write(tmp_path: Path, data: dict, name: str = "arch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def with_(**changes) -> dict:
    data = {**SMALL, **changes}
    return {k: v for k, v in data.items() if v is not ...}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_(nmae="x"), "unknown field 'nmae'"),
        (with_(dim=...), "missing field 'dim'"),
        (with_(dim="8"), "field 'dim': expected int, got str"),
        (with_(feature_dim=True), "field 'feature_dim': expected int, got bool"),
        (with_(layers="tdnn-k3-d1"), "field 'layers': expected list"),
        (with_(features="spectrogram"), "field 'features': 'spectrogram' is not one of"),
        (with_(dropout=1.5), "field 'dropout': must be in [0, 1)"),
        (with_(layers=["tdnn-k3-d1", "skip", "tdnn-q3"]), "field 'layers[2]': op spec 'tdnn-q3' rejected"),
        (with_(layers=["tdnn-k3-d1", "warp-k3"]), "field 'layers[1]': op spec 'warp-k3' rejected"),
        (with_(input="skip"), "field 'input': op spec 'skip' rejected"),
        (with_(features="raw"), "field 'feature_dim': dim mismatch: raw audio has feature_dim 1"),
        (with_(features="raw", feature_dim=1), "features: raw needs a learnable front-end"),
        (with_(layers=[{"choice": ["skip", "tdnn-k3-d1"]}]), "field 'layers[0]'"),
        (with_(layers=["res-tdnn-k3-d1-s2"]), "field 'layers[0]': op spec 'res-tdnn-k3-d1-s2' rejected"),
        (with_(layers=["res-tdnn-k3-d1-s2"]), "a residual layer needs stride 1"),
        (with_(layers=["res-skip"]), "use 'skip' to drop a layer"),
    ],
)
def test_errors_name_the_file_and_field(tmp_path, data, expected):
    path = write(tmp_path, data)
    with pytest.raises(ArchSpecError) as err:
        ArchSpec.from_yaml(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_not_a_mapping_and_bad_yaml(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ArchSpecError, match="must be a mapping"):
        ArchSpec.from_yaml(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ArchSpecError, match="not valid YAML"):
        ArchSpec.from_yaml(path)


def test_parse_fields_leaves_layers_to_the_caller():
    # A search space reuses the fields with choices as layers.
    fields = parse_fields(
        with_(layers=[{"choice": ["skip", "tdnn-k3-d1"]}], space="x"), "space.yaml", ("space",)
    )
    assert fields["layers"] == [{"choice": ["skip", "tdnn-k3-d1"]}]
    assert fields["space"] == "x" and fields["head"] == "linear"


def test_defaults_and_yaml_round_trip(tmp_path):
    spec = ArchSpec.from_dict(with_(head=..., dropout=...))
    assert spec.head == "linear" and spec.dropout == 0.0
    spec.to_yaml(tmp_path / "out.yaml")
    again = ArchSpec.from_yaml(tmp_path / "out.yaml")
    assert again == spec and again.to_dict() == spec.to_dict()


def test_costs_by_hand():
    spec = ArchSpec.from_dict(SMALL)
    assert spec.total_stride == 2
    # right halves of the dilated kernels: k3-d1 -> 1, k3-d2 -> 2, k5-d1 -> 2 (after stride 2: x2)
    assert spec.total_lookahead == 1 + 2 + 2 * 2
    assert spec.parameter_free_count == 1 and spec.streamable
    # linear 4*8+8; tdnn k3: 3*8*8+8 conv + 16 LayerNorm (twice); skip 0; tdnn k5: 5*8*8+8+16; head 8*5+5
    assert spec.params(vocab_size=5) == 40 + 216 + 216 + 0 + 344 + 45
    # MACs per second at 100 frames/s: linear 4*8*100; k3 3*64*100; k3-s2 3*64*50; k5 at 50 frames/s
    assert spec.flops_per_second() == 3200 + 19200 + 9600 + 320 * 50


def test_residual_and_width_layers_cost_by_hand(tmp_path):
    """Residual and narrow layers are op specs like any other: the file round-trips, the costs add up."""
    spec = ArchSpec.from_dict(
        with_(layers=["res-tdnn-k3-d1", "tdnn-k3-d2-e4", "skip", "ebranchformer-k3-f2-chunk-c4"])
    )
    spec.to_yaml(tmp_path / "res.yaml")
    assert ArchSpec.from_yaml(tmp_path / "res.yaml") == spec
    assert spec.total_stride == 1 and spec.parameter_free_count == 1 and spec.streamable
    assert spec.total_lookahead == 1 + 2 + 0 + 3  # residual adds none; chunk c4 reads 3 ahead
    # res tdnn k3: 3*8*8+8 conv + 16 BatchNorm; e4: Linear 8*4+4, tdnn 3*4*4+4 + 8, Linear 4*8+8
    ebranch = sum(p.numel() for p in DerivedNet(spec, 5).layers[3].parameters())
    assert spec.params(vocab_size=5) == 40 + 216 + (36 + 60 + 40) + 0 + ebranch + 45
    # MACs per second at 100 frames/s: the residual adds its op's; the narrow one its projections too
    assert spec.layer_infos[0].flops_per_frame == 3 * 64
    assert spec.layer_infos[1].flops_per_frame == 8 * 4 + 3 * 16 + 4 * 8


def test_unbounded_lookahead_is_infinite():
    spec = ArchSpec.from_dict(with_(layers=["tdnn-k3-d1", "blstm"]))
    assert math.isinf(spec.total_lookahead) and not spec.streamable


@pytest.mark.parametrize("name", ["tdnn_d", "conformer_s", "blstm", "budget_tdnn_d", "budget_conformer_s"])
def test_baselines_load(name):
    spec = ArchSpec.from_yaml(ARCH_DIR / f"{name}.yaml")
    assert spec.name == name and spec.params(vocab_size=30) > 100_000


def test_tdnn_d_lies_in_the_st_nas_layout():
    spec = ArchSpec.from_yaml(ARCH_DIR / "tdnn_d.yaml")
    candidates = {f"tdnn-k{k}-d{d}" for k in (3, 5) for d in (1, 2)}
    assert spec.input == "linear" and spec.head == "linear" and spec.dim == 256
    assert spec.layers[3] == "tdnn-k3-d1-s3"
    assert all(layer in candidates for layer in spec.layers[:3] + spec.layers[4:])
    assert spec.total_stride == 3


def test_derived_net_shapes_and_lengths():
    torch.manual_seed(0)
    net = DerivedNet(ArchSpec.from_dict(SMALL), vocab_size=5).eval()
    lengths = torch.tensor([20, 13, 7])
    features = torch.randn(3, 20, 4) * (torch.arange(20)[None, :, None] < lengths[:, None, None])
    log_probs, out_lengths = net(features, lengths)
    assert log_probs.shape == (3, 10, 5) and log_probs.dtype == torch.float32
    assert out_lengths.tolist() == [10, 7, 4]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 10), atol=1e-5)
    # Padding does not leak: the short utterance alone gives the same valid outputs.
    alone, _ = net(features[2:, :7], lengths[2:])
    assert torch.allclose(alone[0], log_probs[2, :4], atol=1e-5)


def test_encoder_takes_any_op_like_modules():
    class Halve(torch.nn.Module):
        def forward(self, x, lengths):
            return x[:, ::2], (lengths + 1) // 2

    class Proj(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x, lengths):
            return self.linear(x), lengths

    log_probs, lengths = Encoder(Halve(), [Halve()], Proj())(torch.randn(2, 9, 4), torch.tensor([9, 5]))
    assert log_probs.shape == (2, 3, 3) and lengths.tolist() == [3, 2]
