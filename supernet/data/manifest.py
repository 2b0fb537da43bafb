"""JSONL manifests: reading with errors that name file and line, writing with relative paths, and the
`check` report (every line validated against its audio; nothing dropped without being counted).
`read_manifest` and `check_manifest` take lhotse CutSet files too (`supernet.data.lhotse_io`).

A line is `{"audio_filepath": ..., "duration": s, "text": ..., "lang"?, "speaker"?, "id"?}`;
`audio_filepath` is relative to the manifest's folder or absolute.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from supernet.data.audio import TARGET_SAMPLE_RATE, AudioError, AudioInfo, audio_info, probe_audio, read_audio
from supernet.data.tokenizer import Tokenizer, normalize_text
from supernet.errors import UserError
from supernet.outputs import atomic_write_text

REQUIRED_FIELDS = ("audio_filepath", "duration", "text")
OPTIONAL_STR_FIELDS = ("lang", "speaker", "id")
DURATION_TOLERANCE_S = 0.1


class ManifestError(UserError, ValueError):
    """A manifest line that is not valid JSON or lacks a field; the message names file and line."""


@dataclass(frozen=True)
class Utterance:
    """One manifest line, its audio path resolved; `source` is `file:line` for messages."""

    audio_filepath: str
    duration: float
    text: str
    id: str
    lang: str | None = None
    speaker: str | None = None
    source: str = ""

    def to_row(self, manifest_dir: str | Path) -> dict:
        """The JSON row for a manifest written in `manifest_dir` (audio path made relative to it)."""
        row = {
            "audio_filepath": relative_audio_path(self.audio_filepath, manifest_dir),
            "duration": round(self.duration, 4),
            "text": self.text,
            "id": self.id,
        }
        row.update({k: getattr(self, k) for k in ("lang", "speaker") if getattr(self, k) is not None})
        return row


def relative_audio_path(audio_path: str | Path, manifest_dir: str | Path) -> str:
    """`audio_path` as written in a manifest that lives in `manifest_dir` (POSIX separators)."""
    rel = os.path.relpath(Path(audio_path).resolve(), Path(manifest_dir).resolve())
    return Path(rel).as_posix()


def parse_row(row: object, manifest: Path, line_no: int) -> Utterance:
    """Validate one decoded JSON row; raises `ManifestError` naming `manifest:line_no`."""
    where = f"{manifest}:{line_no}"
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in row]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")
    audio = row["audio_filepath"]
    if not isinstance(audio, str) or not audio.strip():
        raise ManifestError(f"{where}: 'audio_filepath' must be a non-empty string, got {audio!r}")
    duration = row["duration"]
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
        raise ManifestError(f"{where}: 'duration' must be a number of seconds, got {duration!r}")
    if duration <= 0:
        raise ManifestError(f"{where}: 'duration' must be > 0, got {duration}")
    text = row["text"]
    if not isinstance(text, str):
        raise ManifestError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    if not normalize_text(text):
        raise ManifestError(f"{where}: empty transcript ('text' is blank)")
    for name in OPTIONAL_STR_FIELDS:
        if row.get(name) is not None and not isinstance(row[name], str | int):
            raise ManifestError(f"{where}: {name!r} must be a string, got {row[name]!r}")
    path = Path(audio)
    resolved = path if path.is_absolute() else manifest.parent / path
    default_id = Path(audio).with_suffix("").as_posix()
    optional = {name: (None if row.get(name) is None else str(row[name])) for name in OPTIONAL_STR_FIELDS}
    return Utterance(
        audio_filepath=str(resolved),
        duration=float(duration),
        text=text,
        id=optional["id"] or default_id,
        lang=optional["lang"],
        speaker=optional["speaker"],
        source=where,
    )


def iter_rows(path: str | Path) -> Iterator[tuple[int, object]]:
    """`(line_no, decoded JSON)` for every non-blank line; malformed JSON raises `ManifestError`."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ManifestError(f"{path}:{line_no}: not UTF-8 ({err})") from err
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                raise ManifestError(
                    f"{path}:{line_no}: malformed JSON ({err.msg} at column {err.colno})"
                ) from err


