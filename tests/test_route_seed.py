"""scripts/device/route_seed.py's scoring of a study's networks (the GPU part, the supernet, is
faked): tau over every network, first choices without the study's own picks, the scores kept."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts" / "device"))
import route_seed  # noqa: E402

CER = {"pick-b": 0.10, "random-b-0": 0.20, "random-b-1": 0.30, "base": 0.40}
LOSS = {"pick-b": 1.0, "random-b-0": 3.0, "random-b-1": 2.0, "base": 4.0}


def test_score_ranks_every_network_and_leaves_the_study_picks_out_of_first_choice(
    tmp_path, monkeypatch, capsys
):
    report = tmp_path / "study.json"
    kinds = {"pick-b": "searched", "base": "baseline"}
    report.write_text(json.dumps({"rows": [{"name": n, "kind": kinds.get(n, "random")} for n in CER]}))
    monkeypatch.setattr(
        route_seed, "retrained", lambda path: ({n: n for n in CER}, CER, {n: ["b"] for n in CER})
    )
    monkeypatch.setattr(
        route_seed.rank,
        "supernet_scores",
        lambda ckpt, data, archs, batches: {n: {"loss": LOSS[n], "cer": 0.5} for n in archs},
    )
    study = {"ranking": {"batches": 2, "metric": "loss"}}
    route_seed.score(report, tmp_path / "last.ckpt", tmp_path, tmp_path, study)
    line = capsys.readouterr().out
    # 6 pairs, one discordant (random-b-0 scored worse than random-b-1): tau (5 - 1) / 6
    assert "tau 0.667" in line
    # the pick scores best but is left out: random-b-1 comes first, 2nd of 3 by CER, 10 points behind
    assert "b random-b-1 (2 of 3, +10.0 points)" in line
    kept = json.loads((tmp_path / "scores.json").read_text())["groups"]["route"]["scores"]
    assert set(kept) == set(CER)
