"""The synthetic corpus: determinism, disjoint speakers, valid manifests, clear errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from supernet.commands import corpus as corpus_command
from supernet.data import corpus, espeak, sentences

LANGS = ("en", "es", "de")
MINUTES = 0.3
SEED = 3
PUBLIC_KEYS = {"audio_filepath", "duration", "text", "lang", "speaker", "id"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The same small corpus built twice, with one and with two worker processes."""
    one = corpus.build_corpus(tmp_path_factory.mktemp("one"), LANGS, MINUTES, SEED, workers=1)
    two = corpus.build_corpus(tmp_path_factory.mktemp("two"), LANGS, MINUTES, SEED, workers=2)
    return one, two


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_builds_are_byte_identical_whatever_the_workers(built):
    one, two = built
    a, b = files_of(one), files_of(two)
    assert sorted(a) == sorted(b)
    assert [name for name in a if a[name] != b[name]] == []
    assert sum(name.endswith(".flac") for name in a) >= 3 * len(LANGS)
    for name in ("metadata.json", "train.jsonl"):  # no absolute paths inside files
        assert str(one) not in a[name].decode()


def test_corpus_folder_layout(built):
    one, _ = built
    expected = {"train.jsonl", "dev.jsonl", "test.jsonl", "metadata.json"} | {
        f"test_{lang}.jsonl" for lang in LANGS
    }
    assert expected <= {p.name for p in one.iterdir()}


def test_manifest_lines_are_valid(built):
    one, _ = built
    ids = set()
    for name in ("train", "dev", "test"):
        rows = read_jsonl(one / f"{name}.jsonl")
        assert rows, f"{name}.jsonl is empty"
        for row in rows:
            assert set(row) == PUBLIC_KEYS
            assert not Path(row["audio_filepath"]).is_absolute()
            info = sf.info(str(one / row["audio_filepath"]))
            assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
            assert row["duration"] == pytest.approx(info.frames / 16000, abs=1e-4)
            words = row["text"].split()
            assert sentences.MIN_WORDS <= len(words) <= sentences.MAX_WORDS
            assert row["text"] == row["text"].lower() == " ".join(words)
            assert set(words) <= set(sentences.word_list(row["lang"]))
            assert row["lang"] in LANGS and row["speaker"].startswith(row["lang"] + "-")
            assert row["id"] not in ids
            ids.add(row["id"])


def test_audio_has_noise_around_the_speech(built):
    one, _ = built
    for row in read_jsonl(one / "train.jsonl"):
        audio, _ = sf.read(str(one / row["audio_filepath"]), dtype="float64")
        lead = audio[: int(corpus.PAD_SECONDS[0] * 16000)]  # always padding, never speech
        assert np.sqrt(np.mean(lead**2)) > 0  # noise, not digital silence
        assert np.sqrt(np.mean(lead**2)) < np.sqrt(np.mean(audio**2))  # quieter than the speech
        assert 0.29 < np.abs(audio).max() < 0.91


def test_dev_and_test_speakers_never_speak_in_train(built):
    one, _ = built
    speakers = {
        name: {r["speaker"] for r in read_jsonl(one / f"{name}.jsonl")} for name in ("train", "dev", "test")
    }
    assert speakers["train"].isdisjoint(speakers["dev"] | speakers["test"])
    assert speakers["dev"].isdisjoint(speakers["test"])
    # At scale too: plan 600 English utterances and check every one's speaker belongs to its split.
    plan = corpus.LanguagePlan("en", seed=0)
    utterances = [plan.next() for _ in range(600)]
    for split, members in plan.speakers.items():
        voices = {s.voice for s in members}
        assert all(u.speaker in members for u in utterances if u.split == split)
        for other, others in plan.speakers.items():
            if other != split:
                assert voices.isdisjoint(s.voice for s in others)
    chars = {split: sum(len(u.text) for u in utterances if u.split == split) for split in corpus.SPLITS}
    assert chars["train"] / sum(chars.values()) == pytest.approx(0.8, abs=0.02)


def test_per_language_test_sets(built):
    one, _ = built
    test = read_jsonl(one / "test.jsonl")
    for lang in LANGS:
        rows = read_jsonl(one / f"test_{lang}.jsonl")
        assert rows and all(r["lang"] == lang for r in rows)
        assert rows == [r for r in test if r["lang"] == lang]