def read_manifest(path: str | Path) -> list[Utterance]:
    """Every utterance of a manifest, JSONL or a lhotse CutSet (`supernet.data.lhotse_io`); the first
    bad line raises `ManifestError` (file:line)."""
    path = Path(path)
    from supernet.data import lhotse_io  # it imports this module

    if path.is_file() and lhotse_io.is_cuts_file(path):
        return lhotse_io.read_cuts(path)
    utterances = [parse_row(row, path, line_no) for line_no, row in iter_rows(path)]
    if not utterances:
        raise ManifestError(f"{path}: manifest has no utterances")
    return utterances


def write_manifest(path: str | Path, rows: Iterable[dict | Utterance]) -> int:
    """Write rows (dicts with an `audio_filepath` that exists as given, or `Utterance`s) as JSONL,
    audio paths relative to the manifest's folder. Returns the number of lines."""
    path = Path(path)
    lines = [
        json.dumps(row.to_row(path.parent) if isinstance(row, Utterance) else row, ensure_ascii=False) + "\n"
        for row in rows
    ]
    atomic_write_text(path, "".join(lines))  # a run killed mid-write leaves the old manifest whole
    return len(lines)


# --------------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class Problem:
    where: str  # file:line
    message: str
    severity: str  # "error" (line is bad) or "warning" (line is usable, handled on load)

    def __str__(self) -> str:
        return f"{self.severity:7s} {self.where}: {self.message}"


@dataclass
class CheckReport:
    manifest: Path
    lines: int = 0
    good: list[Utterance] = field(default_factory=list)
    good_rows: list[dict] = field(default_factory=list)  # the original JSON of the good lines
    problems: list[Problem] = field(default_factory=list)
    unknown_chars: Counter = field(default_factory=Counter)
    unknown_first_seen: dict[str, str] = field(default_factory=dict)
    vocab_checked: bool = False

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def bad_lines(self) -> int:
        return len({p.where for p in self.errors})

    @property
    def seconds(self) -> float:
        return sum(u.duration for u in self.good)

    @property
    def speakers(self) -> set[str]:
        return {u.speaker for u in self.good if u.speaker is not None}

    @property
    def languages(self) -> Counter:
        return Counter(u.lang or "?" for u in self.good)

    def format(self) -> str:
        lines = [
            f"manifest: {self.manifest}",
            f"utterances: {len(self.good)} good of {self.lines} lines ({self.bad_lines} bad)",
            f"audio: {self.seconds / 3600:.3f} h ({self.seconds:.1f} s)",
            f"speakers: {len(self.speakers)}",
            "languages: " + (", ".join(f"{k} {v}" for k, v in sorted(self.languages.items())) or "-"),
        ]
        if self.vocab_checked:
            if self.unknown_chars:
                shown = ", ".join(
                    f"{c!r} x{n} (first {self.unknown_first_seen[c]})"
                    for c, n in self.unknown_chars.most_common()
                )
                lines.append(f"characters outside the vocabulary (mapped to <unk>): {shown}")
            else:
                lines.append("characters outside the vocabulary: none")
        lines.append(f"problems: {len(self.errors)} errors, {len(self.warnings)} warnings")
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


def _check_audio(utt: Utterance, sample_rate: int, tolerance: float, decode: bool) -> list[Problem]:
    audio = utt.audio_filepath
    try:
        if decode:
            audio_info(audio)  # a bad header is named as such, before the decoder's message
            read_audio(audio)
        info = probe_audio(audio)  # also catches a WAV cut short, which decodes without a word
    except AudioError as err:
        return [Problem(utt.source, str(err), "error")]
    return audio_problems(utt, info, sample_rate, tolerance)


def audio_problems(
    utt: Utterance,
    info: AudioInfo,
    sample_rate: int = TARGET_SAMPLE_RATE,
    tolerance: float = DURATION_TOLERANCE_S,
) -> list[Problem]:
    """What the header says against the manifest line: a duration off by more than `tolerance`
    is an error (it would mislead the bucketing); another rate or channel count is a warning."""
    audio = utt.audio_filepath
    problems = []
    if info.sample_rate != sample_rate:
        problems.append(
            Problem(
                utt.source,
                f"{audio}: sample rate {info.sample_rate} Hz, not {sample_rate} Hz (resampled on load)",
                "warning",
            )
        )
    if info.channels > 1:
        problems.append(
            Problem(utt.source, f"{audio}: {info.channels} channels (downmixed to mono on load)", "warning")
        )
    if abs(info.duration - utt.duration) > tolerance:
        problems.append(
            Problem(
                utt.source,
                f"{audio}: manifest duration {utt.duration:.3f} s but the file holds {info.duration:.3f} s",
                "error",
            )
        )
    return problems


