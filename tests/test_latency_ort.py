"""onnxruntime latency tables: `profile --runtime onnxruntime [--int8]`, checked in onnxruntime,
refused under another runtime, and read by a search like any table.

One tiny space (an edge of a TDNN or skip, 16 wide) is profiled once, in int8 (static, the
default; tests/test_latency_ort_static.py has the int8 modes): exporting
is the slow part (a few seconds an op on the 2-core machine), and each export is kept for the
process, so the later tests reuse the ops' graphs. No test asserts a time.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

from supernet.commands.cli import main  # noqa: E402
from supernet.latency import (  # noqa: E402
    HardwareObjective,
    LatencyTable,
    LatencyTableError,
    make_settings,
    ort,  # noqa: E402
    space_slots,
)
from supernet.space import SearchSpace  # noqa: E402

SPACE = {
    "name": "tiny_ort",
    "features": "fbank",
    "feature_dim": 8,
    "dim": 16,
    "input": "linear",
    "layers": [{"name": "a", "choice": ["tdnn-k3-d1", "skip"]}],
    "head": "linear",
}
SETTINGS = ["--threads", "1", "--seconds", "0.2", "--vocab", "5", "--warmup", "0", "--repeats", "1"]
DYNAMIC = {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}  # dynamic int8's nodes
STATIC = {"QuantizeLinear", "DequantizeLinear"}  # static int8's (QDQ) nodes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``(space file, int8 onnxruntime table)``."""
    folder = tmp_path_factory.mktemp("ort")
    space = folder / "tiny.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    lut = folder / "lut.json"
    argv = ["profile", "--space", str(space), "--runtime", "onnxruntime", "--int8", *SETTINGS]
    assert main([*argv, "--rounds", "1", "--calibrate", "2", "-o", str(lut)]) == 0
    return space, lut


def op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load_model(str(path)).graph.node}


def test_table_has_every_op_and_names_its_runtime(tiny):
    import onnxruntime

    _, lut = tiny
    data = json.loads(lut.read_text())
    settings = data["settings"]
    assert settings["runtime"] == "onnxruntime" and settings["int8"] is True
    assert settings["int8_mode"] == "static"  # as `supernet export --int8`
    assert settings["onnxruntime"] == onnxruntime.__version__ and settings["opset"] == 18
    assert settings["device"] == "cpu" and settings["clock"] == "cpu"  # one thread: its CPU time
    table = LatencyTable.load(lut)
    for position in space_slots(SearchSpace(SPACE), table.settings)[0]:
        for slot in position:
            entry = table.entries[slot.key]
            assert entry["ms"] >= 0 and entry["onnx_bytes"] > 0


