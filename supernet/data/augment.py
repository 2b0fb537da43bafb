"""Waveform augmentation of training utterances: speed perturbation and additive noise.

Both are off by default and touch the `train` split only (never arch, dev or test: the arch step,
like SpecAugment's, sees clean data). Each utterance's draw comes from a generator seeded by
`(seed, epoch, index)`, so an epoch's augmentation is the same however many loader workers there
are, and a resumed run replays it. Workers learn the epoch from the batch keys, not from their copy
of the dataset (`EpochKeySampler`), because persistent workers never see a later `set_epoch`.

Speed perturbation (Ko et al. 2015; Kaldi's and ESPnet's `speed_perturb`, sox `speed`): the
waveform is resampled from `round(rate * factor)` Hz to `rate` with torchaudio and then read at
`rate`, so tempo and pitch change together; one factor of the list is drawn per utterance and
epoch (list a factor twice to weight it; include 1.0 for clean copies). A factor below 1 makes the
audio longer: an utterance of L samples becomes `ceil(L / factor)` (`perturbed_length`, exactly
torchaudio's length). Batching accounts for it rather than capping the audio: the bucket sampler
sizes the train batches by each utterance's length at the slowest factor, so `max_frames` holds
whatever factor is drawn, and the CTC check weighs each train utterance at the fastest factor.

Noise: with probability `prob`, noise is added at an SNR drawn uniformly from `snr_db`, where the
SNR is the power of the whole (speed-perturbed) utterance over the noise's power. The noise is a
random stretch of a random `.wav`/`.flac` below `dir` (searched recursively, MUSAN-like; resampled
to the data's rate, looped when shorter than the utterance), or, with `dir: null`, white, pink or
brown noise generated as the built-in corpus makes it (`corpus.coloured_noise`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
import torchaudio.transforms as T

from supernet.data.audio import AudioError, AudioInfo, audio_info, to_mono
from supernet.data.buckets import DurationBucketSampler
from supernet.data.corpus import NOISE_COLOURS, SNR_DB, coloured_noise
from supernet.errors import UserError

SPEED_LIMITS = (0.5, 2.0)  # beyond these, resampling no longer sounds like speech at another pace
NOISE_SUFFIXES = (".wav", ".flac")
NOISE_DEFAULTS = {"dir": None, "snr_db": list(SNR_DB), "prob": 1.0, "colours": list(NOISE_COLOURS)}
AUGMENT_SALT = 0x5A  # keeps these streams apart from any other use of (seed, epoch, index)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def speed_factors(value: Sequence[float] | None) -> tuple[float, ...]:
    """`--data.speed_perturb` checked: a non-empty list of factors in `SPEED_LIMITS`; None: off."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise UserError(
            f"data.speed_perturb must be a non-empty list of factors like [0.9, 1.0, 1.1], got {value!r}"
        )
    low, high = SPEED_LIMITS
    bad = [f for f in value if not _is_number(f) or not low <= f <= high]
    if bad:
        raise UserError(f"data.speed_perturb: factors must be numbers in [{low}, {high}], got {bad}")
    return tuple(float(f) for f in value)


