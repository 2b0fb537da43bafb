"""The streaming chunk step as ONNX (``supernet export --streaming``): run with onnxruntime alone,
chunk by chunk with its state tensors, a tiny tdnn_d and a chunked-attention conformer_s give the
full-utterance PyTorch log-probs (1e-4) and greedy transcripts at two chunk sizes, and so does a
conformer_s of E-Branchformer, down-sampled and LSTM layers; the step's bookkeeping is exact for
every supported op family in PyTorch; layers it cannot run are named before anything is exported;
``supernet transcribe --stream`` runs the file.

The loop in ``ort_stream`` is written here from the metadata alone (not ``OnnxStream``), as a user
would write it (docs/deploy.md has the same loop). Exports use the TorchScript exporter (~1-2 s).
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import onnxruntime as ort  # noqa: E402
import pytorch_lightning as pl  # noqa: E402

from ops.downsampled import Downsampled  # noqa: E402
from ops.ebranchformer import ConvGatingMLP  # noqa: E402
from supernet.archspec import ArchSpec  # noqa: E402
from supernet.asr_module import ASRModule  # noqa: E402
from supernet.commands.cli import main as cli_main  # noqa: E402
from supernet.data.features import GlobalCMVN  # noqa: E402
from supernet.data.tokenizer import CharTokenizer  # noqa: E402
from supernet.decoding import greedy_ctc_ids  # noqa: E402
from supernet.deploy.checkpoint import load_module  # noqa: E402
from supernet.deploy.graph import feature_pipeline  # noqa: E402
from supernet.deploy.inputs import synthetic_waveforms  # noqa: E402
from supernet.deploy.onnx_streaming import StreamingStep, export_streaming, step_frames  # noqa: E402
from supernet.deploy.parity import as_if_trained  # noqa: E402
from supernet.deploy.runtime import pad_waveforms  # noqa: E402
from supernet.derived import DerivedNet  # noqa: E402
from supernet.errors import UserError  # noqa: E402
from tests.test_streaming import one_thread  # noqa: E402, F401  (autouse: tiny tensors, one thread)

TOKENIZER = CharTokenizer.build(["abcdefgh ijklmno"])
DIM, MELS = 32, 20
CHUNKED = "conformer-k15-f4-h4-chunk-c8-w16"  # 8 frames (320 ms at 40 ms) a chunk, 16 frames before it
ARCHS = {"tdnn_d": None, "conformer_s-chunk": [CHUNKED] * 4}
SEEDS = {"tdnn_d": 0, "conformer_s-chunk": 1}  # random weights whose greedy texts hold several tokens
CHUNK_MS = (160, 320)  # conformer: 160 ms is half an attention chunk (the step's delay path), 320 ms one


def tiny_module(arch: str, layers: list[str] | None = None, seed: int = 0) -> ASRModule:
    """A shipped baseline at width 32 and 20 mel bands, random weights: BatchNorm statistics
    other than the identity's and a confident head that rarely picks blank, so texts differ when
    the numbers do."""
    spec = ArchSpec.from_yaml(arch).to_dict()
    spec.update(name=arch, feature_dim=MELS, dim=DIM, dropout=0.0, **({"layers": layers} if layers else {}))
    torch.manual_seed(seed)
    module = ASRModule(spec, vocab=TOKENIZER.vocab).eval()
    return as_if_trained(module)


def save_checkpoint(module: ASRModule, path, cmvn: GlobalCMVN | None) -> str:
    """What `supernet retrain --data.normalisation global` writes, as far as loading reads it."""
    checkpoint = {
        "pytorch-lightning_version": pl.__version__,
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
    }
    if cmvn is not None:
        checkpoint["SpeechDataModule"] = {"cmvn": cmvn.to_dict()}
    torch.save(checkpoint, path)
    return str(path)


def fbank_cmvn() -> GlobalCMVN:
    """Global statistics of the synthetic audio's log-mels (what the train split would give)."""
    pipeline = feature_pipeline(tiny_module("tdnn_d"))  # per-utterance pipeline: its extractor only
    audio, lengths = pad_waveforms(synthetic_waveforms([1.5, 1.1], 16000, seed=5))
    with torch.no_grad():
        raw, frames = pipeline.extractor(audio, lengths)
    valid = torch.cat([raw[b, :n] for b, n in enumerate(frames.tolist())])
    return GlobalCMVN(valid.mean(0), valid.std(0))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder, cmvn = tmp_path_factory.mktemp("ckpt"), fbank_cmvn()
    return {
        name: save_checkpoint(
            tiny_module(name.split("-")[0], layers, SEEDS[name]), folder / f"{name}.ckpt", cmvn
        )
        for name, layers in ARCHS.items()
    }


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory):
    """Every architecture at every chunk size, one of them through the command line."""
    folder, paths = tmp_path_factory.mktemp("onnx"), {}
    for name, ckpt in checkpoints.items():
        for ms in CHUNK_MS:
            path = folder / f"{name}-{ms}.onnx"
            if (name, ms) == ("tdnn_d", 160):
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    code = cli_main(["export", ckpt, "-o", str(path), "--streaming", "--chunk-ms", str(ms)])
                assert code == 0, out.getvalue()
                assert "streaming chunk step of 18 feature frames (180 ms)" in out.getvalue()
                assert "greedy transcripts identical" in out.getvalue()
            else:
                report = export_streaming(ckpt, path, ms)
                assert report["parity"]["ok"], report["parity"]
                misaligned = name == "conformer_s-chunk" and ms == 160  # half an attention chunk a step
                assert ("a multiple of 320 avoids it" in (report["note"] or "")) == misaligned
            paths[name, ms] = path
    return paths