def test_check_measures_in_onnxruntime_with_int8_networks(tiny, monkeypatch, capsys):
    """The check runs each network exported whole, quantised as the table's ops were."""
    space, lut = tiny
    runners = []

    def recording(archs, settings, graph):
        made = real(archs, settings, graph)
        runners.extend(made)
        return made

    real = ort.ort_runners
    monkeypatch.setattr(ort, "ort_runners", recording)
    capsys.readouterr()
    argv = ["latency-check", "--lut", str(lut), "--space", str(space), "--n", "1", "--seed", "1"]
    assert main([*argv, "--repeats", "1", "--noise", "0"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "int8" in out and "exported graphs" in out
    assert "within_10pct: " in out
    assert "static int8" in out
    assert runners and all(r.graph == "exported" and r.settings["int8_mode"] == "static" for r in runners)
    for runner in runners:  # the network's convolutions and linears run in int8, quantised statically
        assert STATIC <= op_types(runner.net_file) and not op_types(runner.net_file) & DYNAMIC


def test_int8_quantises_the_ops_graphs_and_fp32_does_not(tiny):
    """The same op (the 8->16 input linear) in static int8, dynamic int8 and fp32 tables (the fp32
    graph is the one the int8 profile quantised: no new export)."""
    space = SearchSpace(SPACE)
    arch = space.derive({"a": 1}, "skip_path")
    files = {}
    for mode in ("static", "dynamic", None):
        settings = make_settings(
            threads=1, seconds=0.2, vocab=5, runtime="onnxruntime", int8=mode is not None, int8_mode=mode
        )
        runner = ort.OrtNetworkRunner(arch, settings)
        assert runner.export() == []
        files[mode] = runner.op_files[0]
    assert STATIC <= op_types(files["static"]) and not op_types(files["static"]) & DYNAMIC
    assert op_types(files["dynamic"]) & DYNAMIC and not op_types(files["dynamic"]) & STATIC
    assert not op_types(files[None]) & (STATIC | DYNAMIC) and "MatMul" in op_types(files[None])


def test_another_runtime_is_refused_naming_the_key(tiny, tmp_path, capsys):
    space, lut = tiny
    argv = ["latency-check", "--lut", str(lut), "--space", str(space), "--n", "1"]
    assert main([*argv, "--runtime", "torch"]) == 2
    err = capsys.readouterr().err
    assert "'runtime' differs: table has 'onnxruntime', this run has 'torch'" in err
    assert "supernet profile --runtime torch" in err
    torch_table = LatencyTable(make_settings(threads=1, seconds=0.2, vocab=5), {})
    torch_table.save(tmp_path / "torch.json")
    check_torch = ["latency-check", "--lut", str(tmp_path / "torch.json"), "--space", str(space)]
    assert main([*check_torch, "--runtime", "onnxruntime"]) == 2
    assert "'runtime' differs: table has 'torch', this run has 'onnxruntime'" in capsys.readouterr().err
    assert main([*check_torch, "--int8"]) == 2  # int8 is onnxruntime's: not a torch table's
    assert "'int8' differs" in capsys.readouterr().err
    table = LatencyTable.load(lut)
    with pytest.raises(LatencyTableError, match="'onnxruntime' differs"):
        table.check({"onnxruntime": "0.0.1"})
    old = {k: v for k, v in torch_table.settings.items() if k not in ("runtime", "int8", "onnxruntime")}
    assert LatencyTable(old, {}).settings["runtime"] == "torch"  # tables written before runtimes


def test_settings_that_onnxruntime_cannot_measure_are_refused():
    with pytest.raises(ValueError, match="CPU in fp32"):
        make_settings(dtype="bf16", runtime="onnxruntime")
    with pytest.raises(ValueError, match="--runtime onnxruntime"):
        make_settings(int8=True)
    with pytest.raises(ValueError, match="runtime"):
        make_settings(runtime="tensorrt")


def test_a_search_and_select_read_the_table_unchanged(tiny):
    """A latency penalty and a budgeted path from an onnxruntime table, as from any table."""
    _, lut = tiny
    space = SearchSpace(SPACE)
    table = LatencyTable.load(lut)
    costs = table.costs(space)
    assert len(costs.edges["a"]) == 2
    for choice in (0, 1):
        assert costs.at({"a": choice}) == pytest.approx(table.predict(space.derive({"a": choice})))
    cheap = min((0, 1), key=lambda i: costs.edges["a"][i])  # which one is timed cheaper
    objective = HardwareObjective.from_options(
        space, 5, latency_table=str(lut), penalty="hinge", budget=costs.at({"a": cheap}), penalty_lambda=1.0
    )
    alphas = torch.zeros(2)
    alphas[1 - cheap] = 2.0  # the dearer op is the most probable, but over the budget
    assert objective.choose_path({"a": alphas}) == {"a": cheap}
    assert float(objective.loss(torch.tensor(1.0), {"a": torch.softmax(alphas, 0)})) > 1.0  # over budget


def test_ops_that_do_not_export_are_named_before_anything_is_timed(tiny, tmp_path, monkeypatch, capsys):
    """Every shipped op family exports today: a BLSTM made untraceable (its export path reads a
    value on the host, a data-dependent branch) stands for an op that does not."""
    from ops.recurrent import LSTM

    def host_read(self, x, lengths):
        return x * 2 if float(x.abs().sum()) > 0 else x

    monkeypatch.setattr(LSTM, "unpacked", host_read)
    space = tmp_path / "rnn.yaml"
    space.write_text(yaml.safe_dump({**SPACE, "layers": [{"name": "a", "choice": ["tdnn-k3-d1", "blstm"]}]}))
    timed = []
    monkeypatch.setattr(ort.OrtNetworkRunner, "_timed_pass", lambda self, marked: timed.append(1))
    argv = ["profile", "--space", str(space), "--runtime", "onnxruntime", "--int8", *SETTINGS]
    assert main([*argv, "-o", str(tmp_path / "lut.json")]) == 2
    err = capsys.readouterr().err
    assert "op 'blstm' (16->16) cannot be exported to ONNX" in err and "layers[0]" in err
    assert "tdnn" not in err and not timed and not (tmp_path / "lut.json").exists()


def test_a_streaming_op_sees_its_chunk_cut_or_padded():
    """``ChunkInput`` feeds an op what ``NetworkRunner`` feeds it between ops in a streaming pass."""
    chunk = ort.ChunkInput(lambda x, lengths: (x * 2, lengths), 4)
    x = torch.arange(1.0, 13.0).reshape(1, 6, 2)
    cut, lengths = chunk(x, torch.tensor([6]))
    assert torch.equal(cut, 2 * x[:, :4]) and lengths.tolist() == [4]
    padded, lengths = chunk(x[:, :3], torch.tensor([3]))
    assert torch.equal(padded[:, :3], 2 * x[:, :3]) and not padded[:, 3:].any() and lengths.tolist() == [4]


def test_int8_keeps_only_a_front_end_in_float():
    """A graph with a front-end keeps its nodes float; a graph that is all network (an op of a
    table, a features-input model) has nothing to keep float."""
    from supernet.deploy.quantize import SCOPES, outside_network

    def graph(*scopes):
        nodes = []
        for i, scope in enumerate(scopes):
            node = onnx.helper.make_node("Identity", [f"v{i}"], [f"v{i + 1}"], name=f"n{i}")
            node.metadata_props.add(key=SCOPES, value=repr(scope))
            nodes.append(node)
        return onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [], []))

    assert outside_network(graph(["", "features"], ["", "net", "net.layers.0"])) == ["n0"]
    assert outside_network(graph(["", "layers.0"], ["", "head"])) == []
