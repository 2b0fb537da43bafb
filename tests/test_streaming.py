"""Stateful streaming: every streamable op, fed in chunks, gives its full-utterance output and no
later than its declared look-ahead; a tdnn_d and a chunked-attention conformer_s stream to their
full-utterance log-probs and transcripts; what a stream keeps stays bounded; layers that read the
whole utterance are named; global CMVN is fitted on the train split and kept in checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import soundfile as sf
import torch

import ops
from ops.streaming import NotStreamable
from supernet.archspec import ArchSpec
from supernet.asr_module import ASRModule
from supernet.data.datamodule import SpeechDataModule
from supernet.data.features import FeaturePipeline, GlobalCMVN, lengths_mask
from supernet.data.tokenizer import CharTokenizer
from supernet.decoding import greedy_ctc_ids
from supernet.deploy.streaming import (
    StreamingCTC,
    StreamingRecognizer,
    checkpoint_cmvn,
    require_cmvn,
    stream_features,
)
from supernet.derived import DerivedNet
from supernet.errors import UserError

DIM = 8


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second thread only waits (on a shared 2-core machine, seconds a test)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


STREAMABLE = [
    "tdnn-k3-d2",
    "tdnn-k5-d1-s3",
    "tdnn-k4-d1-bn",
    "tdnn-k3-d2-causal",
    "septdnn-k5-d2",
    "conformer-k5-f2-local-w4-l1-ln",
    "conformer-k5-f2-chunk-c4",
    "conformer-k5-f2-chunk-c4-w6",
    "transformer-f2-local-w3",
    "mhsa-h2-chunk-c4-w0",
    "lstm",
    "skip-s3",
    "zero-s2",
    "linear",
    "conv2d4x",
    "res-tdnn-k3-d2",
    "tdnn-k3-d1-s3-e4",
    "res-conformer-k3-f2-local-w2-e4",
    "ebranchformer-k5-f2-local-w4-l2",
    "ebranchformer-k5-f2-chunk-c4-w4",
    "ebranchformer-k5-f2-m5-local-w2-l0-causal",
    "down2-tdnn-k3-d2-causal",
    "down4-conformer-k3-f2-local-w2",
    "res-down2-ebranchformer-k5-f2-local-w4-l2",
    "conformer-k5-f2-chunk-c4-w4-open",
    "ebranchformer-k5-f2-local-w4-l2-open",
    "norm-linear",
    "norm-tdnn-k3-d2-causal",
    "learnfb",
]


def op_and_input(spec: str, frames: int):
    torch.manual_seed(0)
    unit = 160 if spec == "learnfb" else 1
    op = ops.build(spec, 1 if unit > 1 else DIM).double().eval()
    return op, torch.randn(1, frames * unit, 1 if unit > 1 else DIM, dtype=torch.float64), unit


def run_stream(op, x, sizes):
    """Chunks of ``sizes`` (cycled), then the end: the outputs joined, and each chunk's count."""
    outputs, state, start, k = [], None, 0, 0
    while start < x.shape[1]:
        size = sizes[k % len(sizes)]
        y, state = op.stream(x[:, start : start + size], state, False)
        outputs.append(y)
        start, k = start + size, k + 1
    y, state = op.stream(x[:, :0], state, True)
    return torch.cat([*outputs, y], 1)


@pytest.mark.parametrize("spec", STREAMABLE)
@torch.no_grad()
def test_an_op_streams_to_its_full_utterance_output_whatever_the_chunks(spec):
    op, x, unit = op_and_input(spec, 41)
    full = op(x, torch.tensor([x.shape[1]]))[0]
    for sizes in ([1], [5, 2, 9], [x.shape[1]]):
        y = run_stream(op, x, [s * unit for s in sizes])
        assert y.shape == full.shape, sizes
        assert torch.allclose(y, full, rtol=0, atol=1e-9), (sizes, (y - full).abs().max())