def ort_stream(path, features: np.ndarray) -> np.ndarray:
    """``features (B, T, F)`` (normalised) through the chunk step with onnxruntime, numpy and the
    model's metadata only: the log-probs of the whole utterances."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    step = meta["streaming"]
    chunk, batch = step["chunk_frames"], features.shape[0]
    state = {
        s["input"]: np.zeros([batch if d is None else d for d in s["shape"]], s["dtype"])
        for s in step["states"]
    }
    chunks = math.ceil(features.shape[1] / chunk)
    outputs = []
    for k in range(chunks + step["flush_chunks"]):
        part = features[:, k * chunk : (k + 1) * chunk]
        x = np.zeros((batch, chunk, features.shape[2]), np.float32)
        x[:, : part.shape[1]] = part
        names = [o.name for o in session.get_outputs()]
        feeds = {"features": x, "valid_frames": np.array(part.shape[1], np.int64), **state}
        out = dict(zip(names, session.run(None, feeds)))
        state = {s["input"]: out[s["output"]] for s in step["states"]}
        outputs.append(out["log_probs"][:, out["frame_valid"]])
    return np.concatenate(outputs, 1)


def assert_streams_as_full(path, checkpoint) -> None:
    """The ONNX step streamed by ``ort_stream`` gives the checkpoint's full-utterance log-probs
    (1e-4) and greedy ids, for two streams of one length advancing together (dynamic batch), then
    a short one by itself."""
    module = load_module(checkpoint)
    audio, lengths = pad_waveforms(synthetic_waveforms([2.37, 2.37, 0.9], 16000, seed=3))
    with torch.no_grad():
        features, frames = feature_pipeline(module)(audio, lengths)  # global CMVN from the checkpoint
        full, out_lengths = module.net(features, frames)
    for rows in ([0, 1], [2]):
        n = int(frames[rows[0]])
        got = ort_stream(path, features[rows, :n].numpy())
        m = int(out_lengths[rows[0]])
        assert got.shape == (len(rows), m, len(TOKENIZER.vocab))
        assert np.abs(got - full[rows, :m].numpy()).max() <= 1e-4
        ids = greedy_ctc_ids(torch.from_numpy(got), torch.full((len(rows),), m))
        assert ids == greedy_ctc_ids(full[rows], out_lengths[rows]) and len(set(ids[0])) > 1


@pytest.mark.parametrize("ms", CHUNK_MS)
@pytest.mark.parametrize("name", list(ARCHS))
def test_onnxruntime_streams_to_the_full_utterance_log_probs_and_transcripts(exported, checkpoints, name, ms):
    assert_streams_as_full(exported[name, ms], checkpoints[name])


def busy(module: ASRModule) -> ASRModule:
    """Random values for the weights that start where they change little: the cgMLP's gate conv
    (near zero) and the down-samplers' group weights (the mean), so that the windows count."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, ConvGatingMLP):
                m.conv.weight.normal_(std=0.3)
            if isinstance(m, Downsampled):
                m.weights.normal_()
    return module


# the budget space's block kinds with bounded attention: at 160 ms a step is 4 output frames,
# half of the c8 chunk and, at the half rate, 2 slow frames: half of the c4 chunk
NEW_FAMILIES = [
    "ebranchformer-k5-f2-h4-chunk-c8-w16",
    "res-down2-conformer-k5-f2-h4-chunk-c4-w8",
    "res-down2-ebranchformer-k5-f2-h4-chunk-c4-w8",
    "lstm",
]