def check_manifest(
    path: str | Path,
    tokenizer: Tokenizer | None = None,
    sample_rate: int = TARGET_SAMPLE_RATE,
    tolerance: float = DURATION_TOLERANCE_S,
    decode: bool = True,
    progress: bool = False,
) -> CheckReport:
    """Validate every line and its audio; collect problems instead of stopping at the first.

    `decode=False` reads only the headers and the last frames (fast; catches truncated files, but
    not a body corrupt in the middle).
    """
    path = Path(path)
    report = CheckReport(manifest=path, vocab_checked=tokenizer is not None)
    if not path.is_file():
        report.problems.append(Problem(str(path), "manifest not found", "error"))
        return report
    from supernet.data import lhotse_io  # it imports this module

    if lhotse_io.is_cuts_file(path):
        return _check_cuts(report, tokenizer, sample_rate, tolerance, decode, progress)
    seen_ids: dict[str, str] = {}
    with path.open("rb") as handle:
        raw_lines = [(no, raw) for no, raw in enumerate(handle, start=1) if raw.strip()]
    for line_no, raw in tqdm(raw_lines, desc="check", unit="utt", disable=not progress):
        report.lines += 1
        where = f"{path}:{line_no}"
        try:
            row = json.loads(raw.decode("utf-8"))
            utt = parse_row(row, path, line_no)
        except UnicodeDecodeError as err:
            report.problems.append(Problem(where, f"not UTF-8 ({err})", "error"))
            continue
        except json.JSONDecodeError as err:
            report.problems.append(
                Problem(where, f"malformed JSON ({err.msg} at column {err.colno})", "error")
            )
            continue
        except ManifestError as err:
            report.problems.append(Problem(where, str(err).removeprefix(f"{where}: "), "error"))
            continue
        problems = _check_audio(utt, sample_rate, tolerance, decode)
        if utt.id in seen_ids:
            problems.append(
                Problem(where, f"duplicate id {utt.id!r} (first at {seen_ids[utt.id]})", "warning")
            )
        seen_ids.setdefault(utt.id, where)
        report.problems.extend(problems)
        if any(p.severity == "error" for p in problems):
            continue
        report.good.append(utt)
        report.good_rows.append(row)
        if tokenizer is not None:
            for char, count in tokenizer.unknown_chars([utt.text]).items():
                report.unknown_chars[char] += count
                report.unknown_first_seen.setdefault(char, where)
    if report.lines == 0:
        report.problems.append(Problem(str(path), "manifest has no utterances", "error"))
    return report


def _check_cuts(
    report: CheckReport,
    tokenizer: Tokenizer | None,
    sample_rate: int,
    tolerance: float,
    decode: bool,
    progress: bool,
) -> CheckReport:
    """`check_manifest` of a lhotse CutSet: a cut supernet cannot read stops the check (it names file,
    line and cut); then every cut's audio is checked, and the good ones become JSONL rows."""
    from supernet.data.lhotse_io import read_cuts

    try:
        utterances = read_cuts(report.manifest)
    except ManifestError as err:
        where, _, message = str(err).partition(": ")
        report.problems.append(Problem(where, message, "error"))
        return report
    for utt in tqdm(utterances, desc="check", unit="utt", disable=not progress):
        report.lines += 1
        problems = _check_audio(utt, sample_rate, tolerance, decode)
        report.problems.extend(problems)
        if any(p.severity == "error" for p in problems):
            continue
        report.good.append(utt)
        report.good_rows.append(utt.to_row(report.manifest.parent))
        if tokenizer is not None:
            for char, count in tokenizer.unknown_chars([utt.text]).items():
                report.unknown_chars[char] += count
                report.unknown_first_seen.setdefault(char, utt.source)
    return report


def write_clean_manifest(report: CheckReport, out: str | Path) -> int:
    """The good lines of a checked manifest, as given, with audio paths relative to `out`'s folder."""
    out = Path(out)
    rows = []
    for utt, row in zip(report.good, report.good_rows):
        rows.append({**row, "audio_filepath": relative_audio_path(utt.audio_filepath, out.parent)})
    return write_manifest(out, rows)
