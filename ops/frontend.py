"""Front-ends over a 16 kHz waveform `(B, S, 1)`: `fbank` (log-mel), `mfcc`, `learnfb` (learnable).

All three use the project's frames (`ops.framing`, shared with `supernet.data.features`): 25 ms
windows (400 samples) with a 10 ms hop (stride 160) and zero padding of 200 samples each side, so
output frame `j` covers samples `160j - 200 .. 160j + 199`: stride 160 and a look-ahead of 199
*samples* (the op's input unit). Padding is zeros, not reflection, so that an utterance gives the
same frames alone or padded in a batch. `mfcc` uses log-mels (not dB with a `top_db` clamp, which
would make every frame depend on the utterance's maximum). `fbank` and `mfcc` zero-pad each window
to the shared `N_FFT` (512) points, so `fbank`'s frames are the data path's `fbank` features before
normalisation (`ceil(S / 160)` of them here, `S // 160 + 1` there). `learnfb`'s filters span the
window itself (400 taps): zero taps would see nothing, and learned ones would widen its look-ahead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from ops.base import Op, mask_padding, strided_lengths
from ops.framing import HOP, LOG_FLOOR, N_FFT, SAMPLE_RATE, WINDOW
from ops.registry import Spec, register
from ops.streaming import Window, no_frames, stream_state


class WaveformFrontend(Op):
    """Shared plumbing: mask the waveform, compute `(B, F, frames)`, keep `ceil(S / 160)` frames."""

    stride = HOP
    lookahead = WINDOW // 2 - 1

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        if x.shape[-1] != 1:
            raise ValueError(
                f"{self.spec or type(self).__name__} expects a waveform (B, S, 1), got {tuple(x.shape)}"
            )
        wav = mask_padding(x[..., 0], lengths)
        y = self.features(wav)[..., : self.out_frames(x.shape[1])].transpose(1, 2)
        lengths = strided_lengths(lengths, self.stride)
        return mask_padding(y, lengths), lengths


def _mel_kwargs(n_mels: int) -> dict:
    # torch.stft centres the 400-sample window inside n_fft=512 and pads n_fft // 2 each side,
    # which is the same 200-sample reach each side as the learnable front-end.
    return dict(n_fft=N_FFT, win_length=WINDOW, hop_length=HOP, n_mels=n_mels, pad_mode="constant")


def _spectrum_flops(n_mels: int) -> int:
    bins = N_FFT // 2 + 1
    return int(2 * N_FFT * math.log2(N_FFT)) + bins + bins * n_mels


class FilterbankFrontend(WaveformFrontend):
    """Log-mel filterbank (torchaudio `MelSpectrogram`)."""

    parameter_free = True

    def __init__(self, n_mels: int = 80):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, **_mel_kwargs(n_mels))
        self.n_mels = n_mels

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(wav) + LOG_FLOOR)

    def flops(self, T: int) -> int:
        return self.out_frames(T) * _spectrum_flops(self.n_mels)


class MFCCFrontend(WaveformFrontend):
    """MFCC over log-mels (torchaudio `MFCC`, `log_mels=True`)."""

    parameter_free = True

    def __init__(self, n_mfcc: int = 40):
        super().__init__()
        self.n_mels = max(80, n_mfcc)
        self.mfcc = torchaudio.transforms.MFCC(
            SAMPLE_RATE, n_mfcc=n_mfcc, log_mels=True, melkwargs=_mel_kwargs(self.n_mels)
        )
        self.n_mfcc = n_mfcc

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        return self.mfcc(wav)

    def flops(self, T: int) -> int:
        return self.out_frames(T) * (_spectrum_flops(self.n_mels) + self.n_mels * self.n_mfcc)


def gabor_filters(n_filters: int, width: int = WINDOW, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """`(2 * n, width)` real then imaginary Gabor filters centred on mel-spaced frequencies, each
    with a Gaussian envelope whose bandwidth matches its mel band (as in Zeghidour et al. 2018)."""
    mel = torch.linspace(
        0.0, 2595.0 * math.log10(1.0 + sample_rate / 2 / 700.0), n_filters + 2, dtype=torch.float64
    )
    hz = 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    centre, band = hz[1:-1], (hz[2:] - hz[:-2]) / 2  # band: full width at half maximum, Hz
    sigma_t = (sample_rate / (2 * math.pi * band / 2.355)).clamp(max=width / 6)  # samples
    t = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    envelope = torch.exp(-0.5 * (t / sigma_t[:, None]) ** 2)
    envelope = envelope / envelope.norm(dim=1, keepdim=True)
    phase = 2 * math.pi * centre[:, None] / sample_rate * t
    return torch.cat([envelope * torch.cos(phase), envelope * torch.sin(phase)]).float()


class LearnableFilterbank(WaveformFrontend):
    """Conv1d of 400-sample complex (Gabor) filters, hop 160, squared modulus, log: a learnable
    filterbank that starts close to a mel filterbank."""

    def __init__(self, n_filters: int = 80):
        super().__init__()
        self.conv = nn.Conv1d(1, 2 * n_filters, WINDOW, stride=HOP, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(gabor_filters(n_filters)[:, None])
        self.n_filters = n_filters
        self.window = Window(WINDOW - 1, HOP, WINDOW // 2)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        return self._log_power(F.pad(wav[:, None], (WINDOW // 2, WINDOW // 2)))

    def _log_power(self, padded: torch.Tensor) -> torch.Tensor:
        """Padded `(B, 1, S)` samples -> `(B, F, frames)` log power of each complex filter."""
        real, imag = self.conv(padded).chunk(2, dim=1)
        return torch.log(real**2 + imag**2 + LOG_FLOOR)

    def stream(self, x: torch.Tensor, state: dict | None, final: bool):
        """Samples in, frames out: the last window's samples are kept (under 560)."""
        state = stream_state(state)
        window, _ = self.window.step(state, x.transpose(1, 2), final)
        if window is None:
            return no_frames(x, self.n_filters), state
        return self._log_power(window).transpose(1, 2), state

    def flops(self, T: int) -> int:
        return self.out_frames(T) * 2 * self.n_filters * (WINDOW + 1)


def _check_waveform(spec: Spec, in_dim: int) -> None:
    if in_dim != 1:
        raise ValueError(
            f"op spec {spec.text!r}: a waveform front-end needs in_dim 1 (features: raw), got {in_dim}"
        )


@register("fbank")
def build_fbank(spec: Spec, in_dim: int, out_dim: int | None) -> Op:
    _check_waveform(spec, in_dim)
    return FilterbankFrontend(80 if out_dim is None else out_dim)


@register("mfcc")
def build_mfcc(spec: Spec, in_dim: int, out_dim: int | None) -> Op:
    _check_waveform(spec, in_dim)
    return MFCCFrontend(40 if out_dim is None else out_dim)


@register("learnfb")
def build_learnfb(spec: Spec, in_dim: int, out_dim: int | None) -> Op:
    _check_waveform(spec, in_dim)
    return LearnableFilterbank(80 if out_dim is None else out_dim)