def test_ebranchformer_downsampled_and_lstm_layers_stream_through_onnxruntime(tmp_path):
    ckpt = save_checkpoint(
        busy(tiny_module("conformer_s", NEW_FAMILIES, seed=1)), tmp_path / "x.ckpt", fbank_cmvn()
    )
    report = export_streaming(ckpt, tmp_path / "x.onnx", 160)
    assert report["parity"]["ok"], report["parity"]
    # each of the three attention layers finishes its chunk's first half a step (160 ms) later
    assert report["streaming"]["delay_ms"] == 480 and "a multiple of 320 avoids it" in report["note"]
    states = {s["name"] for s in json.loads(
        next(p.value for p in onnx.load(str(tmp_path / "x.onnx")).metadata_props if p.key == "streaming")
    )["states"]}  # fmt: skip
    assert {
        "layers.0.gate_frames",
        "layers.1.branch.inner.attention.k",
        "layers.2.branch.inner.merge_frames",
        "layers.3.h",
    } <= states
    assert_streams_as_full(tmp_path / "x.onnx", ckpt)


def test_the_metadata_says_how_to_stream(exported):
    meta = {
        p.key: json.loads(p.value) for p in onnx.load(str(exported["conformer_s-chunk", 160])).metadata_props
    }
    step = meta["streaming"]
    assert step["chunk_frames"] == 16 and step["chunk_ms"] == 160 and step["output_frames"] == 4
    # attention chunks of 8 output frames fed 4 at a time: each layer waits 4 frames (160 ms) more
    assert step["delay_frames"] == 4 * 4 * 4 and step["flush_chunks"] == 4
    assert meta["features"]["normalisation"]["mean"] and meta["tokens"][:2] == ["<blank>", "<unk>"]
    assert meta["input_names"][:2] == ["features", "valid_frames"] and meta["subsampling"] == 4
    states = {s["name"]: s for s in step["states"]}
    assert states["offset"] == {**states["offset"], "shape": [], "dtype": "int64", "initial": 0}
    assert states["layers.0.attention.k"]["shape"] == [None, 4, 24, 8]  # 16 frames back + half a chunk
    aligned = {
        p.key: json.loads(p.value) for p in onnx.load(str(exported["conformer_s-chunk", 320])).metadata_props
    }
    assert aligned["streaming"]["delay_frames"] == 0  # a step of one attention chunk waits for nothing


MIXED = [
    "res-tdnn-k3-d2",
    "tdnn-k5-d1-s2",
    "septdnn-k5-d2-causal",
    "mhsa-h2-chunk-c3-w5",
    "transformer-f2-local-w3-l2",
    "res-conformer-k5-f2-local-w4-l1-ln-e8",
    "skip-s2",
    "tdnn-k4-d1-bn",
    "norm-tdnn-k3-d1",
    "conformer-k5-f2-h2-local-w3-l1-open",
]


DOWNSAMPLED = [
    "tdnn-k3-d1",  # a frame of look-ahead: the groups of the down-samplers straddle the steps
    "ebranchformer-k5-f2-h2-chunk-c3-w5",
    "res-ebranchformer-k3-f2-m5-h2-local-w3-l2-e8",
    "res-down2-conformer-k5-f2-h2-chunk-c3-w4-ln",
    "res-down4-ebranchformer-k5-f2-h2-local-w2-l1",
    "lstm",
    "res-down2-lstm",
]


def mixed_net(layers: list[str], input: str = "conv2d4x", head: str = "linear") -> DerivedNet:
    spec = ArchSpec.from_dict(
        {
            "name": "mixed",
            "features": "fbank",
            "feature_dim": 10,
            "dim": 16,
            "input": input,
            "layers": layers,
            "head": head,
        }
    )
    torch.manual_seed(0)
    return busy(DerivedNet(spec, 7)).eval()


