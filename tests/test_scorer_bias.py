"""scripts/device/scorer_bias.py's arithmetic (the GPU part needs a trained supernet): attention
blocks counted at the full frame rate only, residuals against the fitted line on known figures."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts" / "device"))
import scorer_bias  # noqa: E402

from supernet.archspec import ArchSpec  # noqa: E402


def test_only_full_rate_attention_blocks_count():
    layers = ["tdnn-k3-d1", "conformer-k15-f4-h4-rel", "ebranchformer-k15-f4-rel",
              "res-down2-conformer-k15-f4-h4-rel", "res-conformer-k15-f4-rel-e96", "skip"]  # fmt: skip
    spec = ArchSpec.from_yaml(
        Path(__file__).parent.parent / "docs/study/h200_three/arch/budget_conformer_s.yaml"
    )
    spec = ArchSpec.from_dict({**spec.to_dict(), "layers": layers})
    assert scorer_bias.attention_blocks(spec) == 2


def test_a_group_rated_worse_than_its_cer_has_a_positive_residual():
    cer = {"a": 0.20, "b": 0.22, "c": 0.24, "d": 0.20}
    score = {"a": 2.0, "b": 2.2, "c": 2.4, "d": 2.6}  # d is as good as a but scored worst
    counts = {"a": 0, "b": 0, "c": 0, "d": 1}
    out = scorer_bias.residuals_by_count(score, cer, counts)
    assert out["1"]["networks"] == 1 and out["1"]["mean_residual"] > 1.0
    assert out["0"]["mean_residual"] < 0
    # the residuals of all networks sum to zero around a least-squares line
    total = sum(v["mean_residual"] * v["networks"] for v in out.values())
    assert total == pytest.approx(0.0, abs=1e-9)
