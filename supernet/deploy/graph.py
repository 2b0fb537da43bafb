"""The module that is exported: a retrained network with or without its feature front-end.

Either way the signature is the ONNX model's: ``(inputs, lengths) -> (log_probs (B, T', V),
out_lengths (B,))``. With the front-end the inputs are waveforms ``(B, S)`` at the model's sample
rate; without it, the normalised features ``(B, T, F)`` that ``FeaturePipeline`` makes (the
metadata says exactly which, see ``feature_settings``).
"""

from __future__ import annotations

import torch
from torch import nn

from supernet.asr_module import ASRModule
from supernet.data.features import (
    LOG_OFFSET,
    FeatureExtractor,
    FeaturePipeline,
    lengths_mask,
    n_fft_of,
    normalize_per_utterance,
)

INPUT_KINDS = ("waveform", "features")
INPUT_NAMES = {"waveform": ("audio", "lengths"), "features": ("features", "lengths")}
OUTPUT_NAMES = ("log_probs", "out_lengths")
NORMALISATION_EPS = 1e-5  # ``normalize_per_utterance``'s default


class WaveformCTC(nn.Module):
    """Waveform -> features -> normalisation -> network, as ``supernet evaluate`` scores it.

    Samples past each length are zeroed first: the data loader pads with zeros, and a caller that
    pads with anything else must get the same numbers (frames near the end read past the length).
    ``features`` is the ``FeatureExtractor`` or its exportable twin (``ConvFeatures``).
    """

    def __init__(self, features: nn.Module, net: nn.Module, cmvn: nn.Module | None = None):
        super().__init__()
        self.features, self.net, self.cmvn = features, net, cmvn  # cmvn: global statistics, or None

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        audio = audio.float() * lengths_mask(lengths, audio.shape[1]).to(torch.float32)
        features, feature_lengths = self.features(audio, lengths)
        if self.cmvn is None:
            features = normalize_per_utterance(features, feature_lengths)
        else:
            features = self.cmvn(features, feature_lengths)
        return self.net(features, feature_lengths)


def feature_pipeline(module: ASRModule) -> FeaturePipeline:
    """The features the module was trained on, without SpecAugment: normalised per utterance, or
    with the global statistics it was trained with (``module.cmvn``, set by ``load_module``), at the
    FFT size it was trained with (a checkpoint's ``checkpoint_n_fft``; a new module: the project's)."""
    spec = module.spec
    mels = {"n_mels": spec.feature_dim}
    sizes = {"fbank": mels, "kaldi_fbank": mels, "mfcc": {"n_mfcc": spec.feature_dim}}.get(spec.features, {})
    if "checkpoint_n_fft" in vars(module):
        sizes = {**sizes, "n_fft": n_fft_of(spec.features, module.checkpoint_n_fft)}
    cmvn = getattr(module, "cmvn", None)
    normalisation = "utterance" if cmvn is None else "global"
    pipeline = FeaturePipeline(spec.features, spec_augment=False, normalisation=normalisation, **sizes)
    pipeline.cmvn = cmvn
    if pipeline.feature_dim != spec.feature_dim:
        raise ValueError(
            f"architecture {spec.name!r} expects {spec.feature_dim}-d {spec.features} features, "
            f"the pipeline makes {pipeline.feature_dim}"
        )
    return pipeline


def deploy_module(module: ASRModule, input_kind: str, for_export: bool = False) -> nn.Module:
    """The eval-mode module with ``input_kind`` inputs (``waveform`` or ``features``): PyTorch's
    own pipeline, or with ``for_export`` the graph that is exported (its spectral front-end
    computed by ``ConvFeatures``, see ``supernet.deploy.frontend``)."""
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input kind must be one of {', '.join(INPUT_KINDS)}, got {input_kind!r}")
    net = module.net.eval()
    if input_kind == "features":
        return net
    pipeline = feature_pipeline(module)
    extractor = pipeline.extractor
    if for_export and extractor.kind != "raw":
        from supernet.deploy.frontend import ConvFeatures

        return WaveformCTC(ConvFeatures(extractor), net, pipeline.cmvn).eval()
    return WaveformCTC(extractor, net, pipeline.cmvn).eval()


def _normalisation(pipeline: FeaturePipeline) -> dict:
    if pipeline.cmvn is not None:
        return {
            "what": "global: (features - mean) / std per channel, the train split's statistics; padded frames zero",
            "mean": pipeline.cmvn.mean.tolist(),
            "std": pipeline.cmvn.std.tolist(),
        }
    return {
        "what": "per utterance and channel: zero mean, unit variance over the valid frames; padded frames zero",
        "eps": NORMALISATION_EPS,
        "variance": "biased (divided by the number of valid frames)",
    }


def feature_settings(pipeline: FeaturePipeline) -> dict:
    """Everything needed to compute the network's input features without supernet's code."""
    extractor = pipeline.extractor
    settings = {
        "kind": extractor.kind,
        "dim": extractor.dim,
        "sample_rate": sample_rate_of(extractor),
        "normalisation": _normalisation(pipeline),
        "padding_value": 0.0,
    }
    if extractor.kind == "raw":
        return {**settings, "frames": "one per sample, shape (B, S, 1)"}
    mel = extractor.transform if extractor.kind == "fbank" else extractor.transform.MelSpectrogram
    stft = {
        "n_fft": extractor.n_fft,
        "win_length": extractor.win_length,
        "hop_length": extractor.hop_length,
        "window": "hann (periodic) of win_length samples, zero-padded each side to n_fft (torch.stft)",
        "center": True,
        "pad_mode": "constant (zeros)",
        "power": 2.0,
        "frames": "num_samples // hop_length + 1",
    }
    mels = {
        "n_mels": mel.n_mels,
        "f_min": mel.f_min,
        "f_max": mel.f_max or settings["sample_rate"] / 2,
        "mel_scale": mel.mel_scale.mel_scale,
        "mel_norm": mel.mel_scale.norm,
    }
    if extractor.kind == "fbank":
        return {**settings, **stft, **mels, "log": f"natural log of (mel power + {LOG_OFFSET})"}
    return {
        **settings,
        **stft,
        **mels,
        "n_mfcc": extractor.transform.n_mfcc,
        "log": f"natural log of (mel power + {LOG_OFFSET}), then DCT-II ({extractor.transform.norm})",
    }


def sample_rate_of(extractor: FeatureExtractor) -> int:
    """The rate the extractor expects its waveforms at (raw audio: the project's 16 kHz)."""
    if extractor.transform is None:
        from supernet.data.audio import TARGET_SAMPLE_RATE

        return TARGET_SAMPLE_RATE
    return int(extractor.transform.sample_rate)
