"""A table calibrated on whole networks, and a check that tells a bad table from a noisy machine."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import yaml

from supernet.commands.cli import main
from supernet.commands.latency_check import verdict
from supernet.latency import LatencyTable, profile_space
from supernet.latency.calibration import apply, fit, spanning_archs
from supernet.space import SearchSpace
from tests.test_latency import TINY, hand_table, settings


def test_fit_finds_a_known_line_and_falls_back_to_a_ratio_when_the_spread_is_narrow():
    line = fit([1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 7.0, 9.0])  # measured = 2 x sum + 1
    assert line["scale"] == pytest.approx(2.0) and line["offset_ms"] == pytest.approx(1.0)
    assert line["fit_mape"] == pytest.approx(0.0, abs=1e-12) and line["raw_mape"] > 0.5
    assert line["networks"] == 4
    narrow = fit([10.0, 10.5, 11.0], [12.0, 12.6, 13.2])  # spread 1.1: one ratio, 1.2
    assert narrow["offset_ms"] == 0.0 and narrow["scale"] == pytest.approx(1.2)
    assert apply(None, 5.0) == 5.0 and apply(line, 5.0) == pytest.approx(11.0)
    assert (line["kind"], narrow["kind"]) == ("line", "ratio")
    # noise that tilts a line below zero never gives a negative scale, nor a worse table
    tilted = fit([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.5])
    assert tilted["kind"] != "line" and tilted["scale"] > 0 and tilted["fit_mape"] <= tilted["raw_mape"]
    same = fit([2.0, 3.0], [2.0, 3.0])
    assert (same["kind"], same["scale"], same["offset_ms"]) == ("none", 1.0, 0.0)


def test_a_calibrated_table_predicts_through_its_line_and_its_expectation_stays_exact():
    space = SearchSpace(TINY)
    table, _ = hand_table(space, settings())
    spec = space.derive({"a": 1, "b": 2})
    raw = table.predict(spec)
    table.settings["calibration"] = {"scale": 1.5, "offset_ms": 2.0}
    assert table.op_sum(spec) == raw and table.predict(spec) == pytest.approx(1.5 * raw + 2.0)
    assert table.predict(spec, "params") == LatencyTable(settings(), table.entries).predict(spec, "params")
    # the expectation under uniform alphas is the mean of every path's calibrated prediction
    paths = [dict(zip(["a", "b"], c)) for c in itertools.product(range(2), range(3))]
    mean = sum(table.predict(space.derive(p)) for p in paths) / len(paths)
    uniform = {"a": torch.full((2,), 0.5), "b": torch.full((3,), 1 / 3)}
    assert float(table.costs(space).expected(uniform)) == pytest.approx(mean)


def test_spanning_archs_run_from_the_cheapest_to_the_dearest_path():
    space = SearchSpace(TINY)
    picked = spanning_archs(space, settings(), 3, seed=0)
    flops = [spec.flops_per_second() for spec in picked]
    assert len(picked) == 3 and flops == sorted(flops) and flops[0] < flops[-1]
    everything = [space.derive(dict(zip(["a", "b"], c))) for c in itertools.product(range(2), range(3))]
    all_flops = [spec.flops_per_second() for spec in everything]
    assert flops[0] == min(all_flops) and flops[-1] == max(all_flops)  # 64 draws meet both ends


def test_profile_fits_the_line_on_the_networks_it_timed():
    table = profile_space(
        SearchSpace(TINY), settings(), warmup=0, repeats=1, rounds=1, progress=False, calibrate=3
    )
    line = table.calibration
    assert line["networks"] == 3 + 3  # three covering networks (the widest edge) and three spanning
    assert line["scale"] > 0 and line["fit_mape"] <= line["raw_mape"] + 1e-12
    uncalibrated = profile_space(
        SearchSpace(TINY), settings(), warmup=0, repeats=1, rounds=1, progress=False, calibrate=0
    )
    assert uncalibrated.calibration is None


def test_verdict_tells_the_table_from_the_machine():
    assert "holds" in verdict({"within_10pct": 0.95, "mape": 0.04})
    assert "--noise" in verdict({"within_10pct": 0.5, "mape": 0.12})
    noisy = {"within_10pct": 0.5, "mape": 0.12, "self_within_10pct": 0.5, "self_mape": 0.10}
    assert "noise, not the table" in verdict(noisy)
    bad = {"within_10pct": 0.2, "mape": 0.25, "self_within_10pct": 1.0, "self_mape": 0.01}
    assert "profile again" in verdict(bad)
    # the machine's own error as large as the table's, by the mean and by the count: noise
    steady = {"within_10pct": 0.88, "mape": 0.084, "self_within_10pct": 0.95, "self_mape": 0.090}
    assert "comparable to" in verdict(steady) and "noise, not the table" in verdict(steady)
    # a machine that agrees with itself everywhere while every network misses: the table, whatever the means say
    shifted = {"within_10pct": 0.0, "mape": 0.11, "self_within_10pct": 1.0, "self_mape": 0.06}
    assert "profile again" in verdict(shifted) and "0% within 10%" in verdict(shifted)


def test_the_commands_default_to_one_thread_and_the_cpu_clock_and_report_the_noise_floor(tmp_path, capsys):
    space_path = tmp_path / "tiny.yaml"
    space_path.write_text(yaml.safe_dump(TINY))
    lut = tmp_path / "lut.json"
    quick = ["--seconds", "0.2", "--vocab", "5", "--warmup", "0", "--repeats", "1", "--rounds", "1"]
    assert main(["profile", "--space", str(space_path), *quick, "--calibrate", "2", "-o", str(lut)]) == 0
    settings_ = json.loads(lut.read_text())["settings"]
    assert (
        settings_["threads"] == 1
        and settings_["clock"] == "cpu"
        and settings_["calibration"]["networks"] == 5
    )
    assert "calibration: measured = " in capsys.readouterr().out
    check = ["latency-check", "--lut", str(lut), "--space", str(space_path), "--n", "3", "--repeats", "1"]
    assert main([*check, "--noise", "2", "--rounds", "1"]) == 0
    out = dict(
        line.split(": ", 1)
        for line in capsys.readouterr().out.splitlines()
        if ": " in line and line[0] != " "
    )
    assert 0.0 <= float(out["self_within_10pct"].split()[0]) <= 1.0 and float(out["self_mape"]) >= 0.0
    assert "2 networks again" in out["self_within_10pct"] and out["verdict"]


def test_cpu_measurements_pin_the_allocator_and_a_table_of_the_other_regime_is_refused(tmp_path, capsys):
    from supernet.latency.allocator import pin_heap_allocator

    assert pin_heap_allocator() == "heap"  # glibc, as on every machine this project runs on
    assert settings()["allocator"] == "heap"
    space_path = tmp_path / "tiny.yaml"
    space_path.write_text(yaml.safe_dump(TINY))
    table, _ = hand_table(SearchSpace(TINY), settings())
    old = {k: v for k, v in table.settings.items() if k != "allocator"}  # a table made before the pinning
    LatencyTable(old, table.entries).save(tmp_path / "old.json")
    assert LatencyTable.load(tmp_path / "old.json").settings["allocator"] == "system"
    check = ["latency-check", "--lut", str(tmp_path / "old.json"), "--space", str(space_path), "--n", "2"]
    assert main(check) == 2
    assert "'allocator' differs" in capsys.readouterr().err
