"""Manifests, `supernet data check`, LibriSpeech import, audio loading and the tokenizer, on small
audio files written by the tests themselves."""

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from supernet.commands import data as data_cli
from supernet.data.audio import AudioError, load_audio
from supernet.data.manifest import ManifestError, check_manifest, read_manifest, write_manifest
from supernet.data.tokenizer import BLANK_ID, UNKNOWN_ID, UNKNOWN_SYMBOL, CharTokenizer, normalize_text
from supernet.errors import UserError


def write_tone(path: Path, seconds: float, rate: int = 16000, channels: int = 1, fmt: str = "FLAC") -> Path:
    """A 440 Hz tone (per-channel gain 1/(c+1)) of exactly `round(seconds * rate)` frames."""
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone / (c + 1) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, format=fmt)
    return path


def main(argv: list[str]) -> int:
    """`supernet ARGV` for the `data` subcommand (its own parser, so other subcommands need not import)."""
    assert argv[0] == "data"
    parser = argparse.ArgumentParser(prog="supernet data")
    data_cli.configure_parser(parser)
    return data_cli.run(parser.parse_args(argv[1:]))


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- LibriSpeech


def make_librispeech(root: Path) -> dict[str, float]:
    """Two speakers, three chapters; returns utterance id -> duration."""
    layout = {
        ("1272", "128104"): {"1272-128104-0000": ("MISTER QUILTER IS THE APOSTLE", 0.5)},
        ("1272", "135031"): {"1272-135031-0000": ("BECAUSE YOU WERE SLEEPING", 0.75)},
        ("174", "50561"): {
            "174-50561-0000": ("FORGOTTEN  TOO THE NAME", 0.3),
            "174-50561-0001": ("OF GILLIAN THE LOVELY", 0.6),
        },
    }
    durations = {}
    for (speaker, chapter), utts in layout.items():
        folder = root / speaker / chapter
        lines = []
        for utt_id, (text, seconds) in utts.items():
            write_tone(folder / f"{utt_id}.flac", seconds)
            lines.append(f"{utt_id} {text}")
            durations[utt_id] = seconds
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return durations


def test_import_librispeech_writes_relative_manifest(tmp_path, capsys):
    root = tmp_path / "LibriSpeech" / "dev-clean"
    durations = make_librispeech(root)
    out = tmp_path / "manifests" / "dev.jsonl"
    assert main(["data", "import-librispeech", str(root), "-o", str(out)]) == 0
    assert "4 utterances" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == sorted(durations, key=lambda u: (u.split("-")[0], u))
    by_id = {r["id"]: r for r in rows}
    assert by_id["174-50561-0000"]["text"] == "forgotten too the name"
    assert by_id["174-50561-0000"]["speaker"] == "174"
    assert {r["lang"] for r in rows} == {"en"}
    for r in rows:
        assert not Path(r["audio_filepath"]).is_absolute()
        assert r["audio_filepath"].startswith("../LibriSpeech/dev-clean/")
        assert r["duration"] == pytest.approx(durations[r["id"]], abs=1e-4)
    utts = read_manifest(out)
    assert all(Path(u.audio_filepath).is_file() for u in utts)


