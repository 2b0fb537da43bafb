"""Static int8 export (`supernet export --int8`, `supernet.deploy.quantize`): it runs, convolutions
and linears become int8 kernels, transcripts stay close to fp32's, calibration reads the training
split only, and unreadable calibration data is a one-line error naming the path.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

import pytorch_lightning as pl  # noqa: E402

from supernet.asr_module import ASRModule  # noqa: E402
from supernet.commands.cli import main as cli_main  # noqa: E402
from supernet.data.datamodule import resolve_splits  # noqa: E402
from supernet.deploy import inputs  # noqa: E402
from supernet.deploy.calibration import (  # noqa: E402
    Calibration,
    calibration_feeds,
    calibration_utterances,
)
from supernet.deploy.export import export_asr_module  # noqa: E402
from supernet.deploy.quantize import quantize_int8  # noqa: E402
from supernet.deploy.session import ort_session  # noqa: E402
from supernet.errors import UserError  # noqa: E402
from tests.test_export import TOKENIZER  # noqa: E402
from tests.test_export import tiny_module as export_tiny_module  # noqa: E402

LAYERS = ["tdnn-k3-d1", "tdnn-k3-d2-s2", "conformer-k7-f2-h2-rel"]
TDNNS = LAYERS[:2]  # for the tests that need any model: half the export time
# int8 against fp32 on the 3 test utterances, random tiny models of seeds 0-4 (waveform input):
# transcripts 0% to 8.7% CER apart (seed 0, the one tested: 3.9%, one character), the largest
# log-prob difference 0.14 to 0.38. With the front-end quantised too, tdnn_d's greedy frames
# agreed with fp32's only 63% of the time.
MAX_CER_VS_FP32 = 0.10
MAX_ABS_DIFF = 1.0


def tiny_module(seed: int = 0, layers=LAYERS) -> ASRModule:
    """test_export's tiny network (a confident head, BatchNorm statistics as after training)."""
    return export_tiny_module(layers, name="tiny8", seed=seed)


def save_checkpoint(module: ASRModule, path, data=None) -> str:
    """What `supernet retrain` writes, as far as export reads it (the data module's `data`)."""
    saved = {
        "pytorch-lightning_version": pl.__version__,
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
    }
    if data is not None:
        saved["datamodule_hyper_parameters"] = {"data": str(data), "langs": None}
    torch.save(saved, path)
    return str(path)


def write_corpus(folder, counts=None):
    """A corpus folder whose utterance ids and file names say their split."""
    counts = counts or {"train": 6, "dev": 3, "test": 3}
    rng = np.random.default_rng(0)
    (folder / "audio").mkdir(parents=True)
    for split, n in counts.items():
        rows = []
        for i in range(n):
            seconds = 0.7 + 0.15 * i
            t = np.arange(int(seconds * 16000)) / 16000
            pitch = 200 + 60 * i + 150 * np.sin(2 * np.pi * 0.9 * t)
            audio = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / 16000) + 0.02 * rng.standard_normal(len(t))
            name = f"audio/{split}-{i}.flac"
            sf.write(folder / name, audio.astype(np.float32), 16000)
            text = "".join(rng.choice(list("abcdefgh ijklmno"), size=6))
            rows.append({"audio_filepath": name, "duration": seconds, "text": text, "id": f"{split}-{i}"})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus8"))


@pytest.fixture(scope="module")
def static_export(tmp_path_factory, corpus):
    """`supernet export CKPT --int8` of a checkpoint that records its training data: (report, stdout)."""
    folder = tmp_path_factory.mktemp("static8")
    ckpt = save_checkpoint(tiny_module(), folder / "tiny.ckpt", data=corpus)
    argv = [
        "export", ckpt, "-o", str(folder / "m.onnx"), "--int8", "--report", str(folder / "r.json"),
        "--check-audio", str(corpus / "test.jsonl"),
    ]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(argv) == 0
    return json.loads((folder / "r.json").read_text()), out.getvalue()