def test_metadata_describes_the_corpus(built):
    one, _ = built
    meta = json.loads((one / "metadata.json").read_text())
    assert meta["parameters"] == {"langs": list(LANGS), "minutes": MINUTES, "seed": SEED}
    assert meta["sample_rate"] == 16000 and meta["word_source"]["package"] == "wordfreq"
    assert meta["espeak_ng"]["version"] == espeak.version()
    for name, info in meta["splits"].items():
        rows = read_jsonl(one / f"{name}.jsonl")
        assert info["utterances"] == len(rows)
        assert info["speakers"] == sorted({r["speaker"] for r in rows})
        assert info["hours"] == pytest.approx(sum(r["duration"] for r in rows) / 3600, abs=1e-4)
    for lang in LANGS:
        words = [
            w
            for name in ("train", "dev", "test")
            for r in read_jsonl(one / f"{name}.jsonl")
            if r["lang"] == lang
            for w in r["text"].split()
        ]
        assert meta["languages"][lang]["words"] == len(words)
        assert meta["languages"][lang]["distinct_words"] == len(set(words))


@pytest.mark.parametrize(("lang", "culprit"), [("xx", "espeak-ng"), ("eo", "wordfreq")])
def test_unknown_language_is_named(tmp_path, lang, culprit):
    with pytest.raises(ValueError, match=rf"'{lang}'.*{culprit}"):
        corpus.build_corpus(tmp_path, ("en", lang), minutes=0.1)
    assert not (tmp_path / "audio").exists()