@dataclass(frozen=True)
class NoiseOptions:
    """`--data.noise`: `{dir: PATH | null, snr_db: [low, high], prob: p, colours: [white, pink, brown]}`,
    every field optional (`NOISE_DEFAULTS`); `colours` applies only without `dir`."""

    dir: str | None
    snr_db: tuple[float, float]
    prob: float
    colours: tuple[str, ...]

    @classmethod
    def parse(cls, value: Mapping | None) -> NoiseOptions | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise UserError(
                f"data.noise must be a mapping like {{dir: null, snr_db: [10, 30], prob: 0.5}}, got {value!r}"
            )
        unknown = sorted(set(value) - set(NOISE_DEFAULTS))
        if unknown:
            raise UserError(
                f"data.noise: unknown field(s) {', '.join(map(str, unknown))}; accepted: {', '.join(NOISE_DEFAULTS)}"
            )
        fields = {**NOISE_DEFAULTS, **value}
        folder = fields["dir"]
        if folder is not None and (not isinstance(folder, str | Path) or not str(folder).strip()):
            raise UserError(f"data.noise.dir must be a folder path or null, got {folder!r}")
        snr = fields["snr_db"]
        snr = [snr, snr] if _is_number(snr) else snr
        if not isinstance(snr, Sequence) or len(snr) != 2 or not all(map(_is_number, snr)) or snr[0] > snr[1]:
            raise UserError(
                f"data.noise.snr_db must be [low, high] in dB with low <= high (or one number), got {fields['snr_db']!r}"
            )
        prob = fields["prob"]
        if not _is_number(prob) or not 0.0 <= prob <= 1.0:
            raise UserError(f"data.noise.prob must be a probability in [0, 1], got {prob!r}")
        colours = fields["colours"]
        if isinstance(colours, str) or not isinstance(colours, Sequence) or not colours:
            raise UserError(
                f"data.noise.colours must be a non-empty list of {', '.join(NOISE_COLOURS)}, got {colours!r}"
            )
        unknown_colours = [c for c in colours if c not in NOISE_COLOURS]
        if unknown_colours:
            raise UserError(
                f"data.noise.colours: unknown {unknown_colours}; choose from {', '.join(NOISE_COLOURS)}"
            )
        return cls(
            None if folder is None else str(folder),
            (float(snr[0]), float(snr[1])),
            float(prob),
            tuple(colours),
        )


# ----------------------------------------------------------------------------- speed