def fused_ops(path, tmp_path) -> list[str]:
    """The op types onnxruntime runs after its graph optimisations (the Q -> op -> DQ fusions)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(str(tmp_path / "optimised.onnx")).graph.node]


def test_static_is_the_default_with_training_data_and_runs_int8_kernels(static_export, corpus, tmp_path):
    report, stdout = static_export
    int8 = report["int8"]
    assert int8["mode"] == "static" and int8["onnx"].endswith("m.int8.onnx")
    assert int8["calibration"]["data"] == str(corpus)
    assert int8["calibration"]["ids"] == [f"train-{i}" for i in range(6)]
    graph = onnx.load(int8["onnx"]).graph
    weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
    assert len(weights) >= 6 and int8["bytes"] < report["bytes"]  # convolutions' and linears' weights
    assert f"static int8 calibrated on 6 training utterances of {corpus}" in stdout.splitlines()[2]
    ops = fused_ops(int8["onnx"], tmp_path)
    assert ops.count("QLinearConv") >= 2 and "QLinearMatMul" in ops  # TDNNs, conformer linears
    assert "STFT" not in ops and "Conv" in ops  # the front-end's DFT stays a float Conv
    meta = {p.key: json.loads(p.value) for p in onnx.load(int8["onnx"]).metadata_props}
    assert meta["tokens"] == TOKENIZER.vocab and meta["input"] == report["input"]
    assert meta["quantisation"]["method"].startswith("onnxruntime quantize_static")
    assert meta["quantisation"]["calibration_batches"] == 6


def test_static_transcripts_agree_with_fp32(static_export):
    report, _ = static_export
    int8 = report["int8"]
    assert int8["same_lengths"] and len(int8["texts"]) == 3
    assert any(int8["texts"]) and 0 < int8["max_abs_diff"] < MAX_ABS_DIFF  # quantised, same model
    assert int8["cer_vs_fp32"] <= MAX_CER_VS_FP32


def test_static_int8_of_a_features_input_model(corpus, tmp_path):
    """The features graph is all network: everything but the CTC head is quantised."""
    module = tiny_module(seed=1, layers=TDNNS)
    report = export_asr_module(
        module, tmp_path / "m.onnx", int8=True, int8_mode="static", calibration=corpus,
        input_kind="features", check_audio=[corpus / "test.jsonl"],
    )  # fmt: skip
    int8 = report["int8"]
    assert report["input"] == "features" and int8["mode"] == "static"
    assert int8["same_lengths"] and int8["cer_vs_fp32"] <= MAX_CER_VS_FP32
    session = ort_session(int8["onnx"], threads=1)
    assert [i.name for i in session.get_inputs()] == ["features", "lengths"]
    ops = fused_ops(int8["onnx"], tmp_path)
    assert "QLinearConv" in ops and "Conv" not in ops  # no front-end here: every conv is int8


def test_calibration_reads_only_the_training_split(corpus, monkeypatch):
    read = []
    load = inputs.load_waveform

    def recording(path, rate):
        read.append(str(path))
        return load(path, rate)

    monkeypatch.setattr(inputs, "load_waveform", recording)
    utterances = calibration_utterances(Calibration(corpus), count=100)
    assert [u.id for u in utterances] == [f"train-{i}" for i in range(6)]
    feeds = calibration_feeds(tiny_module(layers=TDNNS), "waveform", utterances, min_length=0)
    assert len(feeds) == 6 and set(feeds[0]) == {"audio", "lengths"}
    assert len(read) == 6 and all("/audio/train-" in path for path in read)
    spread = calibration_utterances(Calibration(corpus), count=3)
    assert [u.id for u in spread] == ["train-0", "train-2", "train-4"]


def test_calibration_from_one_manifest_uses_its_training_part(tmp_path):
    folder = write_corpus(tmp_path / "one", {"all": 20})
    manifest = folder / "all.jsonl"
    train = {u.id for u in resolve_splits(manifest, 0.0)["fit"]["train_all"]}
    held_out = {u.id for u in resolve_splits(manifest, 0.0)["fit"]["dev"]}
    assert held_out  # the 10% that training holds out exists, and is never read
    chosen = {u.id for u in calibration_utterances(Calibration(manifest), count=50)}
    assert chosen == train and not chosen & held_out


def test_an_unreadable_calibration_path_is_one_error_naming_it(tmp_path, capsys):
    ckpt = save_checkpoint(tiny_module(layers=TDNNS), tmp_path / "t.ckpt")
    missing = tmp_path / "no_such_corpus"
    argv = ["export", ckpt, "-o", str(tmp_path / "m.onnx"), "--int8", "--calibration", str(missing)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"--calibration {missing} cannot be read" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()  # refused before the fp32 export, not after it


def test_a_checkpoint_whose_training_data_moved_names_it_and_the_way_out(tmp_path, capsys):
    gone = tmp_path / "moved_corpus"
    ckpt = save_checkpoint(tiny_module(layers=TDNNS), tmp_path / "t.ckpt", data=gone)
    assert cli_main(["export", ckpt, "-o", str(tmp_path / "m.onnx"), "--int8"]) == 2
    err = capsys.readouterr().err
    assert f"the checkpoint's training data {gone} cannot be read" in err
    assert "--calibration DATA" in err and "--int8-mode dynamic" in err


def test_static_needs_calibration_data_and_dynamic_does_not(tmp_path, capsys):
    ckpt = save_checkpoint(tiny_module(layers=TDNNS), tmp_path / "t.ckpt")  # records no training data
    base = ["export", ckpt, "-o", str(tmp_path / "m.onnx"), "--int8", "--input", "features"]
    assert cli_main([*base, "--int8-mode", "static"]) == 2
    assert "static int8 needs calibration audio" in capsys.readouterr().err
    report = tmp_path / "r.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main([*base, "--report", str(report)]) == 0  # auto: nothing to calibrate on
    int8 = json.loads(report.read_text())["int8"]
    assert int8["mode"] == "dynamic" and int8["calibration"] is None


def test_quantize_int8_refuses_an_unknown_mode_and_static_without_feeds(static_export):
    fp32 = static_export[0]["onnx"]
    with pytest.raises(UserError, match="int8 mode must be static or dynamic"):
        quantize_int8(fp32, mode="fp16")
    with pytest.raises(UserError, match="static int8 needs calibration"):
        quantize_int8(fp32, mode="static")
    with pytest.raises(UserError, match="no calibration utterances"):
        quantize_int8(fp32, mode="static", calibration=[])
