"""The fbank / MFCC front-end in the exported graph: ``FeatureExtractor``'s numbers, with the STFT
as a strided Conv1d over a windowed DFT basis instead of ONNX's ``STFT`` op.

torchaudio's ``MelSpectrogram`` exports (``aten::stft`` -> ONNX ``STFT``), but onnxruntime's STFT
of a 400-point frame (not a power of two) gave log-mels up to 7.1e-4 away from PyTorch's (20 mels),
and tiny attention networks' log-probs 5.6e-4 to 4.6e-3 away, over the 1e-4 parity target. With
the STFT written as below the same networks matched to 4.8e-6 to 2.2e-5
(``scripts/deploy_agreement.py``; docs/deploy.md). The basis is
computed in float64 and stored in float32; the mel filterbank and DCT are torchaudio's own.

A window shorter than ``n_fft`` (the project's 400 samples in a 512-point FFT, ``ops.framing``) is
zero-padded on both sides by ``torch.stft``; the padded samples add nothing, so the kernel spans the
window only (400 taps, 257 bins) and the input is padded so that frame ``j`` starts where
``torch.stft``'s window does. That drops a phase factor ``exp(-2 pi i k offset / n_fft)`` of each
bin, which the power spectrum does not see.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from supernet.data.features import LOG_OFFSET, FeatureExtractor


def dft_basis(window: torch.Tensor, n_fft: int) -> torch.Tensor:
    """``(2 * (n_fft // 2 + 1), 1, len(window))``: windowed cosines then negated sines, one per bin
    of an ``n_fft``-point DFT, so that a convolution gives the real and imaginary parts of a
    one-sided DFT of each frame (of the window's samples, the zero padding up to ``n_fft`` left out)."""
    if len(window) > n_fft:
        raise ValueError(f"a {len(window)}-sample window does not fit a {n_fft}-point DFT")
    n = torch.arange(len(window), dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = (2 * math.pi / n_fft) * torch.remainder(k[:, None] * n[None, :], n_fft)  # exact integers first
    w = window.double()
    return torch.cat([torch.cos(angle) * w, -torch.sin(angle) * w]).float()[:, None, :]


class ConvFeatures(nn.Module):
    """``(audio (B, S), lengths) -> (features (B, T, F), lengths // hop + 1)`` as ``extractor``."""

    def __init__(self, extractor: FeatureExtractor):
        super().__init__()
        if extractor.kind not in ("fbank", "mfcc"):
            raise ValueError(f"no spectral front-end for {extractor.kind!r} features")
        mel = extractor.transform if extractor.kind == "fbank" else extractor.transform.MelSpectrogram
        stft = mel.spectrogram
        if not (stft.center and stft.pad_mode == "constant" and stft.power == 2.0 and not stft.normalized):
            raise ValueError("ConvFeatures covers centred, zero-padded, unnormalised power spectra only")
        if stft.pad:
            raise ValueError("ConvFeatures covers STFTs without extra padding only")
        self.n_fft, self.hop = stft.n_fft, stft.hop_length
        # torch.stft pads n_fft // 2 each side and centres the window in n_fft points
        self.left = stft.n_fft // 2 - (stft.n_fft - stft.win_length) // 2
        self.right = 2 * (stft.n_fft // 2) - stft.n_fft + stft.win_length - self.left  # as many frames
        self.register_buffer("basis", dft_basis(stft.window, stft.n_fft))
        self.register_buffer("mel_fb", mel.mel_scale.fb.clone())
        dct = extractor.transform.dct_mat.clone() if extractor.kind == "mfcc" else None
        self.register_buffer("dct", dct)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padded = F.pad(audio[:, None], (self.left, self.right))
        spectrum = F.conv1d(padded, self.basis, stride=self.hop)
        real, imag = spectrum.chunk(2, dim=1)
        power = (real * real + imag * imag).transpose(1, 2)  # (B, T, bins)
        features = torch.log(torch.matmul(power, self.mel_fb) + LOG_OFFSET)
        if self.dct is not None:
            features = torch.matmul(features, self.dct)
        return features, torch.div(lengths, self.hop, rounding_mode="floor") + 1