def test_cli_reports_unknown_language(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    corpus_command.configure_parser(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--langs", "en,qq", "--minutes", "0.1"])
    assert corpus_command.run(args) == 2
    assert "'qq'" in capsys.readouterr().err


def test_ensure_demo_corpus_builds_only_when_needed(built, monkeypatch):
    one, _ = built
    calls = []
    monkeypatch.setattr(corpus, "build_corpus", lambda *args, **kw: calls.append(args) or Path(args[0]))
    assert corpus.ensure_demo_corpus(one, LANGS, MINUTES, SEED) == one
    assert calls == []  # same parameters: kept
    corpus.ensure_demo_corpus(one, LANGS, MINUTES, SEED + 1)
    assert len(calls) == 1  # other parameters: rebuilt


def test_isolated_espeak_does_not_depend_on_what_was_spoken_before():
    engine = espeak.IsolatedEspeak()
    try:
        first = engine.synth("hello there my friend", "en+m3", 180, 50, 50, seed=1)
        engine.synth("etwas ganz anderes", "de+klatt", 120, 20, 90, seed=2)
        again = engine.synth("hello there my friend", "en+m3", 180, 50, 50, seed=1)
        assert engine.sample_rate == 22050 and first.size > 0.5 * 22050
        np.testing.assert_array_equal(first, again)
        with pytest.raises(RuntimeError, match="no voice"):
            engine.synth("hello", "xx+m3", 180, 50, 50)
    finally:
        engine.close()


def test_word_lists_hold_plain_words_of_the_language():
    en, es, de = (sentences.word_list(lang) for lang in LANGS)
    assert len(en) >= 2000 and len(es) >= 1000 and len(de) >= 1000
    assert {"the", "and", "a", "i"} <= set(en) and not {"s", "t", "mr", "it's", "1"} & set(en)
    assert "más" in es and "für" in de
    for lang, words in zip(LANGS, (en, es, de)):
        assert all(set(w) <= set(sentences.ALPHABETS[lang]) for w in words)


def test_word_stream_uses_every_word_once_per_pass():
    words = tuple(f"w{i}" for i in range(10))
    stream = sentences.WordStream(words, seed=0)
    taken = stream.take(7) + stream.take(13)
    assert sorted(taken[:10]) == sorted(words) and sorted(taken[10:]) == sorted(words)
    assert taken == sentences.WordStream(words, seed=0).take(20)  # seeded
    assert taken != sentences.WordStream(words, seed=1).take(20)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_coloured_noise_has_the_asked_spectral_slope(exponent):
    noise = corpus.coloured_noise(1 << 16, exponent, np.random.default_rng(0))
    assert noise.std() == pytest.approx(1.0)
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(noise.size)
    bands = np.geomspace(0.002, 0.4, 8)
    centres = np.sqrt(bands[:-1] * bands[1:])
    levels = [power[(freqs >= lo) & (freqs < hi)].mean() for lo, hi in zip(bands[:-1], bands[1:])]
    slope = np.polyfit(np.log(centres), np.log(levels), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.15)


def test_trim_silence_keeps_the_loud_part():
    x = np.zeros(100)
    x[30:60] = 1.0
    x[10] = 0.001  # below 1% of the peak: silence
    np.testing.assert_array_equal(corpus.trim_silence(x), np.ones(30))
    assert corpus.trim_silence(x, margin=5).size == 40
    assert corpus.trim_silence(np.zeros(50)).size == 0


def test_language_shares():
    seconds = corpus.language_seconds(("en", "es", "de"), 30.0)
    assert sum(seconds.values()) == pytest.approx(1800.0)
    assert seconds["en"] == pytest.approx(1.5 * seconds["es"]) and seconds["es"] == pytest.approx(
        seconds["de"]
    )


# ---------------------------------------------------------------- building into an occupied folder

SMALL = (("en",), 0.2)  # languages and minutes of the corpora below: a few seconds to build


def tree_hashes(folder: Path) -> dict[str, str]:
    import hashlib

    return {name: hashlib.sha256(data).hexdigest() for name, data in files_of(folder).items()}


def leftovers(out: Path) -> list[str]:
    """Hidden build folders beside `out` (partial builds, swapped-out old corpora)."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


@pytest.fixture(scope="module")
def seed3(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A small corpus (seed 3) to copy into a test's folder, and the hashes of its files."""
    folder = corpus.build_corpus(tmp_path_factory.mktemp("seed3") / "corpus", *SMALL, seed=3, workers=2)
    return folder, tree_hashes(folder)


@pytest.fixture
def occupied(tmp_path, seed3) -> Path:
    import shutil

    out = tmp_path / "corpus"
    shutil.copytree(seed3[0], out)
    return out


def test_same_parameters_keep_the_corpus_without_rendering(occupied, seed3, monkeypatch):
    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(corpus, "_render_corpus", no_rendering)
    assert corpus.build_corpus(occupied, *SMALL, seed=3) == occupied
    assert corpus.build_corpus(occupied, *SMALL, seed=3, overwrite=True) == occupied
    assert tree_hashes(occupied) == seed3[1]


@pytest.mark.parametrize("occupant", ["other corpus", "unfinished corpus", "other files", "a file"])
def test_an_occupied_folder_is_refused_naming_it_and_overwrite(tmp_path, occupied, seed3, occupant):
    from supernet.errors import UserError

    out = occupied
    if occupant == "unfinished corpus":  # stopped by the in-place builds of old
        (out / "metadata.json").unlink()
    elif occupant == "other files":
        out = tmp_path / "notes"
        out.mkdir()
        (out / "todo.txt").write_text("keep me")
    elif occupant == "a file":
        out = tmp_path / "notes.txt"
        out.write_text("keep me")
    before = tree_hashes(out) if out.is_dir() else out.read_bytes()
    with pytest.raises(UserError, match="--overwrite") as info:
        corpus.build_corpus(out, *SMALL, seed=4)
    message = str(info.value)
    assert str(out) in message and "\n" not in message
    words = {"other corpus": "another corpus", "unfinished corpus": "unfinished corpus"}
    assert words.get(occupant, "") in message and ("seed 3" in message) == (occupant == "other corpus")
    assert (tree_hashes(out) if out.is_dir() else out.read_bytes()) == before
    assert leftovers(out) == []


def test_cli_refuses_an_occupied_folder(occupied, capsys):
    parser = argparse.ArgumentParser()
    corpus_command.configure_parser(parser)
    args = parser.parse_args(["--out", str(occupied), "--langs", "en", "--minutes", "0.2", "--seed", "4"])
    assert corpus_command.run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("supernet corpus: error: ") and str(occupied) in err and "--overwrite" in err


def test_overwrite_replaces_the_corpus_only_once_the_new_one_is_complete(occupied, seed3, monkeypatch):
    real_render = corpus._render_corpus
    seen = {}

    def render_and_look(folder, *args):
        real_render(folder, *args)
        seen["old corpus while rendering"] = tree_hashes(occupied)

    monkeypatch.setattr(corpus, "_render_corpus", render_and_look)
    corpus.build_corpus(occupied, *SMALL, seed=4, workers=1, overwrite=True)
    assert seen["old corpus while rendering"] == seed3[1]
    assert json.loads((occupied / "metadata.json").read_text())["parameters"]["seed"] == 4
    assert tree_hashes(occupied) != seed3[1]
    assert leftovers(occupied) == []


def test_a_failed_build_leaves_the_old_corpus_and_no_partial_folder(occupied, seed3, monkeypatch):
    def broken(folder, *args):
        (folder / "audio").mkdir()
        (folder / "audio" / "half.flac").write_bytes(b"x")
        raise RuntimeError("espeak-ng died")

    monkeypatch.setattr(corpus, "_render_corpus", broken)
    with pytest.raises(RuntimeError, match="espeak-ng died"):
        corpus.build_corpus(occupied, *SMALL, seed=4, overwrite=True)
    assert tree_hashes(occupied) == seed3[1]
    assert leftovers(occupied) == []


def fake_render(folder: Path, langs, minutes, seed, workers, text="random") -> None:
    """Stands in for rendering where only the folder handling is tested: a metadata.json alone."""
    metadata = {"generator": "supernet corpus", "format_version": corpus.FORMAT_VERSION}
    metadata["parameters"] = corpus.build_parameters(langs, minutes, seed, text)
    (folder / "metadata.json").write_text(json.dumps(metadata))


def test_sigkill_mid_build_leaves_the_old_corpus_intact(occupied, seed3, monkeypatch):
    """A real `supernet corpus --overwrite` killed while rendering: the old corpus is untouched,
    the partial folder is never taken for a corpus, and the next build removes it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    command = [
        sys.executable,
        "-m",
        "supernet.commands.cli",
        "corpus",
        "--out",
        str(occupied),
        "--langs",
        "en",
    ]
    command += ["--minutes", "3", "--seed", "4", "--workers", "1", "--overwrite"]
    proc = subprocess.Popen(
        command,
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so that its workers can be killed too
    )
    try:
        deadline = time.monotonic() + 120
        while not any(occupied.parent.glob(f".{occupied.name}.partial-*/audio/en/*.flac")):
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "no audio in a partial folder after 120 s"
            time.sleep(0.05)
        time.sleep(0.3)  # a few more files
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the pool workers and espeak servers it started
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert tree_hashes(occupied) == seed3[1]
    [partial] = leftovers(occupied)
    assert partial.startswith(f".{occupied.name}.partial-{proc.pid}-")
    assert corpus.built_parameters(occupied.parent / partial) is None  # never a finished corpus
    assert corpus.build_corpus(occupied, *SMALL, seed=3) == occupied  # kept as is
    assert leftovers(occupied) == [partial]  # ignored by a build that renders nothing
    monkeypatch.setattr(corpus, "_render_corpus", fake_render)
    corpus.build_corpus(occupied, *SMALL, seed=5, overwrite=True)
    assert leftovers(occupied) == []  # removed by the next build
    assert json.loads((occupied / "metadata.json").read_text())["parameters"]["seed"] == 5


def test_ensure_demo_corpus_replaces_another_corpus_but_not_other_files(tmp_path, occupied, monkeypatch):
    calls = []
    monkeypatch.setattr(corpus, "build_corpus", lambda *args, **kw: calls.append(kw) or Path(args[0]))
    corpus.ensure_demo_corpus(occupied, *SMALL, seed=4)
    assert calls == [{"overwrite": True}]
    (occupied / "metadata.json").unlink()  # unfinished: replaced too
    corpus.ensure_demo_corpus(occupied, *SMALL, seed=3)
    assert calls[-1] == {"overwrite": True}
    other = tmp_path / "other"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    corpus.ensure_demo_corpus(other, *SMALL, seed=4)
    assert calls[-1] == {"overwrite": False}


def test_a_script_without_the_main_guard_gets_an_error_not_a_hang(tmp_path):
    """The render workers are spawned and import the caller's script; one that builds at top level
    made mp.Pool start workers forever (the guide's snippet, saved as a file). Now it stops at once
    with an error naming the guard, and the worker never starts a build of its own."""
    import subprocess
    import sys

    out = tmp_path / "corpus"
    script = tmp_path / "build.py"
    script.write_text(
        "import supernet\n"
        f"supernet.build_corpus({str(out)!r}, langs=('en',), minutes=0.05, seed=0, workers=1)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode != 0
    assert 'if __name__ == "__main__":' in proc.stderr.strip().splitlines()[-1]
    assert not out.exists() and not list(tmp_path.glob(".corpus.partial-*"))  # nothing left behind


def test_a_script_read_from_stdin_gets_an_error_naming_the_fix(tmp_path):
    """`python - <<EOF` gives the main module the path '<stdin>', which a spawned render worker
    cannot re-import: each would die on start. It is refused before a worker starts, and nothing
    is left behind."""
    import subprocess
    import sys

    out = tmp_path / "corpus"
    script = f"import supernet\nsupernet.build_corpus({str(out)!r}, langs=('en',), minutes=0.05, seed=0, workers=1)\n"
    proc = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode != 0
    assert "'<stdin>'" in proc.stderr and "python -c" in proc.stderr.strip().splitlines()[-1]
    assert not out.exists() and not list(tmp_path.glob(".corpus.partial-*"))