def test_import_librispeech_reports_unmatched_files(tmp_path, capsys):
    root = tmp_path / "ls"
    make_librispeech(root)
    (root / "1272" / "128104" / "1272-128104-0000.flac").unlink()  # transcript line without audio
    write_tone(root / "174" / "50561" / "174-50561-0009.flac", 0.2)  # audio without transcript
    out = tmp_path / "ls.jsonl"
    assert main(["data", "import-librispeech", str(root), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1272-128104.trans.txt:1: 1272-128104-0000: audio" in err and "not found" in err
    assert "174-50561-0009.flac: audio without a transcript line" in err
    assert not out.exists()
    assert main(["data", "import-librispeech", str(root), "-o", str(out), "--skip-bad"]) == 0
    assert "skipped 2 problem(s)" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 3


# ----------------------------------------------------------------------------- manifests


def test_read_manifest_errors_name_file_and_line(tmp_path):
    write_tone(tmp_path / "a.flac", 0.2)
    good = {"audio_filepath": "a.flac", "duration": 0.2, "text": "hi"}
    bad_json = write_jsonl(tmp_path / "bad_json.jsonl", [good, '{"audio_filepath": "a.flac",'])
    with pytest.raises(ManifestError, match=r"bad_json\.jsonl:2: malformed JSON"):
        read_manifest(bad_json)
    no_duration = write_jsonl(
        tmp_path / "no_dur.jsonl", [good, good, {"audio_filepath": "a.flac", "text": "x"}]
    )
    with pytest.raises(ManifestError, match=r"no_dur\.jsonl:3: missing field\(s\) duration"):
        read_manifest(no_duration)
    utt = read_manifest(write_jsonl(tmp_path / "ok.jsonl", [good]))[0]
    assert (
        Path(utt.audio_filepath) == tmp_path / "a.flac"
        and utt.id == "a"
        and utt.source.endswith("ok.jsonl:1")
    )


def make_checked_corpus(tmp_path: Path) -> Path:
    audio = tmp_path / "audio"
    write_tone(audio / "good.flac", 0.5)
    write_tone(audio / "good2.flac", 0.4)
    write_tone(audio / "rate8k.flac", 0.5, rate=8000)
    write_tone(audio / "stereo.flac", 0.5, channels=2)
    write_tone(audio / "empty.wav", 0.0, fmt="WAV")
    (audio / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 4)
    whole = write_tone(audio / "truncated.flac", 0.5).read_bytes()
    (audio / "truncated.flac").write_bytes(whole[: len(whole) // 2])  # header intact, body cut

    def row(name, duration=0.5, text="hello world", **extra):
        return {"audio_filepath": f"audio/{name}", "duration": duration, "text": text, "lang": "en", **extra}

    rows = [
        row("good.flac", speaker="s1"),  # 1
        row("missing.flac"),  # 2
        row("corrupt.flac"),  # 3
        row("empty.wav"),  # 4
        row("good2.flac", duration=0.4, text="   "),  # 5
        row("rate8k.flac", speaker="s2"),  # 6 warning only
        row("stereo.flac", text="straße", speaker="s3", lang="de"),  # 7 warning only
        row("good2.flac", duration=0.9),  # 8 duration off by 0.5 s
        '{"audio_filepath": "audio/good.flac" "duration": 0.5}',  # 9
        row("truncated.flac"),  # 10
    ]
    return write_jsonl(tmp_path / "train.jsonl", rows)


def test_check_reports_every_bad_input_by_line(tmp_path, capsys):
    manifest = make_checked_corpus(tmp_path)
    tok = CharTokenizer.build(["hello world"]).save(tmp_path / "tok.json")
    assert main(["data", "check", str(manifest), "--tokenizer", str(tok)]) == 1
    out = capsys.readouterr()
    expected = {
        2: "missing.flac: audio file not found",
        3: "corrupt.flac: cannot read audio header",
        4: "empty.wav: audio has zero length",
        5: "empty transcript",
        6: "rate8k.flac: sample rate 8000 Hz, not 16000 Hz (resampled on load)",
        7: "stereo.flac: 2 channels (downmixed to mono on load)",
        8: "good2.flac: manifest duration 0.900 s but the file holds 0.400 s",
        9: "malformed JSON",
        10: "truncated.flac: cannot decode audio",
    }
    for line_no, message in expected.items():
        hits = [line for line in out.out.splitlines() if f"train.jsonl:{line_no}:" in line]
        assert len(hits) == 1 and message in hits[0], (line_no, hits)
        assert hits[0].strip().startswith("warning" if line_no in (6, 7) else "error")
    assert "utterances: 3 good of 10 lines (7 bad)" in out.out
    assert "speakers: 3" in out.out and "languages: de 1, en 2" in out.out
    assert all(f"{c!r} x1" in out.out for c in "staß")  # the letters of "straße" not in "hello world"
    assert "7 bad line(s)" in out.err
    # Reading only the headers (and the last frames) is faster, and still sees the truncated FLAC.
    header_only = check_manifest(manifest, decode=False)
    assert header_only.bad_lines == 7
    (truncated,) = [p for p in header_only.errors if p.where.endswith("train.jsonl:10")]
    assert "truncated.flac: truncated or corrupt" in truncated.message


@pytest.mark.parametrize("fmt", ["FLAC", "WAV"])
@pytest.mark.parametrize("kept", [0.5, 0.98])
def test_header_only_check_catches_truncated_audio(tmp_path, capsys, fmt, kept):
    """A file cut short keeps its header; `--header-only` must still fail it (a cut WAV even
    decodes without a word: libsndfile shortens it to what is there)."""
    suffix = fmt.lower()
    whole = write_tone(tmp_path / f"whole.{suffix}", 2.0, fmt=fmt).read_bytes()
    (tmp_path / f"cut.{suffix}").write_bytes(whole[: int(len(whole) * kept)])
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"audio_filepath": f"whole.{suffix}", "duration": 2.0, "text": "fine"},
            {"audio_filepath": f"cut.{suffix}", "duration": 2.0, "text": "cut short"},
        ],
    )
    assert main(["data", "check", str(manifest), "--header-only"]) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "m.jsonl:2:" in line]
    assert line.strip().startswith("error") and f"cut.{suffix}: truncated" in line
    assert not any("m.jsonl:1:" in line for line in out.splitlines())


