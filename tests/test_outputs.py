"""Output files of evaluate, profile, pareto and latency-check: an unwritable path fails before
the long work, naming the path in one line; a write that fails or is killed leaves no half file."""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from supernet.commands import evaluate, latency_check, pareto, profile
from supernet.errors import UserError
from supernet.outputs import replaced_when_done


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A folder path below a plain file: no one can create it, root included."""
    (tmp_path / "afile").write_text("a file, not a folder")
    return tmp_path / "afile"


def parse(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.configure_parser(parser)
    return parser.parse_args(argv)


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert str(path) in message and "\n" not in message


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def never(calls: list, name: str):
    def record(*args, **kwargs):
        calls.append(name)
        raise AssertionError(f"{name} ran although its output cannot be written")

    return record


# ---------------------------------------------------------------- unwritable outputs fail first


def test_evaluate_checks_the_report_path_before_evaluating(unwritable, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(evaluate, "evaluate", never(calls, "evaluate"))
    report = unwritable / "report.json"
    with pytest.raises(UserError) as err:
        evaluate.main(["model.ckpt", "--data", "corpus", "-o", str(report)])
    assert_one_line_naming(err, report)
    assert calls == []


def test_profile_checks_the_table_path_before_profiling(unwritable, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(profile, "profile_space", never(calls, "profile_space"))
    lut = unwritable / "lut.json"
    with pytest.raises(UserError) as err:
        profile.run(parse(profile, ["--space", "st_nas", "-o", str(lut)]))
    assert_one_line_naming(err, lut)
    assert calls == []


def test_latency_check_checks_the_plot_path_before_measuring(unwritable, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(latency_check, "check", never(calls, "check"))
    monkeypatch.setattr(latency_check, "measure_networks", never(calls, "measure_networks"))
    plot = unwritable / "check.png"
    args = parse(latency_check, ["--lut", "lut.json", "--space", "st_nas", "--n", "2", "--plot", str(plot)])
    with pytest.raises(UserError) as err:
        latency_check.run(args)
    assert_one_line_naming(err, plot)
    assert calls == []


def test_pareto_checks_the_plot_path_before_reading_runs(unwritable, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(pareto, "read_run", never(calls, "read_run"))
    plot = unwritable / "pareto.png"
    with pytest.raises(UserError) as err:
        pareto.run(parse(pareto, ["runs/a", "-o", str(plot)]))
    assert_one_line_naming(err, plot)
    assert calls == []


def test_a_folder_given_as_the_report_is_refused_first(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(evaluate, "evaluate", never(calls, "evaluate"))
    with pytest.raises(UserError, match="is a folder") as err:
        evaluate.main(["model.ckpt", "--data", "corpus", "-o", str(tmp_path)])
    assert_one_line_naming(err, tmp_path)
    assert calls == []


# ---------------------------------------------------------------- whole files or none


def test_evaluate_writes_the_report_whole_or_not_at_all(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluate, "evaluate", lambda *args: {"test": {"test": {"wer": 0.25}}})
    report = tmp_path / "reports" / "report.json"  # its folder is made
    assert evaluate.main(["model.ckpt", "--data", "corpus", "-o", str(report)]) == 0
    assert json.loads(report.read_text()) == {"test": {"test": {"wer": 0.25}}}
    assert json.loads(capsys.readouterr().out) == {"test": {"test": {"wer": 0.25}}}

    def interrupted(*args):  # the process dies between writing and renaming
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    monkeypatch.setattr(evaluate, "evaluate", lambda *args: {"test": {"test": {"wer": 0.5}}})
    with pytest.raises(KeyboardInterrupt):
        evaluate.main(["model.ckpt", "--data", "corpus", "-o", str(report)])
    assert json.loads(report.read_text()) == {"test": {"test": {"wer": 0.25}}}  # the old report
    assert files_in(report.parent) == ["report.json"]


class HalfSavedTable:
    """A latency table whose save is killed halfway through the file."""

    entries: dict = {}
    settings = {"op_offset_ms": 0.0}
    calibration = None

    def save(self, path) -> None:
        Path(path).write_text('{"format": "supernet-lat')
        raise KeyboardInterrupt


class SavedTable(HalfSavedTable):
    def save(self, path) -> None:
        Path(path).write_text('{"entries": {}}\n')


def test_a_killed_profile_leaves_the_old_table_not_half_a_new_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(profile, "SearchSpace", SimpleNamespace(load=lambda name: name))
    lut = tmp_path / "lut.json"
    lut.write_text('{"old": true}\n')
    args = parse(profile, ["--space", "st_nas", "-o", str(lut)])
    monkeypatch.setattr(profile, "profile_space", lambda *args, **kwargs: HalfSavedTable())
    with pytest.raises(KeyboardInterrupt):
        profile.run(args)
    assert lut.read_text() == '{"old": true}\n'
    assert files_in(tmp_path) == ["lut.json"]

    monkeypatch.setattr(profile, "profile_space", lambda *args, **kwargs: SavedTable())
    assert profile.run(args) == 0
    assert lut.read_text() == '{"entries": {}}\n'
    assert files_in(tmp_path) == ["lut.json"]
    assert f"written: {lut}" in capsys.readouterr().out


def test_a_failed_plot_leaves_the_old_plot(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    plot = tmp_path / "pareto.png"
    plot.write_bytes(b"old plot")
    runs = [
        {"run": "a", "wer": 0.3, "params": 10, "latency_ms": 2.0},
        {"run": "b", "wer": 0.2, "params": 20, "latency_ms": 3.0},
    ]
    real_savefig = Figure.savefig

    def savefig_then_die(self, fname, *args, **kwargs):
        real_savefig(self, fname, *args, **kwargs)
        Path(fname).write_bytes(Path(fname).read_bytes()[:50])  # killed mid-file
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", savefig_then_die)
    with pytest.raises(KeyboardInterrupt):
        pareto.plot(runs, [("params", "parameters")], plot)
    assert plot.read_bytes() == b"old plot"
    assert files_in(tmp_path) == ["pareto.png"]

    monkeypatch.setattr(Figure, "savefig", real_savefig)
    pareto.plot(runs, [("params", "parameters")], plot)
    assert plot.read_bytes().startswith(b"\x89PNG")
    result = {"rows": [{"predicted_ms": 1.0, "measured_ms": 1.1}], "mape": 0.1, "within_10pct": 1.0}
    latency_check.plot(result, tmp_path / "check", "title")  # no suffix: PNG, matplotlib's default
    assert (tmp_path / "check").read_bytes().startswith(b"\x89PNG")
    assert files_in(tmp_path) == ["check", "pareto.png"]


def test_replaced_when_done_gives_the_usual_file_mode(tmp_path):
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    with replaced_when_done(tmp_path / "sub" / "out.json") as partial:
        assert partial.parent == tmp_path / "sub" and partial.suffix == ".json"
        partial.write_text("{}")
    written = tmp_path / "sub" / "out.json"
    assert written.read_text() == "{}"
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    assert files_in(tmp_path / "sub") == ["out.json"]
