"""What the deployment reads: audio files and JSONL manifests (the project's format), each
utterance loaded as a mono waveform at the model's sample rate (resampled when the file has
another), and synthetic audio for checks that have no files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from supernet.data.audio import load_audio_and_rate
from supernet.data.manifest import read_manifest

MANIFEST_SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class Item:
    """One utterance to transcribe; ``text`` is the reference when a manifest gives one."""

    audio_filepath: str
    id: str
    text: str | None = None
    duration: float | None = None


def read_inputs(paths: list[str | Path]) -> list[Item]:
    """Manifests expanded to their lines, audio files as they are, in the order given. A missing
    audio file is kept (it is named and skipped when read); a missing manifest is an error."""
    items: list[Item] = []
    for path in map(Path, paths):
        if path.suffix in MANIFEST_SUFFIXES:
            items += [Item(u.audio_filepath, u.id, u.text, u.duration) for u in read_manifest(path)]
        else:
            items.append(Item(str(path), str(path)))
    return items


@dataclass(frozen=True)
class Waveform:
    samples: torch.Tensor  # (S,) float32, mono, at the requested rate
    file_rate: int  # the file's own sample rate


def load_waveform(path: str | Path, sample_rate: int) -> Waveform:
    """Mono float32 at ``sample_rate``; raises ``AudioError`` naming an unreadable file."""
    return Waveform(*load_audio_and_rate(path, sample_rate))


def synthetic_waveforms(seconds, rate: int, seed: int) -> list[torch.Tensor]:
    """Speech-like test audio: gliding tones in noise, one utterance per duration (seconds)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in seconds:
        t = torch.arange(round(s * rate)) / rate
        pitch = 200 + 400 * torch.rand(1, generator=g) + 300 * torch.sin(2 * math.pi * 0.7 * t)
        phase = 2 * math.pi * torch.cumsum(pitch, 0) / rate
        envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 3.0 * t) ** 2
        out.append(0.3 * envelope * torch.sin(phase) + 0.02 * torch.randn(len(t), generator=g))
    return out
