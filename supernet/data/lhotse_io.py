"""lhotse manifests in and out: a CutSet file or a folder of lhotse manifests is read as utterances
(`--data cuts.jsonl.gz`), and `supernet data export-lhotse` writes a corpus as CutSets.

supernet reads whole audio files, one utterance each, so a cut is taken when it is all of one
file-backed recording (start 0, the recording's duration, all its channels, no transforms such as
lhotse's speed perturbation) with at least one supervision, each with text; several supervisions
are joined in time order. Anything else is refused naming file, line and cut: lhotse's
`CutSet.save_audios(DIR)` writes segments out as files of their own first. The utterance's `lang`
and `speaker` are its first supervision's `language` and `speaker` (`data.langs` filters on them as
written: LibriSpeech's recipe says `English`).

A folder's files are named as lhotse recipes write them: `[PREFIX_]cuts_SPLIT.jsonl[.gz]`, or a pair
`[PREFIX_]recordings_SPLIT.jsonl[.gz]` and `[PREFIX_]supervisions_SPLIT.jsonl[.gz]` (what
`lhotse prepare` writes; a cuts file wins over a pair of the same SPLIT). A SPLIT that starts with
`train` is training data (several are joined: LibriSpeech's train-clean-100 and train-clean-360),
one that starts with `dev` or `valid` is the dev set (joined too), and one that starts with `test`
is a test set of that name (`test-clean`); any other SPLIT is an error. Relative audio paths are
read as lhotse reads them, from the working directory, else from the manifest's folder.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

from supernet.data.audio import AudioError, audio_info
from supernet.data.manifest import DURATION_TOLERANCE_S, ManifestError, Utterance
from supernet.data.tokenizer import normalize_text
from supernet.errors import UserError
from supernet.outputs import replaced_when_done

SPLIT_FILE = re.compile(r"^(?:.*_)?(cuts|recordings|supervisions)_(.+?)\.jsonl(?:\.gz)?$")
ROLES = {"train": ("train",), "dev": ("dev", "valid"), "test": ("test",)}


def require_lhotse():
    """The lhotse package, or a `UserError` naming the extra that brings it."""
    try:
        import lhotse
    except ImportError as err:
        raise UserError(
            "lhotse manifests and data.sampler lhotse need lhotse: pip install 'supernet[lhotse]'"
        ) from err
    return lhotse


def _open(path: Path):
    return (
        gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else path.open(encoding="utf-8")
    )


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """`(line_no, object)` of a (gzipped) JSONL file; bad JSON raises `ManifestError` (file:line)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: lhotse manifest not found")
    try:
        with _open(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ManifestError(
                        f"{path}:{line_no}: malformed JSON ({err.msg} at column {err.colno})"
                    ) from err
                if not isinstance(row, dict):
                    raise ManifestError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
                yield line_no, row
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise ManifestError(f"{path}: cannot read it as (gzipped) JSONL ({err})") from err


def is_cuts_file(path: str | Path) -> bool:
    """A gzipped JSONL file, or a JSONL file whose first line is a lhotse cut (our own manifests are
    plain JSONL with `audio_filepath`)."""
    path = Path(path)
    if path.name.endswith(".jsonl.gz"):
        return True
    try:
        first = next(iter_json_lines(path), (0, {}))[1]
    except ManifestError:
        return False
    return "audio_filepath" not in first and (
        "supervisions" in first or str(first.get("type", "")).endswith("Cut")
    )


def split_files(folder: str | Path) -> dict[str, dict[str, Path]]:
    """`{split: {"cuts" | "recordings" | "supervisions": path}}` of the lhotse manifests in `folder`."""
    found: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in sorted(Path(folder).iterdir()):
        match = SPLIT_FILE.match(path.name)
        if match and path.is_file():
            kind, split = match.groups()
            if kind in found[split]:
                raise ManifestError(
                    f"{folder}: two {kind} manifests of split {split!r}: {found[split][kind].name}, {path.name}"
                )
            found[split][kind] = path
    return dict(found)


def is_lhotse_folder(folder: str | Path) -> bool:
    return Path(folder).is_dir() and not (Path(folder) / "train.jsonl").exists() and bool(split_files(folder))


def role_of(split: str) -> str | None:
    """`train`, `dev` or `test` by the split name's start; None for another name."""
    name = split.lower()
    return next((role for role, starts in ROLES.items() if name.startswith(starts)), None)


# --------------------------------------------------------------------------------------- reading


def _audio_path(source: str, manifest: Path) -> str:
    path = Path(source)
    if path.is_absolute() or path.exists():
        return str(path.resolve())
    return str((manifest.parent / path).resolve())


def to_utterance(
    recording, supervisions: Sequence, start: float, duration: float, channels, cut_id: str, where: str
) -> Utterance:
    """The utterance of one whole recording and its supervisions; `where` (file:line) and the cut id
    name what is refused."""
    what = f"{where}: cut {cut_id!r}"
    if recording is None:
        raise ManifestError(f"{what} has no recording (a features-only cut has no audio to read)")
    sources = recording.sources
    if len(sources) != 1 or sources[0].type != "file":
        kinds = ", ".join(s.type for s in sources) or "none"
        raise ManifestError(f"{what}: its audio must be one file (sources: {kinds})")
    if recording.transforms:
        raise ManifestError(
            f"{what}: recording {recording.id!r} has transforms (e.g. lhotse's speed perturbation); "
            "supernet augments itself (data.speed_perturb): give the plain cuts"
        )
    if start > DURATION_TOLERANCE_S or abs(duration - recording.duration) > DURATION_TOLERANCE_S:
        raise ManifestError(
            f"{what} covers {start:.2f}-{start + duration:.2f} s of its {recording.duration:.2f} s recording; "
            "supernet reads whole files: write each cut to a file of its own first (CutSet.save_audios)"
        )
    wanted = sorted(channels) if isinstance(channels, list) else [channels]
    if wanted != sorted(recording.channel_ids):
        raise ManifestError(
            f"{what} takes channel(s) {wanted} of {sorted(recording.channel_ids)}; supernet downmixes all "
            "channels of a file"
        )
    if not supervisions:
        raise ManifestError(f"{what} has no supervisions (no transcript to train on)")
    ordered = sorted(supervisions, key=lambda s: s.start)
    silent = [s.id for s in ordered if not isinstance(s.text, str) or not normalize_text(s.text)]
    if silent:
        raise ManifestError(f"{what}: supervision {silent[0]!r} has no text")
    manifest = Path(where.rpartition(":")[0])
    return Utterance(
        audio_filepath=_audio_path(sources[0].source, manifest),
        duration=float(duration),
        text=" ".join(s.text for s in ordered),
        id=cut_id,
        lang=next((s.language for s in ordered if s.language), None),
        speaker=next((s.speaker for s in ordered if s.speaker), None),
        source=where,
    )


def read_cuts(path: str | Path) -> list[Utterance]:
    """Every cut of a CutSet file as an utterance; the first bad one raises `ManifestError`."""
    require_lhotse()
    from lhotse.cut import MixedCut
    from lhotse.serialization import deserialize_item

    path = Path(path)
    utterances = []
    for line_no, row in iter_json_lines(path):
        where = f"{path}:{line_no}"
        if "sources" in row:
            raise ManifestError(
                f"{where}: a lhotse recording, not a cut: put it beside its supervisions in a folder as "
                "[PREFIX_]recordings_SPLIT.jsonl.gz and [PREFIX_]supervisions_SPLIT.jsonl.gz"
            )
        if "supervisions" not in row and "recording" not in row:
            raise ManifestError(f"{where}: not a lhotse cut (no 'recording' or 'supervisions' field)")
        try:
            cut = deserialize_item(row)
        except Exception as err:  # lhotse raises whatever its dataclasses raise on a bad row
            raise ManifestError(f"{where}: not a lhotse cut ({type(err).__name__}: {err})") from err
        if isinstance(cut, MixedCut):
            raise ManifestError(f"{where}: cut {cut.id!r} is a MixedCut (padded or mixed); give plain cuts")
        utterances.append(
            to_utterance(cut.recording, cut.supervisions, cut.start, cut.duration, cut.channel, cut.id, where)
        )
    if not utterances:
        raise ManifestError(f"{path}: lhotse manifest has no cuts")
    return utterances


def read_recordings(recordings: str | Path, supervisions: str | Path) -> list[Utterance]:
    """The utterances of a RecordingSet and its SupervisionSet (a cut of each whole recording, as
    `CutSet.from_manifests` makes them); errors name the recording's line."""
    require_lhotse()
    from lhotse import Recording, SupervisionSegment

    by_recording = defaultdict(list)
    for line_no, row in iter_json_lines(supervisions):
        try:
            segment = SupervisionSegment.from_dict(row)
        except Exception as err:
            raise ManifestError(f"{supervisions}:{line_no}: not a lhotse supervision ({err})") from err
        by_recording[segment.recording_id].append(segment)
    utterances, seen = [], set()
    for line_no, row in iter_json_lines(recordings):
        where = f"{recordings}:{line_no}"
        try:
            recording = Recording.from_dict(row)
        except Exception as err:
            raise ManifestError(f"{where}: not a lhotse recording ({err})") from err
        seen.add(recording.id)
        segments = by_recording.get(recording.id, [])
        utterances.append(
            to_utterance(
                recording, segments, 0.0, recording.duration, recording.channel_ids, recording.id, where
            )
        )
    orphans = sorted(set(by_recording) - seen)
    if orphans:
        raise ManifestError(
            f"{supervisions}: supervisions of recordings not in {recordings}: {', '.join(orphans[:5])}"
        )
    if not utterances:
        raise ManifestError(f"{recordings}: lhotse manifest has no recordings")
    return utterances


def read_split(files: dict[str, Path], split: str, folder: Path) -> list[Utterance]:
    if "cuts" in files:
        return read_cuts(files["cuts"])
    missing = [kind for kind in ("recordings", "supervisions") if kind not in files]
    if missing:
        raise ManifestError(
            f"{folder}: split {split!r} has no cuts manifest and no {' and no '.join(missing)} manifest"
        )
    return read_recordings(files["recordings"], files["supervisions"])


def read_folder(folder: str | Path) -> tuple[list[Utterance], list[Utterance], dict[str, list[Utterance]]]:
    """`(train, dev, {test name: utterances})` of a folder of lhotse manifests (module docstring)."""
    folder = Path(folder)
    files = split_files(folder)
    unknown = sorted(split for split in files if role_of(split) is None)
    if unknown:
        raise ManifestError(
            f"{folder}: lhotse split(s) {', '.join(unknown)} are neither train*, dev*/valid* nor test*; "
            "rename or move those manifests"
        )
    parts: dict[str, list[str]] = defaultdict(list)
    for split in files:
        parts[role_of(split)].append(split)
    missing = [role for role in ("train", "dev") if not parts[role]]
    if missing:
        raise ManifestError(
            f"{folder}: no {' and no '.join(missing)} split among the lhotse manifests "
            f"({', '.join(sorted(files))}); files are named [PREFIX_]cuts_SPLIT.jsonl.gz"
        )
    train = [u for split in parts["train"] for u in read_split(files[split], split, folder)]
    dev = [u for split in parts["dev"] for u in read_split(files[split], split, folder)]
    tests = {split: read_split(files[split], split, folder) for split in parts["test"]}
    return train, dev, tests


# --------------------------------------------------------------------------------------- writing


def to_cut(utt: Utterance):
    """The lhotse MonoCut (MultiCut for a file of several channels) of a whole-file utterance; the
    durations are the audio header's, the path absolute (lhotse reads relative ones from the
    working directory)."""
    require_lhotse()
    from lhotse import AudioSource, MonoCut, MultiCut, Recording, SupervisionSegment

    try:
        info = audio_info(utt.audio_filepath)
    except AudioError as err:
        raise ManifestError(f"{utt.source}: {err}") from err
    channels = list(range(info.channels))
    channel = channels[0] if len(channels) == 1 else channels
    recording = Recording(
        id=utt.id,
        sources=[AudioSource(type="file", channels=channels, source=str(Path(utt.audio_filepath).resolve()))],
        sampling_rate=info.sample_rate,
        num_samples=info.frames,
        duration=info.duration,
    )
    supervision = SupervisionSegment(
        id=utt.id,
        recording_id=utt.id,
        start=0.0,
        duration=info.duration,
        channel=channel,
        text=utt.text,
        language=utt.lang,
        speaker=utt.speaker,
    )
    cut_class = MonoCut if len(channels) == 1 else MultiCut
    return cut_class(
        id=utt.id,
        start=0.0,
        duration=info.duration,
        channel=channel,
        supervisions=[supervision],
        recording=recording,
    )


def write_cuts(utterances: Sequence[Utterance], path: str | Path) -> int:
    """A CutSet file (gzipped when the name ends in `.gz`) of whole-file utterances, written whole or
    not at all. Cut ids must be unique (lhotse keys cuts by id)."""
    path = Path(path)
    first_seen: dict[str, str] = {}
    for utt in utterances:
        if utt.id in first_seen:
            raise ManifestError(
                f"{utt.source}: id {utt.id!r} again (first at {first_seen[utt.id]}); lhotse needs unique cut ids"
            )
        first_seen[utt.id] = utt.source
    lines = [json.dumps(to_cut(utt).to_dict(), ensure_ascii=False) + "\n" for utt in utterances]
    with replaced_when_done(path) as tmp:
        with (
            gzip.open(tmp, "wt", encoding="utf-8")
            if path.name.endswith(".gz")
            else tmp.open("w", encoding="utf-8") as handle
        ):
            handle.writelines(lines)
    return len(lines)


def cuts_file(folder: str | Path, split: str) -> Path:
    """Where `export-lhotse` writes a split, named so that `read_folder` gives the split back."""
    return Path(folder) / f"cuts_{split}.jsonl.gz"
