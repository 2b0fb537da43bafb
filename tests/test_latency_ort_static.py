"""Static int8 onnxruntime tables (issue 18): `profile --runtime onnxruntime --int8` quantises each
op as `supernet export --int8` does (static, QDQ, by default; `--int8-mode dynamic`), records the
mode, and a table of another mode is refused; int8 tables written before the mode was recorded
read (and are checked) as dynamic, as they were measured.

Tiny space and ops, as tests/test_latency_ort.py (exports are kept for the process); no test
asserts a time.
"""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

from supernet.commands.cli import main  # noqa: E402
from supernet.latency import LatencyTable, LatencyTableError, make_settings, ort  # noqa: E402
from supernet.latency.settings import INT8_MODES  # noqa: E402
from supernet.space import SearchSpace  # noqa: E402
from tests.test_latency_ort import DYNAMIC, SETTINGS, STATIC  # noqa: E402
from tests.test_latency_ort import SPACE as ORT_SPACE  # noqa: E402

SPACE = {**ORT_SPACE, "name": "tiny_ort_static"}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """``(space file, {mode: int8 table})``: the default (static) and ``--int8-mode dynamic``."""
    folder = tmp_path_factory.mktemp("ort_static")
    space = folder / "tiny.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    luts = {}
    for mode, extra in (("static", []), ("dynamic", ["--int8-mode", "dynamic"])):
        luts[mode] = folder / f"{mode}.json"
        argv = ["profile", "--space", str(space), "--runtime", "onnxruntime", "--int8", *extra, *SETTINGS]
        assert main([*argv, "--rounds", "1", "--calibrate", "0", "-o", str(luts[mode])]) == 0
    return space, luts


def nodes(path) -> list[str]:
    return [node.op_type for node in onnx.load_model(str(path)).graph.node]


def optimised(path, tmp_path) -> set[str]:
    """The node types onnxruntime runs after its graph optimisations (QDQ chains fused)."""
    import onnxruntime as rt

    options = rt.SessionOptions()
    options.log_severity_level = 3  # not its note that an optimised graph is machine-specific
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.optimised.onnx")
    rt.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return set(nodes(options.optimized_model_filepath))


def runner(mode: str | None, chunk_ms: float | None = None, choice: int = 0) -> ort.OrtNetworkRunner:
    settings = make_settings(
        threads=1,
        seconds=0.2,
        vocab=5,
        chunk_ms=chunk_ms,
        runtime="onnxruntime",
        int8=mode is not None,
        int8_mode=mode,
    )
    made = ort.OrtNetworkRunner(SearchSpace(SPACE).derive({"a": choice}, "tdnn_path"), settings)
    assert made.export() == []
    return made


def test_the_mode_is_in_the_settings_static_by_default(tables):
    _, luts = tables
    for mode, lut in luts.items():
        settings = json.loads(lut.read_text())["settings"]
        assert settings["int8"] is True and settings["int8_mode"] == mode
    assert make_settings(runtime="onnxruntime", int8=True)["int8_mode"] == "static"
    assert make_settings(runtime="onnxruntime")["int8_mode"] is None  # fp32: no mode
    from supernet.deploy.quantize import MODES

    assert set(INT8_MODES) == set(MODES)  # the modes export knows


def test_static_ops_run_as_int8_kernels_and_the_head_stays_float(tables, tmp_path):
    """Each op's graph of a static table is QDQ with int8 weights, which onnxruntime fuses into
    QLinearMatMul (the input linear) and QLinearConv (the TDNN); the CTC head stays float, as in
    an exported model; a dynamic table's ops are MatMulInteger and a float convolution."""
    static, dynamic = runner("static"), runner("dynamic")
    linear, tdnn, head = static.op_files
    for path in (linear, tdnn):
        graph = onnx.load_model(str(path)).graph
        assert STATIC <= set(nodes(path)) and not set(nodes(path)) & DYNAMIC
        assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)  # weights
    assert "QLinearMatMul" in optimised(linear, tmp_path)
    kernels = optimised(tdnn, tmp_path)
    assert "QLinearConv" in kernels and not {"Conv", "FusedConv"} & kernels
    assert not set(nodes(head)) & (STATIC | DYNAMIC)
    d_linear, d_tdnn, _ = dynamic.op_files
    assert set(nodes(d_linear)) & DYNAMIC and not set(nodes(d_linear)) & STATIC
    kernels = optimised(d_tdnn, tmp_path)
    assert {"Conv", "FusedConv"} & kernels and not any(k.startswith("QLinear") for k in kernels)


def float_matmuls(path) -> int:
    """MatMul nodes of a QDQ graph that no ``DequantizeLinear`` feeds: the ones left float."""
    graph = onnx.load_model(str(path)).graph
    dequantised = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return sum(node.op_type == "MatMul" and not set(node.input) & dequantised for node in graph.node)