@pytest.mark.parametrize("spec", STREAMABLE)
@torch.no_grad()
def test_an_output_comes_once_its_declared_lookahead_has_arrived(spec):
    """Frame by frame: after input frame t, every output j with j * stride + lookahead <= t is out
    (the declared look-ahead is the latency; test_ops checks that it is tight)."""
    op, x, unit = op_and_input(spec, 40)
    state, emitted = None, 0
    for t in range(x.shape[1] // unit):
        y, state = op.stream(x[:, t * unit : (t + 1) * unit], state, False)
        emitted += y.shape[1]
        due = math.floor((t * unit + unit - 1 - op.lookahead) / op.stride) + 1
        assert emitted >= min(max(due, 0), op.out_frames(x.shape[1])), (t, emitted, due)


@pytest.mark.parametrize(
    "spec, why",
    [
        ("conformer-k5-f2-rel", "'rel' attention reads the whole utterance"),
        ("transformer-f2-abs", "'abs' attention reads the whole utterance"),
        ("res-down2-ebranchformer-k5-f2-rel-e4", "'rel' attention reads the whole utterance"),
        ("blstm", "a BLSTM reads the utterance backwards"),
        ("fbank", "has no streaming path"),
    ],
)
def test_an_op_that_reads_the_whole_utterance_refuses_to_stream(spec, why):
    in_dim = 1 if spec == "fbank" else DIM
    op = ops.build(spec, in_dim).eval()
    with pytest.raises(NotStreamable, match=why):
        op.stream(torch.zeros(1, 3, in_dim), None, False)


def test_chunk_attention_with_a_left_bound_reads_only_that_far_back():
    from ops.attention import allowed_keys

    positions = torch.arange(8)
    bounded = allowed_keys("chunk", positions, positions, chunk=2, left=2).int()
    assert bounded[5].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]  # own chunk 4-5 and 2 frames before it
    assert bounded[6].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    unbounded = allowed_keys("chunk", positions, positions, chunk=2).int()
    assert unbounded[5].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert ops.build("conformer-k5-chunk-c4-w8", DIM).attention.left == 8


# ----------------------------------------------------------------------------- whole networks


def tiny(arch: str, **changes) -> ArchSpec:
    """A shipped baseline at tiny width (its layers kept unless ``changes`` says otherwise)."""
    return ArchSpec.from_dict({**ArchSpec.from_yaml(arch).to_dict(), "feature_dim": 10, "dim": 16, **changes})


TDNN_D = tiny("tdnn_d")
# conformer_s reads whole utterances (rel attention): its layers with chunked attention instead,
# 8 frames (320 ms) a chunk and 16 frames before it
CONFORMER_CHUNKED = tiny("conformer_s", layers=["conformer-k15-f4-h4-chunk-c8-w16"] * 4)
CHUNK_FRAMES = (16, 32, 64)  # 160, 320 and 640 ms of 10 ms feature frames


def features(frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 4 * torch.randn(frames, 10, generator=g) - 3


@pytest.mark.parametrize("spec", [TDNN_D, CONFORMER_CHUNKED], ids=["tdnn_d", "conformer_s-chunk"])
def test_a_network_streams_to_its_full_utterance_log_probs_and_transcript(spec):
    torch.manual_seed(0)
    net = DerivedNet(spec, 7).eval()
    x = features(229)
    cmvn = GlobalCMVN(x.mean(0), x.std(0))
    with torch.no_grad():
        full, lengths = net(cmvn(x[None]), torch.tensor([len(x)]))
    recognizer = StreamingRecognizer(net, CharTokenizer(list("abcde")), cmvn)
    for chunk in CHUNK_FRAMES:
        log_probs, seconds = stream_features(recognizer, x, chunk)
        assert log_probs.shape == full[0].shape and len(seconds) == math.ceil(len(x) / chunk) + 1
        assert (log_probs - full[0]).abs().max() <= 1e-4
        assert recognizer.ids == greedy_ctc_ids(full, lengths)
        assert recognizer.text == recognizer.tokenizer.decode(recognizer.ids[0])


def state_sizes(spec: ArchSpec, chunks: int, chunk: int = 16) -> list[int]:
    """Numbers the stream keeps after each chunk."""
    torch.manual_seed(0)
    recognizer = StreamingRecognizer(DerivedNet(spec, 7))
    x, sizes = features(chunks * chunk), []
    for start in range(0, len(x), chunk):
        recognizer.accept(x[start : start + chunk])
        sizes.append(recognizer.state_numel())
    return sizes


@pytest.mark.parametrize("spec", [TDNN_D, CONFORMER_CHUNKED], ids=["tdnn_d", "conformer_s-chunk"])
def test_what_a_stream_keeps_does_not_grow_with_its_prefix(spec):
    sizes = state_sizes(spec, chunks=30)
    assert max(sizes[10:]) == max(sizes[10:20]), sizes  # full after a few chunks, then flat


def test_unbounded_chunk_attention_keeps_every_key():
    """The bound above is the left context's doing: without `w` the key cache grows."""
    sizes = state_sizes(tiny("conformer_s", layers=["conformer-k15-f4-h4-chunk-c8"]), chunks=30)
    assert sizes[-1] > sizes[20] > sizes[10]


def test_a_full_context_layer_is_named_before_any_audio():
    net = DerivedNet(tiny("conformer_s"), 7)
    with pytest.raises(
        UserError, match=r"layers\[0\] \('conformer-k15-f4-h4-rel'\) cannot stream: 'rel' attention"
    ):
        StreamingRecognizer(net)


# ----------------------------------------------------------------------------- features


def test_global_cmvn_has_the_statistics_of_the_valid_frames_and_normalises_frame_by_frame():
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(2, 9, 3, generator=g) * 2 + 1, torch.tensor([9, 4])),
        (torch.randn(1, 5, 3, generator=g), torch.tensor([5])),
    ]
    valid = torch.cat([x[lengths_mask(n, x.shape[1])] for x, n in batches])
    cmvn = GlobalCMVN.fit(batches)
    assert cmvn.frames == 18
    assert torch.allclose(cmvn.mean, valid.mean(0), atol=1e-6)
    assert torch.allclose(cmvn.std, torch.sqrt(valid.var(0, unbiased=False) + 1e-5), atol=1e-6)
    x, lengths = batches[0]
    y = cmvn(x, lengths)
    assert torch.equal(y[1, 4:], torch.zeros_like(y[1, 4:]))
    assert torch.allclose(torch.cat([cmvn(x[:, :3]), cmvn(x[:, 3:])], 1)[0], y[0])  # chunks as a whole
    assert torch.equal(GlobalCMVN.from_dict(json.loads(json.dumps(cmvn.to_dict()))).std, cmvn.std)


