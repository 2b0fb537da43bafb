"""Import a LibriSpeech-layout tree into a manifest.

Layout: `SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac` beside `SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`
(lines `UTTID TEXT`), under `ROOT` at any depth (so `LibriSpeech/` or `LibriSpeech/dev-clean/` both
work). Durations come from the FLAC headers; transcripts without audio and audio without transcripts
are reported, never dropped unannounced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from supernet.data.audio import AudioError, audio_info
from supernet.data.manifest import Utterance, write_manifest
from supernet.data.tokenizer import normalize_text
from supernet.errors import UserError

TRANSCRIPT_SUFFIX = ".trans.txt"


class LibriSpeechError(UserError, ValueError):
    """A tree that is not LibriSpeech-shaped, or one with unmatched files (listed in the message)."""


@dataclass
class LibriSpeechScan:
    utterances: list[Utterance] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line each, naming the file (and line)


def _read_transcript(path: Path, scan: LibriSpeechScan) -> dict[str, tuple[int, str]]:
    """`UTTID -> (line number, text)` of one `*.trans.txt`."""
    entries: dict[str, tuple[int, str]] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        utt_id, _, text = line.strip().partition(" ")
        if not normalize_text(text):
            scan.problems.append(f"{path}:{line_no}: {utt_id}: empty transcript")
        elif utt_id in entries:
            scan.problems.append(
                f"{path}:{line_no}: {utt_id}: duplicate (first at line {entries[utt_id][0]})"
            )
        else:
            entries[utt_id] = (line_no, text)
    return entries


def scan_librispeech(root: str | Path, progress: bool = False) -> LibriSpeechScan:
    """Pair every transcript line with its FLAC and read durations; collect problems."""
    root = Path(root)
    if not root.is_dir():
        raise LibriSpeechError(f"{root}: not a directory")
    transcripts = sorted(root.rglob(f"*{TRANSCRIPT_SUFFIX}"))
    if not transcripts:
        raise LibriSpeechError(f"{root}: no *{TRANSCRIPT_SUFFIX} files (expected SPEAKER/CHAPTER/ layout)")
    scan = LibriSpeechScan()
    claimed: set[Path] = set()
    pairs: list[tuple[str, int, str, Path, Path]] = []  # (utt id, line, text, flac, transcript)
    for transcript in transcripts:
        for utt_id, (line_no, text) in _read_transcript(transcript, scan).items():
            flac = transcript.parent / f"{utt_id}.flac"
            if flac.is_file():
                claimed.add(flac.resolve())
                pairs.append((utt_id, line_no, text, flac, transcript))
            else:
                scan.problems.append(f"{transcript}:{line_no}: {utt_id}: audio {flac} not found")
    for flac in sorted(root.rglob("*.flac")):
        if flac.resolve() not in claimed:
            scan.problems.append(f"{flac}: audio without a transcript line")
    for utt_id, line_no, text, flac, transcript in tqdm(
        pairs, desc="import", unit="utt", disable=not progress
    ):
        try:
            info = audio_info(flac)
        except AudioError as err:
            scan.problems.append(f"{transcript}:{line_no}: {err}")
            continue
        if info.frames == 0:
            scan.problems.append(f"{transcript}:{line_no}: {flac}: audio has zero length")
            continue
        scan.utterances.append(
            Utterance(
                audio_filepath=str(flac),
                duration=info.duration,
                text=normalize_text(text),
                id=utt_id,
                lang="en",
                speaker=flac.parent.parent.name,
                source=f"{transcript}:{line_no}",
            )
        )
    return scan


def import_librispeech(
    root: str | Path, manifest: str | Path, skip_bad: bool = False, progress: bool = False
) -> LibriSpeechScan:
    """Write the manifest of a LibriSpeech tree (paths relative to the manifest).

    With problems and `skip_bad=False` nothing is written and `LibriSpeechError` lists them all;
    with `skip_bad=True` the good utterances are written and the problems returned for the report.
    """
    scan = scan_librispeech(root, progress=progress)
    if scan.problems and not skip_bad:
        listed = "\n  ".join(scan.problems)
        raise LibriSpeechError(f"{root}: {len(scan.problems)} problem(s), manifest not written:\n  {listed}")
    if not scan.utterances:
        raise LibriSpeechError(f"{root}: no usable utterances")
    write_manifest(manifest, scan.utterances)
    return scan
