"""One n_fft (``ops.framing.N_FFT``, 512) for the data path's features and the waveform front-end
ops, and the n_fft 400 that fbank / MFCC features had before it, kept for checkpoints and exported
models that do not record theirs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi

import ops
from ops import framing, frontend
from ops.framing import HOP, N_FFT, SAMPLE_RATE, WINDOW, padded_fft_size
from supernet.asr_module import ASRModule
from supernet.data.datamodule import SpeechDataModule, checkpoint_n_fft
from supernet.data.features import (
    LEGACY_N_FFT,
    FeatureExtractor,
    FeaturePipeline,
    n_fft_of,
    normalize_per_utterance,
)
from supernet.data.tokenizer import CharTokenizer
from supernet.deploy.graph import deploy_module, feature_pipeline, feature_settings
from supernet.deploy.runtime import _pipeline

TOKENIZER = CharTokenizer.build(["abc d"])


def voiced(seconds: float, seed: int) -> torch.Tensor:
    """Harmonics of a gliding pitch with a formant-like envelope, and a little noise."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * math.pi * torch.cumsum(120 + 30 * torch.sin(2 * math.pi * 0.9 * t), 0) / SAMPLE_RATE
    x = sum(math.exp(-(((h * 140 - 700) / 600) ** 2)) * torch.sin(h * phase) / h for h in range(1, 40))
    return 0.3 * x / x.abs().max() + 0.003 * torch.randn(len(t), generator=gen)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    waves = [voiced(1.0, seed=0), voiced(0.63, seed=1)]
    lengths = torch.tensor([len(w) for w in waves])
    return torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), lengths


def test_the_data_path_and_the_frontend_ops_read_one_setting():
    assert (WINDOW, HOP, N_FFT) == (400, 160, 512) and N_FFT == padded_fft_size(WINDOW)
    assert (frontend.WINDOW, frontend.HOP, frontend.N_FFT, frontend.SAMPLE_RATE) == (
        framing.WINDOW,
        framing.HOP,
        framing.N_FFT,
        framing.SAMPLE_RATE,
    )
    for kind in ("fbank", "mfcc", "kaldi_fbank"):
        extractor = FeatureExtractor(kind)
        assert (extractor.n_fft, extractor.win_length, extractor.hop_length) == (N_FFT, WINDOW, HOP)
    for stft in (
        ops.build("fbank", 1, 80).mel.spectrogram,
        ops.build("mfcc", 1, 40).mfcc.MelSpectrogram.spectrogram,
    ):
        assert (stft.n_fft, stft.win_length, stft.hop_length) == (N_FFT, WINDOW, HOP)
    data = FeatureExtractor("fbank").transform.spectrogram
    assert (data.n_fft, data.win_length, data.hop_length) == (N_FFT, WINDOW, HOP)


@pytest.mark.parametrize("kind, dim", [("fbank", 80), ("mfcc", 40)])
def test_the_data_paths_features_are_the_frontend_ops_frames(kind, dim):
    """Known answer: the same padded batch through the data path's extractor and the waveform op
    gives the same log-mels (MFCCs) on every frame both keep, to float rounding (within 1e-4)."""
    audio, lengths = batch()
    features, feature_lengths = FeatureExtractor(kind)(audio, lengths)
    frames, frame_lengths = ops.build(kind, 1, dim)(audio[..., None], lengths)
    assert feature_lengths.tolist() == [101, 64] and frame_lengths.tolist() == [100, 63]
    for i, n in enumerate(frame_lengths.tolist()):
        torch.testing.assert_close(frames[i, :n], features[i, :n], atol=1e-4, rtol=0)
    # the check can fail: the data path's old n_fft gives other features
    legacy, _ = FeatureExtractor(kind, n_fft=LEGACY_N_FFT)(audio, lengths)
    assert (legacy[0, :100] - frames[0, :100]).abs().max() > 0.1


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return normalize_per_utterance(x[None], torch.tensor([len(x)]))[0]