def perturbed_length(num_samples: int, factor: float, sample_rate: int) -> int:
    """Samples after speed perturbation by `factor`: torchaudio's `ceil(new * L / orig)` with the
    rates reduced by their gcd, i.e. `ceil(L / factor)` for a factor that is a multiple of 1/rate."""
    orig = round(sample_rate * factor)
    if orig == sample_rate:
        return num_samples
    gcd = math.gcd(orig, sample_rate)
    return math.ceil((sample_rate // gcd) * num_samples / (orig // gcd))


class SpeedPerturb:
    """Resamples `round(rate * factor)` Hz -> `rate`; kernels cached per factor (per worker)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self._resamplers: dict[int, T.Resample] = {}

    def __call__(self, audio: torch.Tensor, factor: float) -> torch.Tensor:
        orig = round(self.sample_rate * factor)
        if orig == self.sample_rate:
            return audio
        if orig not in self._resamplers:
            self._resamplers[orig] = T.Resample(orig, self.sample_rate)
        return self._resamplers[orig](audio)


# ----------------------------------------------------------------------------- noise


def noise_files(folder: str | Path) -> list[tuple[Path, AudioInfo]]:
    """Every `.wav`/`.flac` below `folder` (sorted, so the draws do not depend on the file system)
    with its header; an unreadable or empty file is a `UserError` naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"data.noise.dir: {folder} is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in NOISE_SUFFIXES and p.is_file())
    if not paths:
        raise UserError(f"data.noise.dir: no {' or '.join(NOISE_SUFFIXES)} file below {folder}")
    files = []
    for path in paths:
        info = audio_info(path)
        if info.frames == 0:
            raise AudioError(f"{path}: noise file has zero length")
        files.append((path, info))
    return files


def _read_span(path: Path, start: int, frames: int) -> np.ndarray:
    try:
        samples, _ = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: cannot decode noise audio ({err})") from err
    return to_mono(samples)


class NoiseSource:
    """Noise of `n` samples at `sample_rate`, drawn with a given numpy generator."""

    def __init__(self, options: NoiseOptions, sample_rate: int):
        self.options = options
        self.sample_rate = sample_rate
        self.files = noise_files(options.dir) if options.dir is not None else []

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """`(noise (n,) float64, what it is)`: a file's random stretch, or generated coloured noise."""
        if not self.files:
            colour = self.options.colours[int(rng.integers(len(self.options.colours)))]
            return coloured_noise(n, NOISE_COLOURS[colour], rng), colour
        path, info = self.files[int(rng.integers(len(self.files)))]
        needed = math.ceil(n * info.sample_rate / self.sample_rate)  # file samples that resample to >= n
        start = int(rng.integers(info.frames - needed + 1)) if info.frames >= needed else 0
        samples = _read_span(path, start, min(needed, info.frames))
        if info.sample_rate != self.sample_rate:
            samples = AF.resample(torch.from_numpy(samples), info.sample_rate, self.sample_rate).numpy()
        if samples.size < n:  # a short file loops, from a random point
            offset = int(rng.integers(samples.size))
            samples = np.tile(samples, n // samples.size + 2)[offset : offset + n]
        return samples[:n].astype(np.float64), str(path)


def add_noise(audio: torch.Tensor, noise: np.ndarray, snr_db: float) -> torch.Tensor:
    """`audio + g * noise` with `g` such that `10 log10(P(audio) / P(g * noise)) == snr_db` (P: mean
    square over the whole utterance). A silent utterance stays silent, and a silent stretch of a
    noise file adds nothing (no gain reaches an SNR; a run should not stop on it)."""
    signal = audio.double().numpy()
    signal_power = float(np.mean(signal**2))
    noise_power = float(np.mean(noise**2))
    if noise_power <= 0.0:
        return audio
    gain = math.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return torch.from_numpy(signal + gain * noise).to(audio.dtype)


# ----------------------------------------------------------------------------- both, per utterance


class Augmenter:
    """Speed perturbation then noise for the train split, drawn from `(seed, epoch, index)`."""

    def __init__(self, speeds: tuple[float, ...], noise: NoiseOptions | None, seed: int, sample_rate: int):
        self.speeds = speeds
        self.noise = noise
        self.seed = int(seed)
        self.sample_rate = sample_rate
        self.speed = SpeedPerturb(sample_rate)
        self.noise_source = NoiseSource(noise, sample_rate) if noise is not None else None

    @classmethod
    def from_options(
        cls, speed_perturb: Sequence[float] | None, noise: Mapping | None, seed: int, sample_rate: int
    ) -> Augmenter | None:
        """The augmenter of the data module's options, or None when both are off."""
        speeds, options = speed_factors(speed_perturb), NoiseOptions.parse(noise)
        if not speeds and options is None:
            return None
        return cls(speeds, options, seed, sample_rate)

    def generators(self, epoch: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
        """Independent streams for the speed and the noise draws of one utterance in one epoch."""
        entropy = [AUGMENT_SALT, self.seed % 2**63, int(epoch), int(index)]
        return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(entropy).spawn(2))

    def __call__(self, audio: torch.Tensor, epoch: int, index: int) -> torch.Tensor:
        speed_rng, noise_rng = self.generators(epoch, index)
        if self.speeds:
            audio = self.speed(audio, self.speeds[int(speed_rng.integers(len(self.speeds)))])
        if self.noise_source is not None and noise_rng.random() < self.noise.prob:
            snr_db = float(noise_rng.uniform(*self.noise.snr_db))
            noise, _ = self.noise_source.draw(len(audio), noise_rng)
            audio = add_noise(audio, noise, snr_db)
        return audio

    def longest_samples(self, num_samples: int) -> int:
        """Samples of the longest version of an utterance (slowest factor): what batches are sized by."""
        return perturbed_length(num_samples, min(self.speeds, default=1.0), self.sample_rate)

    def shortest_samples(self, num_samples: int) -> int:
        """Samples of the shortest version (fastest factor): what the CTC check weighs."""
        return perturbed_length(num_samples, max(self.speeds, default=1.0), self.sample_rate)

    def describe(self) -> str:
        parts = []
        if self.speeds:
            parts.append("speed " + "/".join(f"{f:g}" for f in self.speeds))
        if self.noise is not None:
            source = self.noise.dir or "/".join(self.noise.colours) + " noise"
            low, high = self.noise.snr_db
            parts.append(f"noise {source} at {low:g}-{high:g} dB SNR, p={self.noise.prob:g}")
        return "augment (train only): " + "; ".join(parts)


class EpochKeySampler(DurationBucketSampler):
    """A `DurationBucketSampler` whose batches hold `(epoch, index)` keys, so that the dataset, in
    whichever worker (persistent ones too), draws an item's augmentation knowing its epoch.

    Lightning tells the epoch only to `batch_sampler.sampler.set_epoch` (`_set_sampler_epoch`), so
    `sampler` is this sampler itself. (The plain `DurationBucketSampler` has no `sampler`: under
    Lightning it stays at epoch 0, and its batch order is the same every epoch.)"""

    @property
    def sampler(self) -> EpochKeySampler:
        return self

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        for batch in super().__iter__():
            yield [(epoch, index) for index in batch]