def test_a_global_pipeline_needs_its_statistics():
    pipeline = FeaturePipeline("fbank", spec_augment=False, normalisation="global", n_mels=10)
    audio, lengths = 0.1 * torch.randn(2, 8000), torch.tensor([8000, 5000])
    with pytest.raises(RuntimeError, match="fit_cmvn"):
        pipeline(audio, lengths)
    cmvn = pipeline.fit_cmvn([(audio, lengths)])
    features, frames = pipeline(audio, lengths)
    valid = features[lengths_mask(frames, features.shape[1])]
    assert cmvn.frames == int(frames.sum()) and valid.mean(0).abs().max() < 1e-4
    with pytest.raises(ValueError, match="normalisation must be one of"):
        FeaturePipeline("fbank", normalisation="running")


def write_corpus(folder, counts: dict[str, int]):
    (folder / "audio").mkdir(parents=True)
    for split, count in counts.items():
        rows = []
        for j in range(count):
            path = folder / "audio" / f"{split}{j}.flac"
            sf.write(str(path), (0.1 * torch.randn(4000 + 800 * j)).numpy(), 16000)
            rows.append(
                {
                    "audio_filepath": str(path),
                    "duration": (4000 + 800 * j) / 16000,
                    "text": "ab",
                    "id": f"{split}{j}",
                }
            )
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_the_data_module_fits_global_cmvn_on_train_and_checkpoints_keep_it(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"train": 3, "dev": 2})
    dm = SpeechDataModule(str(corpus), num_workers=0, arch_fraction=0.0, normalisation="global", n_mels=10)
    dm.setup("fit")
    cmvn = dm.feature_pipeline.cmvn
    train = [dm.dataset("train")[i]["audio"] for i in range(3)]
    extractor = dm.feature_pipeline.extractor
    frames = torch.cat([extractor(a[None], torch.tensor([len(a)]))[0][0] for a in train])
    assert cmvn.frames == len(frames) and torch.allclose(cmvn.mean, frames.mean(0), atol=1e-4)
    restored = SpeechDataModule(str(corpus), num_workers=0, normalisation="global", n_mels=10)
    restored.load_state_dict(dm.state_dict())
    assert torch.equal(restored.feature_pipeline.cmvn.mean, cmvn.mean)
    torch.save({"state_dict": {}, "SpeechDataModule": dm.state_dict()}, tmp_path / "x.ckpt")
    assert torch.equal(checkpoint_cmvn(tmp_path / "x.ckpt").std, cmvn.std)
    torch.save({"state_dict": {}}, tmp_path / "utterance.ckpt")  # trained with per-utterance CMVN
    with pytest.raises(UserError, match="per-utterance feature normalisation"):
        require_cmvn(tmp_path / "utterance.ckpt")


def test_streaming_ctc_transcribes_waveforms_chunk_by_chunk():
    """What ``supernet transcribe --stream`` gets: texts of the full-utterance pass on the same
    globally normalised features."""
    torch.manual_seed(0)
    spec = tiny("tdnn_d", feature_dim=80)
    module = ASRModule(spec.to_dict(), CharTokenizer(list("abcde")).vocab).eval()
    audio, lengths = 0.1 * torch.randn(2, 12000), torch.tensor([12000, 7000])
    pipeline = FeaturePipeline("fbank", spec_augment=False, normalisation="global")
    cmvn = pipeline.fit_cmvn([(audio, lengths)])
    model = StreamingCTC(module, chunk_ms=160, cmvn=cmvn)
    log_probs, out_lengths = model.log_probs(audio, lengths)
    with torch.no_grad():
        full, full_lengths = module.net(*pipeline(audio, lengths))
    assert torch.equal(out_lengths, full_lengths)
    for row, ref, n in zip(log_probs, full, out_lengths):
        assert (row[:n] - ref[:n]).abs().max() <= 1e-4
    assert model.transcribe([audio[0], audio[1, :7000]]) == [
        module.tokenizer.decode(i) for i in greedy_ctc_ids(full, full_lengths)
    ]
    assert len(model.chunk_seconds) > 0