def test_the_shared_n_fft_is_the_one_that_matches_kaldi():
    """Why 512 (``ops.framing``): with Kaldi's window, pre-emphasis and DC removal set to
    torchaudio's, Kaldi's fbank (a 512-point FFT) is torchaudio's log-mel at n_fft 512, and not at
    the 400 torchaudio defaults to. Measured: mean |difference| of normalised log-mels 0.003 and 0.08."""
    wave = voiced(1.5, seed=2)
    # Kaldi's frame i of wave[120:] spans samples 120 + 160 i .. + 399: the centred frame i + 2
    reference = kaldi.fbank(
        wave[None, 120:] * 32768, num_mel_bins=80, dither=0.0, window_type="hanning",
        preemphasis_coefficient=0.0, remove_dc_offset=False, low_freq=0.0,
    )  # fmt: skip
    n = len(reference)
    gaps = {}
    for n_fft in (N_FFT, LEGACY_N_FFT):
        mel = torchaudio.transforms.MelSpectrogram(
            SAMPLE_RATE, n_fft=n_fft, win_length=WINDOW, hop_length=HOP, n_mels=80, pad_mode="constant",
            window_fn=lambda size: torch.hann_window(size, periodic=False),  # Kaldi's Hann is symmetric
        )  # fmt: skip
        ours = torch.log(mel(wave) + 1e-6).T[2 : 2 + n]
        gaps[n_fft] = (_normalised(ours) - _normalised(reference)).abs().mean().item()
    assert gaps[N_FFT] < 0.01 < 0.05 < gaps[LEGACY_N_FFT], gaps


