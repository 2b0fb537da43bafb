"""Features computed on the model's device: log-mel / MFCC / raw waveform / Kaldi fbank,
normalisation (per utterance, or global from the train split's statistics) and SpecAugment, all
length-aware.

Frames are 25 ms windows every 10 ms, centred, with zero (`constant`) padding: frame i of an
utterance then sees the same samples whether it is alone or padded in a batch, so valid frames never
depend on the padding. An utterance of L samples has `L // hop + 1` frames (1.0 s at 16 kHz: 101).
Each 400-sample window is zero-padded to a 512-point FFT (`n_fft`), the setting the waveform
front-end ops share (`ops.framing` says why 512). Features made before that setting used n_fft 400
(`LEGACY_N_FFT`): a checkpoint or exported model that does not record its n_fft gets that.

`kaldi_fbank` is Kaldi's `compute-fbank-feats` (`torchaudio.compliance.kaldi.fbank`, Kaldi's
defaults: povey window, pre-emphasis 0.97, DC removal, 512-point FFT, 20 Hz to Nyquist) with
`snip_edges=True`: frames start at sample 0 and only whole windows count, so L samples give
`1 + (L - 400) // 160` frames at 16 kHz (none below 400 samples; 1.0 s: 98), two or three fewer
than the centred kinds. Each utterance gets the frames Kaldi computes from its own samples, scaled to
16-bit integers as Kaldi reads a WAV, with dither 0 in training and evaluation alike (Kaldi's
default dither of 1 would make the features random; SpecAugment and `--data.noise` are the
augmentation).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.transforms as T
from torch import nn

from ops.framing import HOP_MS, LOG_FLOOR, WINDOW, WINDOW_MS, padded_fft_size
from supernet.data.audio import TARGET_SAMPLE_RATE

FEATURE_KINDS = ("fbank", "mfcc", "raw", "kaldi_fbank")
NORMALISATIONS = ("utterance", "global")
LOG_OFFSET = LOG_FLOOR
KALDI_SCALE = 32768.0  # Kaldi reads 16-bit samples as integers; our waveforms are in [-1, 1]
# fbank / mfcc before n_fft was one setting: the window's 400 samples, unpadded (kaldi_fbank has
# always used Kaldi's padded 512); ``n_fft_of`` says it for any rate
LEGACY_N_FFT = WINDOW


def n_fft_of(kind: str, recorded: int | None, win_length: int = WINDOW) -> int | None:
    """The ``n_fft`` that features of ``kind`` were made with, from what a checkpoint or exported
    model recorded; ``recorded`` None: saved before n_fft was recorded, when `fbank` and `mfcc` used
    the window's length (``LEGACY_N_FFT`` at 16 kHz) and `kaldi_fbank` Kaldi's padded size (None
    here: ``FeatureExtractor``'s default)."""
    if recorded is not None:
        return int(recorded)
    return win_length if kind in ("fbank", "mfcc") else None


def num_frames(num_samples: torch.Tensor | int, hop_length: int) -> torch.Tensor | int:
    """Frames of a centred STFT over `num_samples` samples."""
    return num_samples // hop_length + 1


def kaldi_num_frames(num_samples: torch.Tensor, win_length: int, hop_length: int) -> torch.Tensor:
    """Frames of Kaldi's `snip_edges=True` framing: whole windows only, none for a short input."""
    return torch.where(num_samples >= win_length, 1 + (num_samples - win_length) // hop_length, 0)


def lengths_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """`(B, T)` bool, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def normalize_per_utterance(x: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per utterance and channel over valid frames of `(B, T, F)`; padded
    frames set to zero."""
    mask = lengths_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
    count = lengths.clamp(min=1).to(x.dtype)[:, None, None]
    mean = (x * mask).sum(1, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (x - mean) / torch.sqrt(var + eps) * mask


class GlobalCMVN(nn.Module):
    """Zero mean and unit variance per channel with fixed statistics, those of the train split.

    Each frame is normalised alone, so a stream normalises a chunk as the whole utterance would be
    normalised; per-utterance normalisation reads every frame of the utterance first, which a
    stream cannot. The variance is biased and gets ``eps`` as ``normalize_per_utterance``'s does.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, frames: int = 0):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.frames = frames  # how many frames the statistics came from

    @classmethod
    def fit(cls, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], eps: float = 1e-5) -> GlobalCMVN:
        """Statistics of every valid frame of ``(features (B, T, F), lengths (B,))`` batches,
        summed in float64 (a corpus has millions of frames)."""
        count, total, squares = 0, None, None
        for features, lengths in batches:
            valid = features[lengths_mask(lengths.to(features.device), features.shape[1])].double()
            total = valid.sum(0) if total is None else total + valid.sum(0)
            squares = (valid**2).sum(0) if squares is None else squares + (valid**2).sum(0)
            count += len(valid)
        if not count:
            raise ValueError("global CMVN needs at least one feature frame")
        mean = total / count
        var = (squares / count - mean**2).clamp(min=0.0)
        return cls(mean.float(), torch.sqrt(var + eps).float(), count)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, T, F)`` normalised; with ``lengths``, padded frames set to zero."""
        x = (x - self.mean) / self.std
        if lengths is None:
            return x
        return x * lengths_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "frames": self.frames}

    @classmethod
    def from_dict(cls, data: dict) -> GlobalCMVN:
        return cls(torch.tensor(data["mean"]), torch.tensor(data["std"]), int(data.get("frames", 0)))


class SpecAugment(nn.Module):
    """Frequency and time masks (Park et al. 2019) that stay inside each utterance's valid frames.

    Time masks are at most `time_width` frames and at most `time_ratio` of the utterance, so short
    utterances are not wiped out. Masked values are set to `fill` (0 = the mean after normalisation).
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width: int = 40,
        time_ratio: float = 0.2,
        fill: float = 0.0,
    ):
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width, self.time_ratio = time_masks, time_width, time_ratio
        self.fill = fill

    @staticmethod
    def _band_mask(size: int, limit: torch.Tensor, max_width: torch.Tensor, count: int) -> torch.Tensor:
        """`(B, size)` bool: `count` bands per row, width ~ U[0, max_width], inside `[0, limit)`."""
        batch = limit.shape[0]
        device = limit.device
        positions = torch.arange(size, device=device)[None, :]
        mask = torch.zeros(batch, size, dtype=torch.bool, device=device)
        for _ in range(count):
            width = (torch.rand(batch, device=device) * (max_width + 1).float()).long().clamp(max=limit)
            start = (torch.rand(batch, device=device) * (limit - width + 1).float()).long()
            mask |= (positions >= start[:, None]) & (positions < (start + width)[:, None])
        return mask

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, frames, dims = x.shape
        lengths = lengths.to(x.device)
        mask = torch.zeros(batch, frames, dims, dtype=torch.bool, device=x.device)
        if self.freq_masks and dims > 1:
            freq_limit = torch.full((batch,), dims, device=x.device)
            freq_width = torch.full((batch,), min(self.freq_width, dims), device=x.device)
            mask |= self._band_mask(dims, freq_limit, freq_width, self.freq_masks)[:, None, :]
        if self.time_masks:
            time_width = torch.minimum(
                torch.full_like(lengths, self.time_width), (lengths.float() * self.time_ratio).long()
            )
            mask |= self._band_mask(frames, lengths, time_width, self.time_masks)[:, :, None]
        return x.masked_fill(mask, self.fill)


class FeatureExtractor(nn.Module):
    """`(audio (B, S), lengths (B,)) -> (features (B, T, F), feature_lengths (B,))`.

    `fbank`: log of `n_mels` mel energies. `mfcc`: `n_mfcc` cepstra of the same log-mels.
    `raw`: the waveform itself as `(B, S, 1)`, for a learnable front-end. `kaldi_fbank`: Kaldi's
    `n_mels` log-mel filterbank (module docstring), one torchaudio call per batch.

    `n_fft`: the FFT size of each zero-padded window; None, the project's setting (the window rounded
    up to a power of two: 512 for 25 ms at 16 kHz, as `ops.framing.N_FFT`). `fbank` and `mfcc` take
    any even size from the window up (`LEGACY_N_FFT` for features made before the setting); Kaldi's
    fbank takes the window or its padded size only (`round_to_power_of_two`).
    """

    def __init__(
        self,
        kind: str = "fbank",
        sample_rate: int = TARGET_SAMPLE_RATE,
        n_mels: int = 80,
        n_mfcc: int = 40,
        win_ms: float = WINDOW_MS,
        hop_ms: float = HOP_MS,
        n_fft: int | None = None,
    ):
        super().__init__()
        if kind not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {', '.join(FEATURE_KINDS)}; got {kind!r}")
        self.kind = kind
        self.win_length = round(sample_rate * win_ms / 1000)
        self.hop_length = round(sample_rate * hop_ms / 1000)
        if kind == "kaldi_fbank":  # Kaldi's own rounding of the window and shift (int, not round)
            self.win_length = int(sample_rate * win_ms * 0.001)
            self.hop_length = int(sample_rate * hop_ms * 0.001)
        self.n_fft = padded_fft_size(self.win_length) if n_fft is None else int(n_fft)
        if self.n_fft < self.win_length or (self.n_fft % 2 and kind != "kaldi_fbank"):
            raise ValueError(
                f"n_fft must be even (an odd one changes the frame count) and at least the "
                f"{self.win_length}-sample window; got {self.n_fft}"
            )
        if kind == "kaldi_fbank" and self.n_fft not in (self.win_length, padded_fft_size(self.win_length)):
            raise ValueError(
                f"kaldi_fbank's n_fft is the window ({self.win_length}) or its power-of-two padding "
                f"({padded_fft_size(self.win_length)}), got {self.n_fft}"
            )
        mel_kwargs = dict(
            n_fft=self.n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            n_mels=n_mels,
            center=True,
            pad_mode="constant",
        )
        if kind == "fbank":
            self.transform = T.MelSpectrogram(sample_rate=sample_rate, **mel_kwargs)
            self.dim = n_mels
        elif kind == "mfcc":
            # log_mels=True: log(mel + 1e-6) per frame; the default dB scaling clamps to the batch max,
            # which would make one utterance's features depend on its batch mates.
            self.transform = T.MFCC(
                sample_rate=sample_rate, n_mfcc=n_mfcc, log_mels=True, melkwargs=mel_kwargs
            )
            self.dim = n_mfcc
        elif kind == "kaldi_fbank":
            self.transform = None
            self.dim = n_mels
            self.kaldi_options = dict(
                num_mel_bins=n_mels,
                frame_length=win_ms,
                frame_shift=win_ms,  # the windows come cut already, end to end (`_kaldi_fbank`)
                sample_frequency=sample_rate,
                dither=0.0,
                snip_edges=True,
                round_to_power_of_two=self.n_fft != self.win_length,
            )
        else:
            self.transform = None
            self.dim = 1

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.kind == "kaldi_fbank":
            return kaldi_num_frames(lengths, self.win_length, self.hop_length)
        return lengths if self.kind == "raw" else num_frames(lengths, self.hop_length)

    def _kaldi_fbank(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each utterance's Kaldi fbank, zero-padded to the longest, in one torchaudio call.

        Kaldi's fbank is frame-local (DC removal, pre-emphasis, window, FFT and mel of one window at
        a time; no dither, energy or mean subtraction here), so the batch's valid windows, cut with
        `unfold` and laid end to end, framed at a shift of one window, give each utterance the
        frames of a call on its own samples, to float rounding (2e-6 on an H200, where this took
        1.4 ms for 32 utterances of 1-3 s and a call per utterance 24 ms). Selecting the valid
        windows reads the lengths on the host once per batch."""
        frame_lengths = self.output_lengths(lengths)
        longest = int(self.output_lengths(torch.tensor(audio.shape[1])))
        features = audio.new_zeros(audio.shape[0], longest, self.dim)
        if longest == 0:
            return features, frame_lengths
        windows = audio.unfold(1, self.win_length, self.hop_length)  # (B, longest, win)
        valid = lengths_mask(frame_lengths, longest)
        frames = windows[valid]
        if len(frames):
            features[valid] = kaldi.fbank(frames.reshape(1, -1) * KALDI_SCALE, **self.kaldi_options)
        return features, frame_lengths

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "raw":
            return audio.unsqueeze(-1), lengths
        if self.kind == "kaldi_fbank":
            return self._kaldi_fbank(audio, lengths)
        spec = self.transform(audio)  # (B, F, T)
        if self.kind == "fbank":
            spec = torch.log(spec + LOG_OFFSET)
        return spec.transpose(1, 2), self.output_lengths(lengths)


class FeaturePipeline(nn.Module):
    """Extraction -> normalisation -> SpecAugment (only when `augment`), padding zero.

    `normalisation`: `utterance` (each utterance's own statistics) or `global` (`GlobalCMVN`, the
    train split's statistics, set by `fit_cmvn` or assigned to `cmvn`; what streaming needs).
    """

    def __init__(
        self,
        kind: str = "fbank",
        spec_augment: bool = True,
        normalisation: str = "utterance",
        **extractor_kwargs,
    ):
        super().__init__()
        if normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {', '.join(NORMALISATIONS)}; got {normalisation!r}"
            )
        self.normalisation = normalisation
        self.cmvn: GlobalCMVN | None = None
        self.extractor_kwargs = extractor_kwargs
        self.extractor = FeatureExtractor(kind, **extractor_kwargs)
        # A waveform has no frequency axis and time masks on samples are not SpecAugment: raw skips it.
        self.spec_augment = SpecAugment() if spec_augment and kind != "raw" else None

    @property
    def feature_dim(self) -> int:
        return self.extractor.dim

    def use_n_fft(self, n_fft: int | None) -> None:
        """Extract with ``n_fft`` from now on (None: the project's), all else as it was: the setting a
        checkpoint recorded (``n_fft_of``)."""
        kwargs = {**self.extractor_kwargs, "n_fft": n_fft}
        extractor = FeatureExtractor(self.extractor.kind, **kwargs)
        if extractor.n_fft != self.extractor.n_fft:
            self.extractor, self.extractor_kwargs = extractor, kwargs

    def use_recorded_n_fft(self, recorded: int | None) -> None:
        """Extract as a checkpoint's features were made: ``recorded`` its ``n_fft`` (None: saved
        before n_fft was recorded, ``n_fft_of``)."""
        self.use_n_fft(n_fft_of(self.extractor.kind, recorded, self.extractor.win_length))

    @torch.no_grad()
    def fit_cmvn(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> GlobalCMVN:
        """Global statistics of the features of ``(audio (B, S), lengths)`` batches (the train split,
        unaugmented), kept as ``cmvn``."""
        self.cmvn = GlobalCMVN.fit(self.extractor(audio.float(), lengths) for audio, lengths in batches)
        return self.cmvn

    @torch.no_grad()
    def forward(
        self, audio: torch.Tensor, lengths: torch.Tensor, augment: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, feature_lengths = self.extractor(audio.float(), lengths)
        if self.normalisation == "utterance":
            features = normalize_per_utterance(features, feature_lengths)
        elif self.cmvn is None:
            raise RuntimeError("global normalisation needs the train split's statistics: call fit_cmvn first")
        else:
            features = self.cmvn(features, feature_lengths)
        if augment and self.spec_augment is not None:
            features = self.spec_augment(features, feature_lengths)
        return features, feature_lengths
