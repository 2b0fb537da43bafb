"""scripts/route_tally.py: a recipe's tally over its supernets from the kept files, on the committed
h200_route folders (known figures, no training)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import route_tally  # noqa: E402

from supernet.space import SearchSpace  # noqa: E402

STUDY = ROOT / "docs/study/h200_route"


def _tally(capsys, *folders: str) -> str:
    sys.argv = ["route_tally.py", str(STUDY / "study.json"), *(str(STUDY / f) for f in folders),
                "--space", str(STUDY / "space.yaml")]  # fmt: skip
    route_tally.main()
    return capsys.readouterr().out


def test_the_shipped_route_tally_is_the_one_the_results_quote(capsys):
    """Eleven x3 supernets (sessions 27 and 31): their picks come from YAMLs, a select.json (seed
    4's 0.422 ms pick) and retrains whose YAMLs never came back (session 27's seeds 3 and 5), and
    two networks were each picked by two supernets, retrained once. Session 31's seed-0 pick at
    0.422 ms was retrained only in session 34, by x8's call (x8's seeds 0 and 2 picked it too)."""
    folders = [f"fullrate_x3/seed{s}" for s in (0, 1, 2, 3, 4, 5)] + [f"size_prior/seed{s}" for s in range(6)]
    out = _tally(capsys, *folders)
    assert "met by 8 of 11 supernets, mean +7.0%; once per network: met by 6 of 9 networks, mean +6.9%" in out
    assert "met by 5 of 5 supernets, mean +15.9%; once per network: met by 4 of 4 networks" in out
    assert "| size_prior-seed0 | 0.5xbudget_conformer_s | 2.06 M | 20.44 | 22.47 | +14.5% | met |" in out
    assert "| size_prior-seed4 | 0.5xbudget_conformer_s | 1.69 M | 20.28 | 21.99 | +16.3% | met |" in out
    assert "| fullrate_x3-seed3 | budget_conformer_s | 4.04 M | 18.01 | 19.24 | +10.1% | met |" in out
    assert "never retrained (left out): size_prior-seed1-0.5xbudget_conformer_s," in out
    # the rule's figure for x3 (docs/results.md, session 29): 18.73 over session 27's seeds 0-4
    assert "mean dev CER (how recipes are compared): 18.73% over 5 supernets" in _tally(
        capsys, *(f"fullrate_x3/seed{s}" for s in range(5))
    )


def test_a_supernet_own_retrain_counts_before_a_repeat_elsewhere(capsys):
    """x5's seed-3 network was retrained again in session 29 (19.53 / 21.26); its own gives +0.3%."""
    out = _tally(capsys, "fullrate_x5/seed2", "fullrate_x5/seed3")
    assert "| fullrate_x5-seed3 | budget_conformer_s | 3.00 M | 19.53 | 21.34 | +0.3% (missed) |" in out
    assert "met by 1 of 2 supernets, mean +4.5%" in out


def test_a_folder_without_picks_is_refused(tmp_path):
    (tmp_path / "arch").mkdir()
    with pytest.raises(SystemExit, match="no pick kept"):
        route_tally.supernet_picks([tmp_path], {"budget": 1.0}, SearchSpace.load(STUDY / "space.yaml"))


def test_each_supernet_tau_is_the_one_its_device_run_printed(capsys):
    """Session 33's six supernets of full-rate attention 5x with the narrow block 1x: each tau is
    recomputed from the kept scores.json and equals the line route_seed.py printed on the device
    (seed 3: "tau 0.505, within a budget 0.489"); seeds 3 and 4 picked networks that session 29's
    recipe had picked and retrained too, and the recipe's own retrain, beside the folder, counts."""
    folders = [f"fullrate_x5_e96_1x/seed{s}" for s in range(6)]
    out = _tally(capsys, *folders)
    log = (STUDY / "fullrate_x5_e96_1x/seed3/log.txt").read_text()
    assert "tau 0.505, within a budget 0.489" in log
    assert "| +0.7% (missed) | met | 0.505 (0.489) | " in out
    assert (
        "fullrate_x5_e96_1x/retrain_0844/retrain_archs.json"
        in out.split("| +0.7% (missed)")[1].splitlines()[0]
    )
    assert "tau 0.389 on average over 6 supernets, 2 at 0.5 or more; within a budget 0.420" in out
    assert "mean dev CER (how recipes are compared): 18.75% over 5 supernets" in out


def test_x8_tally_is_the_one_the_results_quote(capsys):
    """Session 34's full-rate attention 8x (the narrow block and the downsampled ones 1x): the
    figures docs/results.md quotes, from the retrains of its own call and seed 1's network, which
    session 29's recipe had retrained (x8's own call did not retrain it again)."""
    out = _tally(capsys, *(f"fullrate_x8/seed{s}" for s in range(6)))
    assert "tau 0.453 on average over 6 supernets, 1 at 0.5 or more; within a budget 0.427" in out
    assert "met by 5 of 5 supernets, mean +8.5%" in out
    assert "met by 6 of 6 supernets, mean +13.8%" in out
    assert "| fullrate_x8-seed1 | budget_conformer_s | 3.56 M | 17.79 |" in out
    assert "never retrained (left out): fullrate_x8-seed5-budget_conformer_s" in out
    # the rule's figures, on the seeds x3's are quoted for: 0.844 ms seeds 0-4, 0.422 ms seeds 2, 4, 5
    assert "mean dev CER (how recipes are compared): 18.10% over 5 supernets" in out
    low = _tally(capsys, *(f"fullrate_x8/seed{s}" for s in (2, 4, 5)))
    assert "mean dev CER (how recipes are compared): 21.06% over 3 supernets" in low


def test_scores_that_cannot_rank_are_refused_by_file(tmp_path):
    """Every network scored alike: tau is undefined, and the file is named rather than a blank figure."""
    import json

    study = json.loads((STUDY / "study.json").read_text())
    names = {r["name"] for r in study["rows"]}
    scores = {n: {"loss": 1.0, "cer": 0.5} for n in names}
    (tmp_path / "scores.json").write_text(json.dumps({"groups": {"route": {"scores": scores}}}))
    with pytest.raises(SystemExit, match="scores.json: scores too few or all tied"):
        route_tally.supernet_taus([tmp_path], study)
