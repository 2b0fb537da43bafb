"""scripts/picks_breakdown.py: picks of one budget grouped by what they hold, on known figures."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import picks_breakdown  # noqa: E402

FRONT = ["tdnn-k3-d1", "tdnn-k3-d1", "tdnn-k3-d1", "tdnn-k3-d1-s3"]
PLAIN, NARROW, TDNN = "conformer-k15-f4-h4-rel", "res-conformer-k15-f4-rel-e96", "res-tdnn-k3-d1"


def _row(name, tail, dev):
    arch = {"name": name, "features": "fbank", "feature_dim": 80, "dim": 192, "input": "linear",
            "layers": [*FRONT, *tail], "head": "linear"}  # fmt: skip
    return {"name": name, "cer": {"dev": dev}, "params": len(tail), "arch": arch}


def _files(tmp_path):
    """Two searches, each with a pick for `big` and one for `0.5xbig` (which must not be read as
    `big`'s): the two picks holding the narrow block have the two highest dev CERs of four."""
    rows = {
        "s0": [_row("u-s0-big", [PLAIN, PLAIN], 0.18), _row("u-s0-0.5xbig", [TDNN], 0.30),
               _row("u-s0b-big", [PLAIN, NARROW], 0.21)],
        "s1": [_row("u-s1-big", [PLAIN, TDNN], 0.19), _row("u-s1b-big", [NARROW, TDNN], 0.22)],
    }  # fmt: skip
    paths = []
    for seed, kept in rows.items():
        (tmp_path / "route" / seed).mkdir(parents=True)
        path = tmp_path / "route" / seed / "retrain_archs.json"
        path.write_text(json.dumps({"rows": kept}))
        paths.append(path)
    return paths


def test_picks_of_one_budget_only_named_by_their_folder(tmp_path):
    """`0.5xbig`'s pick is not `big`'s, nor is a size pick beside a route's (size_repick.py)."""
    files = _files(tmp_path)
    kept = json.loads(files[1].read_text())
    kept["rows"].append(_row("u-s1-size-big", [PLAIN, PLAIN], 0.10))
    files[1].write_text(json.dumps(kept))
    picks = picks_breakdown.budget_picks(files, "big")
    assert sorted(p["cer"]["dev"] for p in picks) == [0.18, 0.19, 0.21, 0.22]
    assert {p["name"] for p in picks} == {"route/s0", "route/s1"}


def test_the_group_holding_a_block_and_its_exact_p(tmp_path):
    """2 picks against 2: 6 splits, and the narrow pair's sum is the highest of them (p = 1/6)."""
    table = picks_breakdown.group_table(picks_breakdown.budget_picks(_files(tmp_path), "big"))
    narrow = {r["count"]: r for r in table if r["grouping"] == "narrow attention blocks"}
    assert narrow[1]["picks"] == 2 and narrow[1]["mean"] == pytest.approx(0.215)
    assert narrow[1]["rest_mean"] == pytest.approx(0.185) and narrow[1]["range"] == (0.21, 0.22)
    assert narrow[1]["p_higher"] == pytest.approx(1 / 6) and narrow[1]["p_lower"] == pytest.approx(1.0)
    assert narrow[0]["p_lower"] == pytest.approx(1 / 6)
    plain = {r["count"]: r for r in table if r["grouping"] == "plain attention blocks"}
    assert plain[2]["picks"] == 1 and plain[2]["mean"] == pytest.approx(0.18)
    assert plain[0]["picks"] == 1 and plain[0]["mean"] == pytest.approx(0.22)


def test_the_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    picks = picks_breakdown.budget_picks(_files(tmp_path), "big")
    picks_breakdown.plot(picks, "dev", "narrow attention blocks", tmp_path / "picks.png")
    assert (tmp_path / "picks.png").stat().st_size > 1000


def test_size_tau_orders_the_picks_by_parameters(tmp_path):
    """One pick of 3 parameters at the lowest CER, the other three tied at 2: the three pairs it is
    in agree, the other three tie in parameters only, so tau-b is 3 / sqrt(3 x 6)."""
    picks = picks_breakdown.budget_picks(_files(tmp_path), "big")
    for pick in picks:
        pick["params"] = 3 if pick["cer"]["dev"] == 0.18 else 2
    assert picks_breakdown.size_tau(picks) == pytest.approx(3 / (3 * 6) ** 0.5)