def test_the_frontend_ops_parameters_follow_the_shared_frames():
    """fbank's mel matrix has the shared n_fft's bins; learnfb's filters span the shared window
    (its taps are the frame's samples: zero-padding them to n_fft would add taps that see nothing),
    so its frames are fbank's frames."""
    fbank, learnfb = ops.build("fbank", 1, 24), ops.build("learnfb", 1, 24)
    shapes = {k: tuple(v.shape) for k, v in fbank.state_dict().items()}
    assert shapes == {"mel.spectrogram.window": (WINDOW,), "mel.mel_scale.fb": (N_FFT // 2 + 1, 24)}
    assert [tuple(p.shape) for p in learnfb.parameters()] == [(2 * 24, 1, WINDOW)]
    assert (learnfb.stride, learnfb.lookahead) == (fbank.stride, fbank.lookahead) == (HOP, WINDOW // 2 - 1)
    audio, lengths = batch()
    assert torch.equal(learnfb(audio[..., None], lengths)[1], fbank(audio[..., None], lengths)[1])


def test_what_was_recorded_before_n_fft_was_recorded():
    assert n_fft_of("fbank", None) == n_fft_of("mfcc", None) == LEGACY_N_FFT == 400
    assert n_fft_of("kaldi_fbank", None) is None  # Kaldi's padded 512, as ever
    assert FeatureExtractor("kaldi_fbank", n_fft=n_fft_of("kaldi_fbank", None)).n_fft == 512
    assert n_fft_of("fbank", 512) == 512 and n_fft_of("mfcc", 1024) == 1024
    assert n_fft_of("fbank", None, win_length=200) == 200  # 25 ms at 8 kHz: n_fft was the window
    for kind, n_fft in (("fbank", 256), ("fbank", 401), ("kaldi_fbank", 1024)):
        with pytest.raises(ValueError, match="n_fft"):
            FeatureExtractor(kind, n_fft=n_fft)


def tiny_module() -> ASRModule:
    arch = {"name": "tiny", "features": "fbank", "feature_dim": 20, "dim": 16, "input": "linear",
            "layers": ["tdnn-k3-d1"], "head": "linear", "dropout": 0.0}  # fmt: skip
    torch.manual_seed(0)
    return ASRModule(arch, vocab=TOKENIZER.vocab).eval()


def save(module: ASRModule, path, data_state: dict | None) -> str:
    import pytorch_lightning as pl

    saved = {"pytorch-lightning_version": pl.__version__, "state_dict": module.state_dict(),
             "hyper_parameters": dict(module.hparams)}  # fmt: skip
    if data_state is not None:
        saved["SpeechDataModule"] = data_state
    torch.save(saved, path)
    return str(path)


def test_a_checkpoint_gives_the_features_it_was_trained_with(tmp_path):
    """A checkpoint without a recorded n_fft (made before it was) is fed n_fft 400 features, the same
    outputs as then; one that records its n_fft gets it; a new module, the shared one."""
    from supernet.deploy.checkpoint import load_module

    module = tiny_module()
    audio, lengths = batch()
    for name, state, n_fft in (("old", None, 400), ("cmvn-only", {}, 400), ("new", {"n_fft": 512}, 512)):
        loaded = load_module(save(module, tmp_path / f"{name}.ckpt", state))
        assert feature_pipeline(loaded).extractor.n_fft == n_fft, name
        with torch.no_grad():
            features, feature_lengths = FeatureExtractor("fbank", n_mels=20, n_fft=n_fft)(audio, lengths)
            expected = loaded.net(normalize_per_utterance(features, feature_lengths), feature_lengths)[0]
            got = deploy_module(loaded, "waveform")(audio, lengths)[0]
            exported = deploy_module(loaded, "waveform", for_export=True)(audio, lengths)[0]
        torch.testing.assert_close(got, expected, atol=0, rtol=0)
        torch.testing.assert_close(exported, expected, atol=1e-4, rtol=0)  # ConvFeatures' DFT
    assert feature_pipeline(module).extractor.n_fft == N_FFT


def test_the_data_module_records_and_restores_its_n_fft(tmp_path):
    """The n_fft is in every checkpoint's data-module state; a resumed run whose checkpoint has none
    (Lightning then restores nothing) gets the old n_fft through ``ASRModule.on_load_checkpoint``."""
    dm = SpeechDataModule(str(tmp_path), n_mels=20, num_workers=0)
    dm.tokenizer = TOKENIZER
    assert (
        dm.state_dict() == {"n_fft": N_FFT}
        and checkpoint_n_fft({"SpeechDataModule": dm.state_dict()}) == N_FFT
    )
    assert checkpoint_n_fft({}) is None
    resumed = SpeechDataModule(str(tmp_path), n_mels=20, num_workers=0)
    module = tiny_module()
    module._trainer = SimpleNamespace(datamodule=resumed)
    module.on_load_checkpoint({"SpeechDataModule": {"n_fft": N_FFT}})  # Lightning restores this one
    assert resumed.feature_pipeline.extractor.n_fft == N_FFT
    module.on_load_checkpoint({})
    assert resumed.feature_pipeline.extractor.n_fft == LEGACY_N_FFT
    assert resumed.feature_pipeline.extractor.dim == 20 and resumed.feature_pipeline.spec_augment is not None
    resumed.load_state_dict({"n_fft": N_FFT})
    assert resumed.feature_pipeline.extractor.n_fft == N_FFT
    kaldi_dm = SpeechDataModule(str(tmp_path), features="kaldi_fbank", num_workers=0)
    kaldi_dm.load_state_dict({})
    assert kaldi_dm.feature_pipeline.extractor.kaldi_options["round_to_power_of_two"]


def test_an_exported_models_recorded_n_fft_is_honoured():
    """A features-input ONNX model's metadata says its n_fft (400 for every model exported before
    the shared setting); the features computed for it follow that, and one without it gets 400."""
    audio, lengths = batch()
    for n_fft in (LEGACY_N_FFT, N_FFT):
        pipeline = FeaturePipeline("fbank", spec_augment=False, n_mels=20, n_fft=n_fft)
        settings = feature_settings(pipeline)
        assert settings["n_fft"] == n_fft
        rebuilt = _pipeline(settings)
        assert rebuilt.extractor.n_fft == n_fft
        torch.testing.assert_close(rebuilt(audio, lengths)[0], pipeline(audio, lengths)[0], atol=0, rtol=0)
        unrecorded = {k: v for k, v in settings.items() if k != "n_fft"}
        assert _pipeline(unrecorded).extractor.n_fft == LEGACY_N_FFT
