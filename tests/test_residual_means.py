"""scripts/residual_means.py: a bias against networks with attention, averaged over supernets, on
known figures (the residuals of a score that under-rates one network by a set amount)."""

import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import residual_means  # noqa: E402

TDNN, PLAIN = "res-tdnn-k3-d1", "conformer-k15-f4-h4-rel"
CER = {"a": 0.20, "b": 0.22, "c": 0.24, "d": 0.26, "att": 0.20}


def _arch(name):
    """A network of its own per name (a study counts equal networks once): 1-4 residual TDNNs, or
    one conformer block."""
    tail = [PLAIN] if name == "att" else [TDNN] * (1 + "abcd".index(name))
    layers = ["tdnn-k3-d1", "tdnn-k3-d1", "tdnn-k3-d1", "tdnn-k3-d1-s3", *tail]
    return {"name": name, "features": "fbank", "feature_dim": 80, "dim": 16, "input": "linear",
            "layers": layers, "head": "linear"}  # fmt: skip


def _scores(path, bias):
    """Scores on the line 10 x CER for the attention-free networks; ``att`` ``bias`` above it."""
    scores = {n: {"loss": 10 * c + (bias if n == "att" else 0.0)} for n, c in CER.items()}
    path.write_text(json.dumps({"groups": {"g": {"scores": scores}}}))
    return path


def _expected(bias):
    """The attention network's residual in standard deviations, by the statistics module's own
    least-squares line (an independent computation)."""
    x = list(CER.values())
    y = [10 * c + (bias if n == "att" else 0.0) for n, c in CER.items()]
    slope, intercept = statistics.linear_regression(x, y)
    return (y[-1] - (slope * x[-1] + intercept)) / statistics.pstdev(y)


def test_the_under_rated_group_has_a_positive_mean_and_the_sets_average(tmp_path):
    report = tmp_path / "study.json"
    report.write_text(
        json.dumps({"rows": [{"name": n, "cer": {"dev": c}, "arch": _arch(n)} for n, c in CER.items()]})
    )
    files = [_scores(tmp_path / "s1.json", 0.1), _scores(tmp_path / "s2.json", 0.05)]
    plain = residual_means.mean_residuals(report, files, "loss")["plain attention blocks"]
    assert plain[1]["supernets"] == 2 and plain[0]["supernets"] == 2
    assert plain[1]["mean_sd"] == pytest.approx((_expected(0.1) + _expected(0.05)) / 2)
    assert plain[1]["mean_sd"] > 0.1 and plain[0]["mean_sd"] < 0  # att under-rated, the rest over
    on_the_line = residual_means.mean_residuals(report, [_scores(tmp_path / "s0.json", 0.0)], "loss")
    assert on_the_line["plain attention blocks"][1]["mean_sd"] == pytest.approx(0.0, abs=1e-9)


def test_an_unknown_measure_names_the_file(tmp_path):
    report = tmp_path / "study.json"
    report.write_text(
        json.dumps({"rows": [{"name": n, "cer": {"dev": c}, "arch": _arch(n)} for n, c in CER.items()]})
    )
    with pytest.raises(SystemExit, match="s1.json: no measure 'cer'"):
        residual_means.mean_residuals(report, [_scores(tmp_path / "s1.json", 1.0)], "cer")


def test_a_narrow_wrapped_block_is_full_rate_attention_but_not_plain():
    """``res-conformer-...-e96`` runs at the full frame rate inside a residual wrapper: counted
    among the full-rate blocks, not the plain ones (the grouping that Conformer-S's bias reads),
    and as the one narrow block (a full-width conformer is not narrow)."""
    from ranking_breakdown import residual_groups

    from supernet.archspec import ArchSpec

    narrow = {  # 192 wide, as budget: the e96 block is narrower than the network
        **_arch("a"),
        "name": "narrow",
        "dim": 192,
        "layers": [*_arch("a")["layers"][:4], "res-conformer-k15-f4-rel-e96"],
    }
    specs = [ArchSpec.from_dict(_arch(n)) for n in ("a", "b", "att")] + [ArchSpec.from_dict(narrow)]
    groups = residual_groups([1.0, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.4], specs)
    assert sorted(len(v) for v in groups["full-rate attention blocks"].values()) == [2, 2]
    assert {k: len(v) for k, v in groups["plain attention blocks"].items()} == {0: 3, 1: 1}
    assert {k: len(v) for k, v in groups["narrow attention blocks"].items()} == {0: 3, 1: 1}