@pytest.mark.parametrize(
    "layers, chunks, head",
    [
        *(pytest.param(MIXED, n, "linear", id=f"mixed-{n}") for n in (1, 2, 3, 5)),
        pytest.param(MIXED, 2, "norm-linear", id="mixed-2-norm-head"),
        *(pytest.param(DOWNSAMPLED, n, "linear", id=f"downsampled-{n}") for n in (4, 8, 12)),
    ],
)
@torch.no_grad()
def test_the_step_in_pytorch_is_the_full_pass_for_every_supported_family(layers, chunks, head):
    """The graph's bookkeeping before export: a network of every supported family (strides 4, 2
    and 2, look-ahead, causal, residual delay lines, local and chunked attention, an inner width),
    the step ``chunks`` output frames long (the chunked attention's 3 frames lined up or not); and
    one of E-Branchformers (chunked, local, at an inner width), down-sampled blocks (by 2 and 4,
    their groups split between steps, the attention chunk at the half rate lined up with the step
    at 12 frames only) and LSTMs (at both rates)."""
    net = mixed_net(layers, head=head)
    x = torch.randn(1, 229, 10)
    full, _ = net(x, torch.tensor([229]))
    step = StreamingStep(net, net.spec.total_stride * chunks).eval()
    if layers is DOWNSAMPLED:  # a frame of look-ahead before it: its groups are split between steps
        assert step.caches["layers.3.branch.frames"] == (1, 16)
    state, outputs = step.initial_state(1), []
    for k in range(math.ceil(229 / step.chunk) + step.flush_chunks):
        part = x[:, k * step.chunk : (k + 1) * step.chunk]
        log_probs, valid, *state = step(
            torch.nn.functional.pad(part, (0, 0, 0, step.chunk - part.shape[1])),
            torch.tensor(part.shape[1]),
            *state,
        )
        outputs.append(log_probs[:, valid])
    got = torch.cat(outputs, 1)
    assert got.shape == full.shape and (got - full).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "layer, why",
    [
        ("conformer-k15-f4-h4-rel", "'rel' attention reads the whole utterance"),
        ("conformer-k15-f4-h4-chunk-c8", "chunk attention with no left bound"),
        ("blstm", "a BLSTM reads the utterance backwards"),
        ("ebranchformer-k15-f4-rel", "'rel' attention reads the whole utterance"),
        ("res-down2-ebranchformer-k15-f4-chunk-c8", "chunk attention with no left bound"),
    ],
)
def test_a_layer_that_cannot_stream_is_named_before_export(tmp_path, layer, why):
    ckpt = save_checkpoint(tiny_module("tdnn_d", ["tdnn-k3-d1", layer]), tmp_path / "x.ckpt", fbank_cmvn())
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli_main(["export", ckpt, "-o", str(tmp_path / "x.onnx"), "--streaming"])
    assert code == 2 and not (tmp_path / "x.onnx").exists()
    assert f"layers[1] ('{layer}') cannot be exported as a streaming ONNX chunk step" in err.getvalue()
    assert why in err.getvalue()


def test_a_down_sampled_layer_takes_whole_groups_a_step():
    """An explicit chunk of part of a group is refused, naming the layer; a ``--chunk-ms`` is
    rounded up to whole groups (the budget space's layout: 30 ms frames, then 60 ms ones)."""
    net = mixed_net(["tdnn-k3-d1", "res-down4-tdnn-k3-d1"])
    with pytest.raises(UserError, match=r"layers\[1\] \('res-down4-tdnn-k3-d1'\) cannot be exported .* "
                       r"the step's 6 frames at this layer are not whole groups of 4 frames: "
                       r"make the chunk a multiple of 16 feature frames"):  # fmt: skip
        StreamingStep(net, 24)
    assert step_frames(net.spec, 240, net) == 32 and StreamingStep(net, 32).rate_out.frames == 8
    budget = mixed_net(["tdnn-k3-d1-s3", "res-down2-ebranchformer-k5-f2-h2-chunk-c4-w8"], input="linear")
    assert step_frames(budget.spec, 320) == 33 and step_frames(budget.spec, 320, budget) == 36


def test_per_utterance_normalisation_cannot_stream(tmp_path):
    ckpt = save_checkpoint(tiny_module("tdnn_d"), tmp_path / "x.ckpt", None)
    with pytest.raises(UserError, match="per-utterance feature normalisation"):
        export_streaming(ckpt, tmp_path / "x.onnx", 320)


def transcribe(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["transcribe", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


def test_transcribe_stream_runs_the_onnx_chunk_step(exported, checkpoints, tmp_path):
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, synthetic_waveforms([2.37], 16000, seed=3)[0].numpy(), 16000)
    # 238 frames: tdnn_d's 320 ms are 33 frames (whole output frames of 3), 8 chunks and 1 to flush
    for name, ms, chunks in (("tdnn_d", 330, 9), ("conformer_s-chunk", 320, 8)):
        code, full, _ = transcribe(checkpoints[name], wav)
        assert code == 0 and len(full.splitlines()[0].split("\t")[1]) > 1
        code, streamed, _ = transcribe(exported[name, 320], wav, "--stream")
        assert code == 0 and streamed.splitlines()[0] == full.splitlines()[0]
        assert streamed.splitlines()[1].startswith(
            f"streaming: {chunks} chunks of {ms} ms, compute per chunk"
        )
    path = exported["tdnn_d", 320]
    code, _, err = transcribe(path, wav)
    assert code == 2 and "a streaming chunk step (exported with --streaming): run it with --stream" in err
    code, _, err = transcribe(path, wav, "--stream", "--chunk-ms", "160")
    assert code == 2 and "its chunk step is 330 ms (fixed at export)" in err
    whole = onnx.load(str(path))  # the same file without its streaming metadata: a whole-utterance model
    props = {p.key: p.value for p in whole.metadata_props if p.key != "streaming"}
    onnx.helper.set_model_props(whole, props)
    onnx.save(whole, str(tmp_path / "whole.onnx"))
    code, _, err = transcribe(tmp_path / "whole.onnx", wav, "--stream")
    assert code == 2 and "--stream runs a retrain checkpoint (.ckpt) or a streaming ONNX model" in err