@pytest.mark.parametrize("chunk_ms", [None, 100])
def test_the_head_stays_float_streaming_or_not(chunk_ms):
    """The head stays float in static int8, in its op's graph and in the network exported whole,
    also when streaming: ``ChunkInput`` and ``Chain`` hold it as ``head``, the module path static
    int8 keeps float (``supernet.deploy.quantize.ctc_head``)."""
    made = runner("static", chunk_ms=chunk_ms)
    linear, tdnn, head = made.op_files
    assert STATIC <= set(nodes(linear)) and STATIC <= set(nodes(tdnn))
    assert float_matmuls(linear) == 0 and not set(nodes(head)) & STATIC and float_matmuls(head) == 1
    whole = ort.OrtNetworkRunner(made.spec, made.settings, graph="exported")
    assert whole.export() == []
    assert STATIC <= set(nodes(whole.net_file)) and float_matmuls(whole.net_file) == 1  # the head's


def test_calibration_values_do_not_change_the_graph():
    """``timing_feeds`` calibrate on random features; feeds of another scale and offset (as a
    layer deep in a network sees) give the same nodes, op for op, only other scales."""
    fp32 = runner(None).op_files[1]  # the TDNN, fp32
    from supernet.deploy.quantize import quantize_int8

    feeds = ort.timing_feeds(16, 20, 1)
    shifted = [{**feed, "x": 7.0 * abs(feed["x"]) + 3.0} for feed in feeds]
    a = quantize_int8(fp32, fp32.with_name("calib-a.onnx"), "static", feeds)
    b = quantize_int8(fp32, fp32.with_name("calib-b.onnx"), "static", shifted)
    assert nodes(a) == nodes(b) and STATIC <= set(nodes(a))
    scales = [
        {i.name: onnx.numpy_helper.to_array(i).tolist() for i in onnx.load_model(str(p)).graph.initializer}
        for p in (a, b)
    ]
    assert scales[0].keys() == scales[1].keys() and scales[0] != scales[1]  # only the values differ


def test_a_table_of_another_mode_is_refused_naming_the_key(tables, capsys):
    space, luts = tables
    check = ["latency-check", "--space", str(space), "--n", "1", "--repeats", "1", "--noise", "0"]
    assert main([*check, "--lut", str(luts["dynamic"]), "--int8-mode", "static"]) == 2
    err = capsys.readouterr().err.strip()
    assert "settings key 'int8_mode' differs: table has 'dynamic', this run has 'static'" in err
    assert "supernet profile --runtime onnxruntime --int8 --int8-mode static" in err and "\n" not in err
    assert main([*check, "--lut", str(luts["static"]), "--int8-mode", "dynamic"]) == 2
    assert "'int8_mode' differs: table has 'static', this run has 'dynamic'" in capsys.readouterr().err
    with pytest.raises(LatencyTableError, match="'int8_mode' differs"):
        LatencyTable.load(luts["dynamic"], expect={"int8": True, "int8_mode": "static"})
    assert LatencyTable.load(luts["static"], expect={"int8": True, "int8_mode": "static"})


def test_an_old_int8_table_reads_and_checks_as_dynamic(tables, tmp_path, monkeypatch, capsys):
    """An int8 table written before the mode was recorded: dynamic (the only mode then), refused
    where static is expected, and checked by measuring dynamic int8 networks."""
    space, luts = tables
    data = json.loads(luts["dynamic"].read_text())
    del data["settings"]["int8_mode"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    assert LatencyTable.load(old).settings["int8_mode"] == "dynamic"
    with pytest.raises(LatencyTableError, match="'int8_mode' differs: table has 'dynamic'"):
        LatencyTable.load(old, expect={"int8_mode": "static"})
    fp32 = {k: v for k, v in make_settings(runtime="onnxruntime").items() if k != "int8_mode"}
    assert LatencyTable(fp32, {}).settings["int8_mode"] is None

    runners = []
    real = ort.ort_runners

    def recording(*args):
        made = real(*args)
        runners.extend(made)
        return made

    monkeypatch.setattr(ort, "ort_runners", recording)
    argv = ["latency-check", "--lut", str(old), "--space", str(space), "--n", "1", "--seed", "1"]
    capsys.readouterr()
    assert main([*argv, "--repeats", "1", "--noise", "0"]) == 0
    assert "dynamic int8" in capsys.readouterr().out
    assert runners and all(r.settings["int8_mode"] == "dynamic" for r in runners)
    assert all(set(nodes(r.net_file)) & DYNAMIC and not set(nodes(r.net_file)) & STATIC for r in runners)


def test_a_mode_without_int8_or_of_no_kind_is_refused(tables, tmp_path, capsys):
    with pytest.raises(ValueError, match="add --int8"):
        make_settings(runtime="onnxruntime", int8_mode="static")
    with pytest.raises(ValueError, match="int8_mode"):
        make_settings(runtime="onnxruntime", int8=True, int8_mode="qat")
    space, luts = tables
    out = tmp_path / "lut.json"
    argv = ["profile", "--space", str(space), "--runtime", "onnxruntime", "--int8-mode", "dynamic"]
    assert main([*argv, "-o", str(out)]) == 2
    assert "add --int8" in capsys.readouterr().err and not out.exists()
    fp32 = tmp_path / "fp32.json"  # an fp32 table checked with a mode only: refused, not measured
    LatencyTable(make_settings(threads=1, seconds=0.2, vocab=5, runtime="onnxruntime"), {}).save(fp32)
    check = ["latency-check", "--lut", str(fp32), "--space", str(space), "--n", "1"]
    assert main([*check, "--int8-mode", "static"]) == 2
    assert "'int8_mode' differs: table has None, this run has 'static'" in capsys.readouterr().err
