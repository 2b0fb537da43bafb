"""scripts/family_predictor.py: a predictor fitted on earlier reports only, judged on later ones
(known answers on made-up networks; the real figures need the retrained reports)."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import family_predictor as fp  # noqa: E402
from ranking_breakdown import ridge_predict  # noqa: E402

from supernet.study.rank import kendall_tau  # noqa: E402


def _spec(layers):
    from supernet.archspec import ArchSpec

    base = ArchSpec.from_yaml(Path(__file__).parent.parent / "docs/study/h200_three/arch/budget_tdnn_d.yaml")
    return ArchSpec.from_dict({**base.to_dict(), "layers": layers})


def test_a_network_belongs_to_the_first_report_that_retrained_it_whatever_its_name(tmp_path):
    x, y, z = (_spec(["tdnn-k3-d1"] * k) for k in (1, 2, 3))
    row = lambda name, spec, dev: {"name": name, "arch": spec.to_dict(), "cer": {"dev": dev}}  # noqa: E731
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"rows": [row("x", x, 0.2), row("y", y, 0.3), row("z", z, None)]}))
    second.write_text(json.dumps({"rows": [row("y-again", y, 0.3), row("z", z, 0.25)]}))
    # y was retrained first in a.json (under another name in b.json); z has no dev CER in a.json
    assert fp.first_report([first, second], {"x": x, "y": y, "z": z}) == {"x": 0, "y": 0, "z": 1}


def test_a_held_out_report_is_predicted_from_the_earlier_ones_alone():
    # the 8 earlier networks' CER follows feature 0 (feature 1 is noise there); the 4 later ones'
    # follows feature 1 against feature 0's order: a fit on the earlier ones alone ranks the later
    # ones by feature 0, exactly backwards (tau -1); a fit that saw them would not
    earlier = [[0, 3], [1, 1], [2, 0], [3, 2], [4, 1], [5, 3], [6, 0], [7, 2]]
    later = [[0, 0], [1, 1], [2, 2], [3, 3]]
    features = torch.tensor(earlier + later, dtype=torch.float64)
    names = [f"n{i}" for i in range(len(features))]
    cer = [0.2 + 0.01 * a for a, _ in earlier] + [0.3 - 0.02 * b for _, b in later]
    source = {n: (0 if i < len(earlier) else 1) for i, n in enumerate(names)}
    rows = fp.held_out_taus({"counts": features}, names, dict(zip(names, cer)), source, ridge=1e-6)
    assert [r[:2] for r in rows] == [(1, 4), ("later", 4)]
    assert rows[0][2]["counts"] == pytest.approx(-1.0)
    target = torch.tensor(cer, dtype=torch.float64)
    leaked = ridge_predict(features, target, features[len(earlier) :], 1e-6)
    assert kendall_tau(leaked.tolist(), cer[len(earlier) :]) != pytest.approx(-1.0)  # the test can tell


def test_ridge_predictions_follow_the_fitted_direction():
    train = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    cer = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    predicted = ridge_predict(train, cer, torch.tensor([[5.0], [-1.0]], dtype=torch.float64), 1e-9)
    assert predicted[0] < predicted[1]
    assert float(predicted[1] - predicted[0]) == pytest.approx(0.6, rel=1e-6)  # slope -0.1 over 6


def test_attention_blocks_at_any_rate_and_the_seed_ceiling_have_known_answers():
    """``any_attention``: a conformer or E-Branchformer at full rate, downsampled or slim, not a
    TDNN; ``seed_ceiling``: seeds that agree rank at 1, seeds that reverse one pair lower, and no
    per-seed CER gives None."""
    from ranking_breakdown import any_attention, full_rate_attention, seed_ceiling

    assert any_attention("res-down2-conformer-k15-f4-h4-rel") and not full_rate_attention(
        "res-down2-conformer-k15-f4-h4-rel"
    )
    assert any_attention("res-conformer-k15-f4-rel-e96") and any_attention("ebranchformer-k15-f4-rel")
    assert not any_attention("res-tdnn-k3-d2-e384") and not any_attention("skip")
    agree = {
        n: {"cer_by_seed": {"dev": [c, c + 0.01, c + 0.02]}} for n, c in (("a", 0.1), ("b", 0.2), ("c", 0.3))
    }
    assert seed_ceiling(agree, ["a", "b", "c"]) == pytest.approx(1.0)
    flipped = {**agree, "c": {"cer_by_seed": {"dev": [0.15, 0.31, 0.32]}}}  # seed 0 puts c before b
    assert seed_ceiling(flipped, ["a", "b", "c"]) < 1.0
    assert seed_ceiling({n: {} for n in "abc"}, ["a", "b", "c"]) is None


def test_layers_dropped_before_the_subsampling_layer_are_counted_there_only():
    from ranking_breakdown import dropped_before_subsampling

    conformer_s = ["skip", "skip", "skip", "tdnn-k3-d1-s3", "conformer-k15-f4-h4-rel", "skip", "skip"]
    assert dropped_before_subsampling(_spec(conformer_s)) == 3  # the skips after the stride do not count
    assert dropped_before_subsampling(_spec(["tdnn-k3-d1", "skip", "tdnn-k3-d1-s3", "skip"])) == 1
    assert dropped_before_subsampling(_spec(["skip", "tdnn-k3-d1"])) == 0  # no stride: nothing counted
    # a stride the op declares without an s token (conv2d4x subsamples by 4) counts as well
    assert dropped_before_subsampling(_spec(["skip", "skip", "conv2d4x", "skip", "tdnn-k3-d1"])) == 2
