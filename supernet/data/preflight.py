"""Checks that run before the first training step, so that bad data stops a run in seconds, not
at step 5 or after hours of training.

Audio: every utterance's file is probed (`supernet.data.audio.probe_audio`: header, then its last frames,
so a truncated file fails) and its header duration compared with the manifest's. The results are
cached per manifest under `cache_root()`, keyed by the manifest's bytes and each audio file's size
and mtime, so a second run costs a hash and a `stat` per file.

CTC: an utterance whose label sequence needs more frames than the network emits is infeasible;
CTC's `zero_infinity` would silently give it a loss of exactly 0. `ctc_fits` computes both sides
exactly as training does: the labels are the tokenizer's own (characters, or subword pieces, of
which a transcript needs fewer).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from supernet.data.audio import TARGET_SAMPLE_RATE, AudioError, AudioInfo, probe_audio
from supernet.data.features import kaldi_num_frames, num_frames
from supernet.data.manifest import DURATION_TOLERANCE_S, Problem, Utterance, audio_problems
from supernet.data.tokenizer import Tokenizer
from supernet.outputs import atomic_write_json

CACHE_VERSION = 1  # bump when what a probe checks changes: old results are then ignored
PROGRESS_MIN_FILES = 200  # a progress bar below this would only flicker
PROBE_THREADS = 8  # probing is I/O bound (libsndfile releases the GIL): threads help on network disks
HOP_MS = 10.0
WIN_MS = 25.0


# ----------------------------------------------------------------------------- audio


def cache_root() -> Path:
    """`$SUPERNET_CACHE`, else `$XDG_CACHE_HOME/supernet`, else `~/.cache/supernet`."""
    if os.environ.get("SUPERNET_CACHE"):
        return Path(os.environ["SUPERNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "supernet"


def _audio_cache_folder() -> Path | None:
    """Where probe results go; None (no caching) when it cannot be created or written."""
    folder = cache_root() / "audio-check"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


@dataclass
class AudioCheck:
    """What probing found: header facts of the good files, and problems by manifest line."""

    checked: int = 0
    infos: dict[str, AudioInfo] = field(default_factory=dict)  # audio path -> header facts
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def bad_sources(self) -> set[str]:
        """`manifest:line` of every utterance with an error."""
        return {p.where for p in self.errors}

    def describe_errors(self, limit: int = 10) -> str:
        errors = self.errors
        shown = "; ".join(f"{p.where}: {p.message}" for p in errors[:limit])
        more = f"; ... and {len(errors) - limit} more" if len(errors) > limit else ""
        return f"{len(self.bad_sources)} bad utterance(s) of {self.checked}: {shown}{more}"


def _probe(path: str) -> AudioInfo | str:
    """Header facts, or the error message (a string, so that it can be cached as JSON)."""
    try:
        return probe_audio(path)
    except AudioError as err:
        return str(err)
    except OSError as err:  # e.g. permission denied while reading the WAV header
        return f"{path}: cannot read audio ({err.strerror or err})"


def _file_state(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _cache_key(manifest: Path, paths: Sequence[str]) -> str | None:
    """sha256 of the manifest's bytes and each audio file's size and mtime; None if unreadable."""
    try:
        digest = hashlib.sha256(manifest.read_bytes())
    except OSError:
        return None
    digest.update(f"v{CACHE_VERSION}".encode())
    for path in paths:
        digest.update(f"\0{path}\0{_file_state(path)}".encode())
    return digest.hexdigest()


def _load_cached(file: Path) -> dict[str, AudioInfo | str] | None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return {path: value if isinstance(value, str) else AudioInfo(**value) for path, value in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _store_cached(file: Path, results: dict[str, AudioInfo | str]) -> None:
    data = {path: value if isinstance(value, str) else vars(value) for path, value in results.items()}
    try:
        atomic_write_json(file, data)
    except OSError:
        pass  # a cache that cannot be written only costs time


def probe_files(
    paths: Sequence[str], progress: bool = False, desc: str = "audio"
) -> dict[str, AudioInfo | str]:
    """`path -> AudioInfo` or the error message, probing in a few threads."""
    bar = tqdm(
        total=len(paths), desc=desc, unit="file", disable=not progress or len(paths) < PROGRESS_MIN_FILES
    )
    results: dict[str, AudioInfo | str] = {}
    with bar, ThreadPoolExecutor(max_workers=min(PROBE_THREADS, max(1, len(paths)))) as pool:
        for path, result in zip(paths, pool.map(_probe, paths)):
            results[path] = result
            bar.update()
    return results


def probe_manifest_audio(
    manifest: Path | None, paths: Sequence[str], progress: bool = False
) -> dict[str, AudioInfo | str]:
    """`probe_files` through the cache of `manifest` (None: not cached)."""
    folder = _audio_cache_folder() if manifest is not None else None
    key = _cache_key(manifest, paths) if folder is not None else None
    file = folder / f"{key}.json" if key is not None else None
    if file is not None and file.is_file():
        cached = _load_cached(file)
        if cached is not None and set(cached) == set(paths):
            # failures are probed again: a fixed permission or a passing I/O error leaves the key alone
            failed = [path for path, result in cached.items() if isinstance(result, str)]
            return {**cached, **probe_files(failed)} if failed else cached
    results = probe_files(paths, progress, desc=f"check {manifest.name if manifest else 'audio'}")
    if file is not None:
        _store_cached(file, results)
    return results


def _manifest_of(utt: Utterance) -> Path | None:
    manifest, sep, line = utt.source.rpartition(":")
    return Path(manifest) if sep and line.isdigit() else None


def check_audio(
    utterances: Iterable[Utterance],
    sample_rate: int = TARGET_SAMPLE_RATE,
    tolerance: float = DURATION_TOLERANCE_S,
    progress: bool = False,
) -> AudioCheck:
    """Probe every utterance's audio (cached per manifest) and compare its header with the line:
    unreadable, truncated or empty files and durations off by more than `tolerance` are errors."""
    unique = list({(u.source, u.audio_filepath): u for u in utterances}.values())
    by_manifest: dict[Path | None, list[str]] = {}
    for utt in unique:
        paths = by_manifest.setdefault(_manifest_of(utt), [])
        if utt.audio_filepath not in paths:
            paths.append(utt.audio_filepath)
    results: dict[str, AudioInfo | str] = {}
    for manifest, paths in by_manifest.items():
        results.update(probe_manifest_audio(manifest, paths, progress))
    check = AudioCheck(checked=len(unique))
    for utt in unique:
        result = results[utt.audio_filepath]
        if isinstance(result, str):
            check.problems.append(Problem(utt.source, result, "error"))
            continue
        check.infos[utt.audio_filepath] = result
        check.problems.extend(audio_problems(utt, result, sample_rate, tolerance))
    return check


# ----------------------------------------------------------------------------- CTC


def num_samples(utt: Utterance, info: AudioInfo | None, sample_rate: int = TARGET_SAMPLE_RATE) -> int:
    """Samples of the waveform `load_audio` returns: the header's frames, resampled as
    `torchaudio.functional.resample` sizes its output; the manifest's duration without a header."""
    if info is None:
        return round(utt.duration * sample_rate)
    if info.sample_rate == sample_rate:
        return info.frames
    gcd = math.gcd(info.sample_rate, sample_rate)
    return math.ceil((sample_rate // gcd) * info.frames / (info.sample_rate // gcd))


def feature_frames(samples: int, features: str = "fbank", sample_rate: int = TARGET_SAMPLE_RATE) -> int:
    """Input frames of the network: 10 ms centred STFT frames, Kaldi's whole 25 ms windows
    (`kaldi_fbank`: 2-3 fewer), or the samples themselves for `raw`."""
    if features == "raw":
        return samples
    hop = round(sample_rate * HOP_MS / 1000)
    if features == "kaldi_fbank":
        return int(kaldi_num_frames(torch.tensor(samples), int(sample_rate * WIN_MS * 0.001), hop))
    return num_frames(samples, hop)


def output_frames(frames: int, stride: int) -> int:
    """Frames the network emits for `frames` input frames at total time stride `stride`.

    Every strided op maps T frames to `ceil(T / s)` (`ops.base.strided_lengths`; `conv2d4x` does it
    twice with s = 2), and `ceil(ceil(T / a) / b) == ceil(T / (a * b))`, so a chain of ops is one
    ceiling division by the product of their strides, whatever their order."""
    return -(-frames // stride)


def ctc_frames_needed(labels: Sequence[int]) -> int:
    """The fewest frames CTC can align `labels` to: one per label, plus a blank between each pair
    of equal adjacent labels ("hello" needs 6)."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


@dataclass(frozen=True)
class CtcFit:
    """One utterance's output frames against the frames its transcript needs."""

    utterance: Utterance
    frames: int
    needed: int

    @property
    def feasible(self) -> bool:
        return self.frames >= self.needed

    def __str__(self) -> str:
        return f"{self.utterance.source} ({self.frames} output frames, needs {self.needed})"


def ctc_fits(
    utterances: Iterable[Utterance],
    tokenizer: Tokenizer,
    stride: int,
    infos: dict[str, AudioInfo] | None = None,
    features: str = "fbank",
    sample_rate: int = TARGET_SAMPLE_RATE,
) -> list[CtcFit]:
    """Each utterance's output frames at total stride `stride` (from its header's length where
    `infos` knows it) and the frames its encoded transcript needs."""
    if stride < 1:
        raise ValueError(f"total stride must be a positive integer, got {stride}")
    infos = infos or {}
    fits = []
    for utt in utterances:
        samples = num_samples(utt, infos.get(utt.audio_filepath), sample_rate)
        frames = output_frames(feature_frames(samples, features, sample_rate), stride)
        fits.append(CtcFit(utt, frames, ctc_frames_needed(tokenizer.encode(utt.text))))
    return fits


def worst_fits(fits: Iterable[CtcFit], count: int = 5) -> list[CtcFit]:
    """The infeasible utterances furthest from fitting (smallest frames / needed first)."""
    infeasible = [fit for fit in fits if not fit.feasible]
    return sorted(infeasible, key=lambda fit: (fit.frames / fit.needed, fit.utterance.source))[:count]


def infeasible_of(fits: Iterable[CtcFit]) -> list[CtcFit]:
    return [fit for fit in fits if not fit.feasible]
