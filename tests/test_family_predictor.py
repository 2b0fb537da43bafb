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


def test_a_network_belongs_to_the_first_report_that_retrained_it(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"rows": [{"name": "x"}, {"name": "y"}]}))
    second.write_text(json.dumps({"rows": [{"name": "y"}, {"name": "z"}]}))
    assert fp.first_report([first, second]) == {"x": 0, "y": 0, "z": 1}


def test_a_linear_truth_is_ranked_exactly_and_only_earlier_reports_train():
    # CER falls with the first count, rises with the second; noise-free, so any fit from enough
    # networks ranks the held-out ones exactly; a feature of pure noise ranks them at chance
    counts = torch.tensor([[a, b] for a in range(4) for b in range(3)], dtype=torch.float64)
    names = [f"n{i}" for i in range(len(counts))]
    cer = {n: 0.3 - 0.02 * float(c[0]) + 0.01 * float(c[1]) for n, c in zip(names, counts)}
    source = {n: (0 if i < 8 else 1) for i, n in enumerate(names)}
    rows = fp.held_out_taus({"counts": counts}, names, cer, source, ridge=1e-6)
    assert [r[:2] for r in rows] == [(1, 4), ("later", 4)]
    assert rows[0][2]["counts"] == pytest.approx(1.0)
    noise = torch.tensor(
        [[0.3], [0.1], [0.9], [0.5], [0.7], [0.2], [0.8], [0.4], [0.6], [0.0], [1.0], [0.35]]
    )
    shuffled = fp.held_out_taus({"noise": noise.double()}, names, cer, source, ridge=1e-6)
    assert shuffled[0][2]["noise"] != pytest.approx(1.0)


def test_ridge_predictions_follow_the_fitted_direction():
    train = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    cer = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    predicted = ridge_predict(train, cer, torch.tensor([[5.0], [-1.0]], dtype=torch.float64), 1e-9)
    assert predicted[0] < predicted[1]
    assert float(predicted[1] - predicted[0]) == pytest.approx(0.6, rel=1e-6)  # slope -0.1 over 6
