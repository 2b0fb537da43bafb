"""scripts/known_picks.py: a select's finalists matched to retrains of the same network."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import known_picks  # noqa: E402

from supernet.space import SearchSpace  # noqa: E402
from tests.test_size_repick import _labels  # noqa: E402


def test_finalists_match_retrains_of_the_same_network_whatever_its_name(tmp_path, capsys):
    space = SearchSpace.load("budget")
    small, large = _labels(space, {"front1": 2}), _labels(space, {})
    finalists = [{"labels": small}, {"labels": large}]
    select = {
        "best": [{"budget": 1.0, "labels": small, "finalists": finalists}, {"budget": 0.5, "labels": small}]
    }
    spec = space.derive(dict(zip(space.edges, large)), name="another-session-pick").to_dict()
    rows = [
        {
            "name": "another-session-pick",
            "arch": spec,
            "retrain_seeds": 3,
            "cer": {"dev": 0.18, "test": 0.19},
        },
        {"name": "cut-short", "arch": spec, "retrain_seeds": 0, "cer": {}},  # no seed finished
    ]
    (tmp_path / "s27").mkdir()
    (tmp_path / "s27" / "retrain_archs.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "s27" / "other.json").write_text(json.dumps({"rows": rows}))  # not a retrain file
    known = known_picks.retrained_rows(tmp_path)
    (entry,) = known_picks.known_finalists(select, space, known)  # the budget without finalists left out
    assert [f["picked"] for f in entry["finalists"]] == [True, False]
    assert entry["finalists"][0]["rows"] == []
    ((path, row),) = entry["finalists"][1]["rows"]
    assert path.name == "retrain_archs.json" and row["name"] == "another-session-pick"
    select_file = tmp_path / "select.json"
    select_file.write_text(json.dumps(select))
    sys.argv = ["known_picks.py", str(select_file), "--space", "budget", "--under", str(tmp_path)]
    known_picks.main()
    out = capsys.readouterr().out
    assert "0 <- select: never retrained" in out
    assert "1: s27/retrain_archs.json another-session-pick (3 seeds): dev 18.00  test 19.00" in out