def test_fix_out_onto_the_checked_manifest_is_refused_and_leaves_it_alone(tmp_path):
    manifest = make_checked_corpus(tmp_path)
    before = manifest.read_bytes()
    for same in (manifest, tmp_path / "audio" / ".." / "train.jsonl"):
        with pytest.raises(UserError, match=r"--fix-out .*train\.jsonl is the manifest being checked"):
            main(["data", "check", str(manifest), "--skip-bad", "--fix-out", str(same)])
    (tmp_path / "link.jsonl").symlink_to(manifest)
    with pytest.raises(UserError, match="is the manifest being checked"):
        main(["data", "check", str(tmp_path / "link.jsonl"), "--fix-out", str(manifest)])
    assert manifest.read_bytes() == before


def test_check_skip_bad_counts_and_writes_clean_manifest(tmp_path, capsys):
    manifest = make_checked_corpus(tmp_path)
    clean = tmp_path / "elsewhere" / "clean.jsonl"
    assert main(["data", "check", str(manifest), "--skip-bad", "--fix-out", str(clean)]) == 0
    out = capsys.readouterr().out
    assert "skipped 7 bad line(s)" in out and "wrote 3 good lines" in out
    utts = read_manifest(clean)
    assert [Path(u.audio_filepath).name for u in utts] == ["good.flac", "rate8k.flac", "stereo.flac"]
    assert all(Path(u.audio_filepath).is_file() for u in utts)
    report = check_manifest(clean)
    assert not report.errors and len(report.warnings) == 2
    assert report.seconds == pytest.approx(1.5)


def test_write_manifest_is_atomic(tmp_path):
    """A write that fails half-way leaves the previous manifest whole (no half-written file)."""
    write_tone(tmp_path / "a.flac", 0.2)
    manifest = write_jsonl(
        tmp_path / "m.jsonl", [{"audio_filepath": "a.flac", "duration": 0.2, "text": "old"}]
    )
    before = manifest.read_bytes()

    def rows():
        yield {"audio_filepath": "a.flac", "duration": 0.2, "text": "new"}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_manifest(manifest, rows())
    assert manifest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


# ----------------------------------------------------------------------------- audio


def test_load_audio_downmixes_and_resamples(tmp_path):
    stereo = write_tone(tmp_path / "st.flac", 0.25, channels=2)
    left, _ = sf.read(str(stereo), dtype="float32")
    mono = load_audio(stereo)
    assert mono.shape == (4000,) and mono.dtype == torch.float32
    torch.testing.assert_close(mono, torch.from_numpy(left.mean(axis=1)))
    assert load_audio(write_tone(tmp_path / "r8.flac", 0.25, rate=8000)).shape == (4000,)
    with pytest.raises(AudioError, match="nope.flac: audio file not found"):
        load_audio(tmp_path / "nope.flac")


# ----------------------------------------------------------------------------- tokenizer


def test_normalize_text():
    assert normalize_text("  Hello\tWORLD \n again ") == "hello world again"


def test_tokenizer_round_trip_unknowns_and_json(tmp_path):
    tok = CharTokenizer.build(["Hallo Welt", "hello world", "ça va"], ["de", "en", "fr"])
    assert tok.vocab[:2] == ["<blank>", "<unk>"] and BLANK_ID == 0 and UNKNOWN_ID == 1
    assert len(tok) == 2 + len(set("hallo welt" + "hello world" + "ça va"))
    text = "hello welt ça va"
    ids = tok.encode(text)
    assert BLANK_ID not in ids and UNKNOWN_ID not in ids
    assert tok.decode(ids) == text
    assert tok.decode([0, *ids[:2], 0]) == "he"
    unknown = Counter()
    ids = tok.encode("Zebra xyz", unknown)
    assert unknown == Counter({"z": 2, "b": 1, "x": 1, "y": 1})
    assert ids.count(UNKNOWN_ID) == 5 and tok.decode(ids) == "⁇e⁇ra ⁇⁇⁇".replace("⁇", UNKNOWN_SYMBOL)
    assert tok.languages["fr"] == " av\u00e7" and "ç" not in tok.languages["en"]
    loaded = CharTokenizer.load(tok.save(tmp_path / "run" / "tokenizer.json"))
    assert loaded.vocab == tok.vocab and loaded.languages == tok.languages
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "char", "vocab": ["a", "b"]}))
    with pytest.raises(ValueError, match="bad.json: vocab must start with"):
        CharTokenizer.load(bad)