def test_averaging_lifts_a_noisy_ranking_but_not_a_shared_bias(tmp_path):
    """Two supernets that each swap another pair: each ranks 4 networks at tau 4/6, their mean at
    4 / sqrt(4 x 6) (a and b tie in it, as c and d do, every other pair in order). Two that swap
    the same pair: the mean ranks as each does."""
    rows = [{"name": n, "cer": {"dev": CER[n]}, "arch": _arch(n)} for n in "abcd"]
    report = tmp_path / "study.json"
    report.write_text(json.dumps({"rows": rows}))

    def scores(name, losses):
        path = tmp_path / name
        path.write_text(
            json.dumps({"groups": {"g": {"scores": {n: {"loss": v} for n, v in zip("abcd", losses)}}}})
        )
        return path

    noisy = residual_means.averaged_tau(
        report, [scores("s1.json", [1, 2, 4, 3]), scores("s2.json", [2, 1, 3, 4])], "loss"
    )
    assert noisy["single"] == pytest.approx([4 / 6, 4 / 6]) and noisy["networks"] == 4
    assert noisy["averaged"] == pytest.approx(4 / (4 * 6) ** 0.5)
    scaled = residual_means.averaged_tau(
        report, [scores("s5.json", [1, 2, 4, 3]), scores("s6.json", [200, 100, 300, 400])], "loss"
    )  # each supernet standardised first: the larger scale does not outvote the other
    assert scaled["averaged"] == pytest.approx(4 / (4 * 6) ** 0.5)
    biased = residual_means.averaged_tau(
        report, [scores("s3.json", [1, 2, 4, 3]), scores("s4.json", [0, 5, 30, 20])], "loss"
    )
    assert biased["averaged"] == pytest.approx(4 / 6) and biased["single"] == pytest.approx([4 / 6, 4 / 6])


def test_a_score_that_rises_with_size_beyond_cer_has_a_size_bias_of_one(tmp_path):
    """Parameters and latency that move orthogonally to dev CER (and to the constant), and a score
    of 10 x CER plus 0.1 x the parameters' pattern: the line through (CER, score) is 10 x CER, the
    residual is that pattern, so it correlates +1 with the parameters and -1 with a latency that
    runs the other way."""
    pattern = {"a": 1, "b": -1, "c": -1, "d": 1}
    rows = [
        {"name": n, "cer": {"dev": CER[n]}, "arch": _arch(n), "params": 2_000_000 + 1_000_000 * pattern[n],
         "predicted_ms": 1.0 - 0.25 * pattern[n]}
        for n in "abcd"
    ]  # fmt: skip
    report = tmp_path / "study.json"
    report.write_text(json.dumps({"rows": rows}))
    scores = {n: {"loss": 10 * CER[n] + 0.1 * pattern[n]} for n in "abcd"}
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"groups": {"g": {"scores": scores}}}))
    bias = residual_means.size_bias(report, [path, path], "loss")
    assert bias["all"]["params"] == pytest.approx(1.0) and bias["all"]["predicted_ms"] == pytest.approx(-1.0)
    assert set(bias) == {"all"}  # the rows name no budget


def test_the_size_bias_within_each_budget_has_its_own_line(tmp_path):
    """Two budgets of four networks, each with its own score offset (the gap between budgets,
    which a line over all of them mixes in), and within each a score that follows the
    parameters' pattern beyond CER in one budget and against it in the other: +1 and -1 within."""
    pattern = {"a": 1, "b": -1, "c": -1, "d": 1}
    rows, scores = [], {}
    for budget, sign, offset in (("big", 1, 0.0), ("half", -1, 5.0)):
        for n in "abcd":
            name = f"{budget}-{n}"
            arch = {**_arch(n), "name": name, "dim": 16 if budget == "big" else 24}  # distinct networks
            rows.append({"name": name, "budget": budget, "cer": {"dev": CER[n]}, "arch": arch,
                         "params": 2_000_000 + 1_000_000 * pattern[n], "predicted_ms": 1.0})  # fmt: skip
            scores[name] = {"loss": offset + 10 * CER[n] + sign * 0.1 * pattern[n]}
    report = tmp_path / "study.json"
    report.write_text(json.dumps({"rows": rows}))
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"groups": {"g": {"scores": scores}}}))
    bias = residual_means.size_bias(report, [path], "loss")
    assert bias["big"]["params"] == pytest.approx(1.0) and bias["half"]["params"] == pytest.approx(-1.0)
    assert bias["big"]["predicted_ms"] is None  # one latency for all: no correlation to give


def test_size_rank_taus_within_a_budget(tmp_path):
    """Four networks of one budget: a score that swaps the two best (tau 4/6), parameters that
    order all four (tau 1), and their rank sum [1, 1, 4, 6] (a and b tie in it: 5 / sqrt(5 x 6))."""
    params = {"a": 4, "b": 3, "c": 2, "d": 1}
    rows = [
        {"name": n, "budget": "big", "cer": {"dev": CER[n]}, "arch": _arch(n), "params": params[n]}
        for n in "abcd"
    ]
    report = tmp_path / "study.json"
    report.write_text(json.dumps({"rows": rows}))
    path = tmp_path / "s.json"
    losses = {"a": 2.0, "b": 1.0, "c": 3.0, "d": 4.0}
    path.write_text(json.dumps({"groups": {"g": {"scores": {n: {"loss": v} for n, v in losses.items()}}}}))
    taus = residual_means.size_rank_taus(report, [path], "loss")["big"]
    assert taus["score"] == pytest.approx(4 / 6) and taus["params"] == pytest.approx(1.0)
    assert taus["rank sum"] == pytest.approx(5 / (5 * 6) ** 0.5)


def test_tied_values_share_their_places():
    assert residual_means.ranks([3.0, 1.0, 3.0, 2.0]) == [2.5, 0.0, 2.5, 1.0]
