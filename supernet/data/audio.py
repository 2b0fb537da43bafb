"""Audio I/O with soundfile only (torchaudio.load needs torchcodec + FFmpeg, which we do not assume).

Everything downstream sees 16 kHz mono float32: stereo is averaged, other rates are resampled with
`torchaudio.functional.resample`. Failures raise `AudioError` naming the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from supernet.errors import UserError

TARGET_SAMPLE_RATE = 16000
TAIL_FRAMES = 64  # frames decoded at the end of a file to prove that its body is complete


class AudioError(UserError, ValueError):
    """An audio file that is missing, unreadable, corrupt or empty."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | Path) -> AudioInfo:
    """Header facts (rate, channels, length) without decoding the samples."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: cannot read audio header ({err})") from err
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames))


def probe_audio(path: str | Path) -> AudioInfo:
    """Header facts, vouched for: the last `TAIL_FRAMES` frames decode and a WAV's data chunk is as
    long as its header says. Catches truncated and corrupt files (a cut FLAC fails the seek to its
    end) at the cost of one seek, however long the file; a body corrupt in the middle still needs
    `read_audio`."""
    info = audio_info(path)
    if info.frames == 0:
        raise AudioError(f"{path}: audio has zero length")
    _check_wav_data_chunk(Path(path))
    start = max(0, info.frames - TAIL_FRAMES)
    try:
        with sf.SoundFile(str(path)) as handle:
            handle.seek(start)
            tail = handle.read(info.frames - start, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: truncated or corrupt: cannot decode its last frames ({err})") from err
    if tail.shape[0] != info.frames - start:
        raise AudioError(
            f"{path}: truncated: the header declares {info.frames} frames, the last "
            f"{info.frames - start - tail.shape[0]} are missing"
        )
    return info


def _check_wav_data_chunk(path: Path) -> None:
    """A RIFF WAV whose `data` chunk claims more bytes than the file holds was cut short (libsndfile
    silently shortens it). Other formats, RF64 and streamed WAVs (size 0 or 0xFFFFFFFF) pass."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if handle.read(12)[:4] != b"RIFF":
            return
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                available = size - offset - 8
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    raise AudioError(
                        f"{path}: truncated: the WAV header declares {chunk_size} bytes of samples, "
                        f"the file holds {available}"
                    )
                return
            offset += 8 + chunk_size + (chunk_size & 1)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode the whole file as float32 `(frames, channels)` and its sample rate."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        samples, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: cannot decode audio ({err})") from err
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: audio has zero length")
    return samples, int(sample_rate)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of `(frames, channels)` into `(frames,)`."""
    return samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]


def load_audio_and_rate(path: str | Path, sample_rate: int = TARGET_SAMPLE_RATE) -> tuple[torch.Tensor, int]:
    """Mono float32 waveform `(S,)` at `sample_rate`, downmixed and resampled as needed, and the
    file's own sample rate (which `transcribe` reports)."""
    samples, file_rate = read_audio(path)
    waveform = torch.from_numpy(np.ascontiguousarray(to_mono(samples)))
    if file_rate != sample_rate:
        waveform = AF.resample(waveform, orig_freq=file_rate, new_freq=sample_rate)
    return waveform, file_rate


def load_audio(path: str | Path, sample_rate: int = TARGET_SAMPLE_RATE) -> torch.Tensor:
    """Mono float32 waveform `(S,)` at `sample_rate`, downmixed and resampled as needed."""
    return load_audio_and_rate(path, sample_rate)[0]
