"""Shipped files are found by name (spaces, baselines, latency tables); a path always works too,
and a name that is neither is a one-line error listing the shipped names."""

from __future__ import annotations

import pytest
import yaml

from supernet.archspec import ArchSpec
from supernet.commands.cli import main
from supernet.errors import UserError
from supernet.latency import LatencyTable
from supernet.shipped import (
    CONFIGS_DIR,
    NotShippedError,
    default_config,
    resolve,
    shipped_names,
    shipped_path,
)
from supernet.space import SearchSpace


def test_the_shipped_names():
    assert {"st_nas", "conformer", "conformer_depth", "mixed"} <= set(shipped_names("space"))
    assert {"tdnn_d", "conformer_s", "blstm"} <= set(shipped_names("arch"))
    assert {"st_nas_cpu", "conformer_cpu"} <= set(shipped_names("lut"))
    assert default_config("search").is_file() and default_config("retrain").is_file()
    assert shipped_path("arch", "tdnn_d") == CONFIGS_DIR / "arch" / "tdnn_d.yaml"


def test_a_baseline_a_space_and_a_table_load_by_name():
    assert ArchSpec.load("tdnn_d") == ArchSpec.from_yaml(CONFIGS_DIR / "arch" / "tdnn_d.yaml")
    assert ArchSpec.load("conformer_s").name == "conformer_s"
    assert SearchSpace.load("st_nas").name == "st_nas"
    table = LatencyTable.load("st_nas_cpu")
    assert table.source == str(CONFIGS_DIR / "lut" / "st_nas_cpu.json") and table.entries


@pytest.mark.parametrize(
    ("kind", "load", "listed"),
    [
        (
            "arch",
            ArchSpec.load,
            "(blstm, budget_conformer_s, budget_open_conformer_s, budget_open_tdnn_d, budget_tdnn_d, conformer_s, tdnn_d)",
        ),
        (
            "space",
            SearchSpace.load,
            "budget, budget_open, budget_rate, conformer, conformer_depth, mixed, st_nas",
        ),
        ("lut", LatencyTable.load, "st_nas_cpu"),
    ],
)
def test_neither_a_file_nor_a_shipped_name_lists_the_names(kind, load, listed):
    with pytest.raises(NotShippedError) as err:
        load("tdnn_e")
    assert "'tdnn_e': no such file, and not a shipped" in str(err.value) and listed in str(err.value)
    assert isinstance(err.value, UserError) and isinstance(err.value, FileNotFoundError)
    with pytest.raises(NotShippedError, match="no_such_dir/tdnn_d"):  # a path is never a name
        resolve(kind, "no_such_dir/tdnn_d")


def test_a_local_file_wins_over_the_shipped_name(tmp_path, monkeypatch):
    local = {**ArchSpec.load("tdnn_d").to_dict(), "name": "mine", "dim": 64}
    (tmp_path / "tdnn_d").write_text(yaml.safe_dump(local))
    monkeypatch.chdir(tmp_path)
    assert ArchSpec.load("tdnn_d").name == "mine"


def test_a_wrong_name_on_the_command_line_is_one_line(capsys):
    assert main(["space", "info", "st_naz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "supernet space: error: search space 'st_naz'" in err and "st_nas" in err


@pytest.mark.parametrize("command", ["search", "retrain"])
def test_the_lightning_commands_help_names_the_command(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: supernet {command} [-c CONFIG]")


def test_a_features_flag_says_where_the_features_are_set(tmp_path, capsys):
    argv = ["retrain", "--arch", "tdnn_d", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run")]
    assert main([*argv, "--data.features", "kaldi_fbank"]) == 2
    assert "set `features:` in the architecture or space YAML" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_bad_space_file_is_named_without_the_parsers_wrapping(tmp_path, capsys):
    """The space is read to fill a linked option (the features): jsonargparse wrapped its error in
    "Call to compute_fn of link ... failed:"; the user sees the file and field first."""
    space = tmp_path / "bad.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                **SearchSpace.from_yaml("st_nas").to_dict(),
                "layers": [{"choice": ["tdnn-k3-d1", "tdnn-k3-q2"]}],
            }
        )
    )
    argv = [
        "search",
        "--data",
        str(tmp_path / "none"),
        "--model.space",
        str(space),
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"supernet search: error: {space}: field 'layers[0].choice[1]'"), err
    assert "compute_fn" not in err and "--help" not in err


def test_demo_refuses_a_table_that_cannot_price_its_networks_before_building_anything(tmp_path, capsys):
    argv = ["demo", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--dim", "32"]
    assert main([*argv, "--lut", "st_nas_cpu"]) == 2  # the shipped table holds width 256 only
    assert "no entry for op" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_demo_runs_the_whole_pipeline_at_tiny_size_and_logs_to_wandb_offline(tmp_path, capsys, monkeypatch):
    """The README's first command, shrunk: corpus, search, extract, both retrains, the table; the
    default W&B logger writes offline runs (no account), and a second demo into the folder is refused."""
    import json

    from supernet.space import SearchSpace

    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    argv = ["demo", "--data", str(tmp_path / "data"), "--minutes", "0.6", "--out", str(out), "--dim", "16",
            "--search-epochs", "2", "--warmup-epochs", "1", "--retrain-epochs", "1", "--logger", "wandb"]  # fmt: skip
    assert main(argv) == 0
    rows = {r["model"]: r for r in json.loads((out / "demo.json").read_text())["rows"]}
    assert set(rows) == {"searched", "tdnn_d"}
    assert rows["tdnn_d"]["layers"] == " ".join(ArchSpec.load("tdnn_d").layers)
    derived = ArchSpec.load(out / "search" / "arch.yaml")
    SearchSpace.from_yaml(out / "space.yaml").index_of(derived)  # the pick is a path of the space
    for row in rows.values():
        assert row["params"] > 0 and 0 <= row["test_cer"] and 0 <= row["dev_cer"]
    for stage in ("search", "derived", "baseline"):
        assert list((out / stage / "wandb").glob("offline-run-*/run-*.wandb")), stage
    printed = capsys.readouterr().out
    assert "searched" in printed and "tdnn_d" in printed
    assert main(argv) == 2  # the folder holds a demo run now
    assert "--overwrite" in capsys.readouterr().err
