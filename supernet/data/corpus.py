"""The built-in synthetic multilingual corpus: espeak-ng speech of real words, with noise.

`build_corpus(DIR, ("en", "es", "de"), minutes=30, seed=0)` (the command line:
`supernet corpus`, in `supernet.commands.corpus`) writes 16 kHz mono FLAC under DIR/audio/, the
manifests train/dev/test.jsonl and test_<lang>.jsonl, and metadata.json.

- Words: `wordfreq`'s bundled frequency lists (see `supernet.data.sentences`), lower case, 3 to 20
  words a sentence, drawn in shuffled passes over each list so that many distinct words occur; or,
  with `text="markov"`, sentences of a Markov chain over the most frequent words, text with
  structure that a word LM (`supernet lm build`) can learn.
- Speakers: espeak-ng voices with a variant (`en+m3`, `es+f2`, `de+klatt`, ...) and their own
  rate, pitch and pitch range, jittered per utterance. Each language has its own speakers, and
  the speakers of dev and test never speak in train.
- Audio: silence trimmed, resampled from 22050 Hz to 16 kHz, padded with a little silence, then
  white, pink or brown noise at 10 to 30 dB SNR and a random level.
- Determinism: every random choice of an utterance comes from a generator seeded by (seed,
  language, utterance index) and espeak-ng speaks each utterance in a fresh fork, so the files
  are byte-identical whatever the number of worker processes.
- Size: utterances are kept, in index order, until each language has its share of the minutes
  (English 1.5 shares, other languages 1); the split is about 80/10/10 by duration.
- Safety: the corpus is built in a hidden sibling folder (`.DIR.partial-PID-...`) and renamed to
  DIR only when complete, so a killed build never leaves manifests beside audio of another
  build. A DIR that already holds this very corpus (same parameters in metadata.json) is kept as
  is; one holding another corpus or other files is replaced only with `--overwrite`, after the
  new corpus is complete. Partial folders of builds that died are removed by the next build.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from supernet.data import espeak, sentences
from supernet.errors import UserError
from supernet.outputs import atomic_write_text

SAMPLE_RATE = 16000
FORMAT_VERSION = 1  # bump when the generator changes, so `ensure_demo_corpus` rebuilds
DEFAULT_LANGS = ("en", "es", "de")
SPLITS = {"train": 0.8, "dev": 0.1, "test": 0.1}
# Shares of the minutes: English 1.5, every other language 1. At a speaking rate that suits CTC
# (see MAX_CHARS_PER_SECOND) ten minutes hold about 1650 English words; the extra time lets the
# default corpus use more than 2000 distinct English words.
LANGUAGE_WEIGHTS = {"en": 1.5}
SPEAKERS_PER_SPLIT = {"train": 10, "dev": 3, "test": 3}
# Voice variants that sound like a person (no robots, whispers or heavy echo); those missing
# from the installed `voices/!v` folder are skipped.
HUMAN_VARIANTS = (
    *(f"m{i}" for i in range(1, 9)),
    *(f"f{i}" for i in range(1, 6)),
    "klatt", "klatt2", "klatt3", "klatt4",
    "Alex", "Andy", "Annie", "Denis", "Gene", "Jacky", "Michael", "Mike", "adam", "anika", "antonio",
    "belinda", "benjamin", "boris", "david", "ed", "edward", "grandma", "grandpa", "gustave", "iven",
    "linda", "marcelo", "max", "michel", "miguel", "paul", "pedro", "quincy", "rob", "robert", "steph",
    "travis", "victor",
)  # fmt: skip
RATE = (175, 255)  # words per minute, per speaker (MAX_CHARS_PER_SECOND slows the fastest)
PITCH = (25, 75)  # espeak 0..100
PITCH_RANGE = (20, 80)  # espeak 0..100
RATE_JITTER, PITCH_JITTER, RANGE_JITTER = 0.08, 8, 10  # per utterance
SNR_DB = (10.0, 30.0)
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**exponent
PAD_SECONDS = (0.05, 0.25)  # silence (then noise) before and after the speech
PEAK = (0.3, 0.9)  # final peak level
# Speech is slowed down to at most this many characters a second: with the padding, 40 ms CTC
# frames (4x subsampling of 10 ms features) then always outnumber the transcript's characters.
MAX_CHARS_PER_SECOND = 22.0
CHARS_PER_SECOND_AT_175 = 16.0  # for planning only; measured sizes decide what is kept
PLAN_MARGIN = 1.1

SPEAKER_SALT, TEXT_SALT, AUDIO_SALT, WORDS_SALT = 1, 2, 3, 4


class CorpusError(UserError, ValueError):
    """Bad corpus arguments, or an output folder that must not be replaced (a ValueError too)."""


@dataclass(frozen=True)
class Speaker:
    id: str
    lang: str
    split: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int


@dataclass(frozen=True)
class Utterance:
    """Everything a worker needs to render one utterance."""

    id: str
    lang: str
    split: str
    speaker: Speaker
    text: str
    seed: tuple[int, ...]  # entropy of the utterance's audio generator

    def estimated_seconds(self) -> float:
        return sum(PAD_SECONDS) + len(self.text) / CHARS_PER_SECOND_AT_175 * 175 / self.speaker.rate


def _key(lang: str) -> list[int]:
    return list(lang.encode())


def check_language(lang: str) -> None:
    """CorpusError naming `lang` unless espeak-ng has a voice and wordfreq a word list for it."""
    if lang not in espeak.language_voices():
        raise CorpusError(f"unknown language {lang!r}: espeak-ng has no voice for it")
    try:
        sentences.word_list(lang)
    except ValueError as err:
        raise CorpusError(str(err)) from None


def language_seconds(langs: tuple[str, ...], minutes: float) -> dict[str, float]:
    """Seconds of audio per language: `minutes` shared by LANGUAGE_WEIGHTS (1 if not listed)."""
    weights = {lang: LANGUAGE_WEIGHTS.get(lang, 1.0) for lang in langs}
    return {lang: minutes * 60.0 * w / sum(weights.values()) for lang, w in weights.items()}


def make_speakers(lang: str, seed: int) -> dict[str, list[Speaker]]:
    """The speakers of `lang` per split: distinct voice variants, so no voice is in two splits."""
    available = set(espeak.voice_variants())
    variants = [v for v in HUMAN_VARIANTS if v in available]
    total = sum(SPEAKERS_PER_SPLIT.values())
    if not variants:
        raise RuntimeError(f"none of the voice variants {HUMAN_VARIANTS} is in {espeak.data_path()}")
    rng = np.random.default_rng([seed, *_key(lang), SPEAKER_SALT])
    chosen = rng.choice(variants, size=total, replace=len(variants) < total)
    speakers: dict[str, list[Speaker]] = {split: [] for split in SPLITS}
    index = 0
    for split, count in SPEAKERS_PER_SPLIT.items():
        for _ in range(count):
            speakers[split].append(
                Speaker(
                    id=f"{lang}-spk{index:02d}",
                    lang=lang,
                    split=split,
                    voice=f"{lang}+{chosen[index]}",
                    rate=int(rng.integers(*RATE, endpoint=True)),
                    pitch=int(rng.integers(*PITCH, endpoint=True)),
                    pitch_range=int(rng.integers(*PITCH_RANGE, endpoint=True)),
                )
            )
            index += 1
    return speakers


class LanguagePlan:
    """Utterances of one language, in index order: text, split and speaker of each."""

    def __init__(self, lang: str, seed: int, text: str = "random") -> None:
        self.lang, self.seed = lang, seed
        self.speakers = make_speakers(lang, seed)
        words = sentences.word_list(lang)
        self.words = sentences.WordStream(words, seed, (*_key(lang), WORDS_SALT))
        self.markov = (
            sentences.MarkovText(words, seed, (*_key(lang), WORDS_SALT)) if text == "markov" else None
        )
        self.chars = {split: 0.0 for split in SPLITS}
        self.index = 0

    def next(self) -> Utterance:
        k, self.index = self.index, self.index + 1
        rng = np.random.default_rng([self.seed, *_key(self.lang), TEXT_SALT, k])
        length = sentences.sentence_length(rng)
        text = " ".join(self.words.take(length) if self.markov is None else self.markov.sentence(length, rng))
        if k < len(SPLITS):  # one utterance in each split first, so even a tiny corpus has all
            split = list(SPLITS)[k]
        else:  # then the split furthest below its share (by characters, a proxy for duration)
            total = sum(self.chars.values()) + len(text)
            split = max(SPLITS, key=lambda s: SPLITS[s] * total - self.chars[s])
        self.chars[split] += len(text)
        speaker = self.speakers[split][int(rng.integers(len(self.speakers[split])))]
        return Utterance(
            id=f"{self.lang}-{k:05d}",
            lang=self.lang,
            split=split,
            speaker=speaker,
            text=text,
            seed=(self.seed, *_key(self.lang), AUDIO_SALT, k),
        )


# ---------------------------------------------------------------- worker side (one per process)

_ENGINE: espeak.IsolatedEspeak | None = None


def _init_worker() -> None:
    from multiprocessing.util import Finalize

    global _ENGINE
    _ENGINE = espeak.IsolatedEspeak()  # first, while this process is small (it forks per utterance)
    Finalize(_ENGINE, _ENGINE.close, exitpriority=10)  # stop and reap its server when the worker exits
    import torch

    torch.set_num_threads(1)  # the pool is the parallelism; also keeps results thread-count free


def trim_silence(x: np.ndarray, threshold: float = 0.01, margin: int = 0) -> np.ndarray:
    """Cut what lies before the first and after the last sample above `threshold` x peak."""
    loud = np.flatnonzero(np.abs(x) > threshold * np.abs(x).max(initial=0.0))
    if loud.size == 0:
        return x[:0]
    return x[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise whose power spectrum falls as 1 / f**exponent (0 white, 1 pink, 2 brown)."""
    size = 1 << max(n - 1, 1).bit_length()  # a power of two: fast FFTs
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum * freqs ** (-exponent / 2), size)[:n]
    noise -= noise.mean()
    return noise / max(float(noise.std()), 1e-12)


def render(utt: Utterance) -> tuple[bytes, int]:
    """Speak, trim, resample, pad, add noise; return the FLAC file's bytes and its samples."""
    import soundfile as sf
    import torch
    import torchaudio

    assert _ENGINE is not None, "render() runs in a worker started with _init_worker()"
    rng = np.random.default_rng(list(utt.seed))
    spk = utt.speaker
    rate = round(spk.rate * rng.uniform(1 - RATE_JITTER, 1 + RATE_JITTER))
    pitch = int(np.clip(spk.pitch + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 100))
    pitch_range = int(np.clip(spk.pitch_range + rng.integers(-RANGE_JITTER, RANGE_JITTER + 1), 0, 100))
    espeak_seed = int(rng.integers(2**31))
    for _ in range(4):
        raw = _ENGINE.synth(utt.text, spk.voice, rate, pitch, pitch_range, seed=espeak_seed)
        speech = trim_silence(raw.astype(np.float32) / 32768.0, margin=_ENGINE.sample_rate // 100)
        if speech.size == 0:
            raise RuntimeError(f"espeak-ng produced silence for {utt.id} ({spk.voice}): {utt.text!r}")
        chars_per_second = len(utt.text) * _ENGINE.sample_rate / speech.size
        if chars_per_second <= MAX_CHARS_PER_SECOND:
            break
        rate = max(80, int(rate * MAX_CHARS_PER_SECOND / chars_per_second * 0.97))  # too dense: slower
    speech = torchaudio.functional.resample(
        torch.from_numpy(speech), _ENGINE.sample_rate, SAMPLE_RATE
    ).numpy()
    speech = speech.astype(np.float64)

    lead, trail = (int(rng.uniform(*PAD_SECONDS) * SAMPLE_RATE) for _ in range(2))
    audio = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    colour = str(rng.choice(list(NOISE_COLOURS)))
    snr_db = float(rng.uniform(*SNR_DB))
    speech_rms = float(np.sqrt(np.mean(speech**2)))
    audio += coloured_noise(audio.size, NOISE_COLOURS[colour], rng) * speech_rms / 10 ** (snr_db / 20)
    audio *= rng.uniform(*PEAK) / np.abs(audio).max()
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)

    buffer = io.BytesIO()
    sf.write(buffer, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue(), int(pcm.size)


# ---------------------------------------------------------------- the builder


def _available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="utt", disable=None, file=sys.stderr)


def build_parameters(
    langs: tuple[str, ...] | list[str], minutes: float, seed: int, text: str = "random"
) -> dict:
    """The arguments that decide a corpus's content, as metadata.json records them. ``text`` is
    recorded only when not the default, so corpora built before it existed still match."""
    params = {"langs": list(langs), "minutes": float(minutes), "seed": int(seed)}
    return params if text == "random" else {**params, "text": text}


def built_parameters(out_dir: str | os.PathLike) -> dict | None:
    """`{"format_version", "parameters"}` of the finished corpus in `out_dir`, or None if it holds none.

    metadata.json is the last file a build writes, and a build renames its folder into place only
    once complete, so a metadata.json of `supernet corpus` marks a finished corpus.
    """
    try:
        meta = json.loads((Path(out_dir) / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("generator") != "supernet corpus":
        return None
    return {"format_version": meta.get("format_version"), "parameters": meta.get("parameters")}


def holds_corpus(out: Path, wanted: dict) -> bool:
    """Whether `out` holds the finished corpus of these `build_parameters` (and this generator)."""
    return built_parameters(out) == {"format_version": FORMAT_VERSION, "parameters": wanted}


def _is_unfinished_corpus(out: Path) -> bool:
    """A folder where a build before atomic builds was stopped (it rendered audio/ in place)."""
    return (out / "audio").is_dir() and built_parameters(out) is None


def _is_empty_folder(out: Path) -> bool:
    return out.is_dir() and not any(out.iterdir())


def _describe_occupant(out: Path) -> str:
    """What `out` holds, in words, for the error that refuses to replace it."""
    built = built_parameters(out)
    if built is None and _is_unfinished_corpus(out):
        return "an unfinished corpus (audio/ but no metadata.json: its build was stopped)"
    if built is None:
        return "other files" if out.is_dir() else "a file"
    params = built["parameters"] or {}
    args = f"langs {','.join(params.get('langs') or [])}, minutes {params.get('minutes')}, seed {params.get('seed')}"
    if built["format_version"] != FORMAT_VERSION:
        return (
            f"a corpus of an older generator (format {built['format_version']}, now {FORMAT_VERSION}; {args})"
        )
    return f"another corpus ({args})"


def _sibling_prefix(out: Path, kind: str) -> str:
    return f".{out.name}.{kind}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: someone else's live process
        return True
    return True


def remove_stale_builds(out: Path) -> list[Path]:
    """Remove the partial (and swapped-out old) folders beside `out` of builds whose process died.

    Folders of live processes are left alone: another build of the same folder may be running.
    """
    removed = []
    for kind in ("partial", "old"):
        prefix = _sibling_prefix(out, kind)
        for path in out.parent.glob(f"{prefix}*"):
            pid = path.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                _remove(path)
                removed.append(path)
    return removed


def _new_sibling(out: Path, kind: str) -> Path:
    """A fresh hidden folder beside `out` named after it, this process and `kind`."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{_sibling_prefix(out, kind)}{os.getpid()}-", dir=out.parent))
    except OSError as err:
        raise CorpusError(f"corpus folder {out}: cannot write beside it ({err.strerror or err})") from None


def _move_into_place(built: Path, out: Path) -> None:
    """Rename the complete corpus `built` to `out`; whatever `out` held is removed only afterwards."""
    if not out.exists() and not out.is_symlink():
        os.rename(built, out)
        return
    if _is_empty_folder(out):
        os.rmdir(out)
        os.rename(built, out)
        return
    old = out.parent / f"{_sibling_prefix(out, 'old')}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    os.rename(built, out)
    _remove(old)


def _remove(path: Path) -> None:
    """Remove a folder with its files, or a file or link."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def build_corpus(
    out_dir: str | os.PathLike,
    langs: tuple[str, ...] | list[str] = DEFAULT_LANGS,
    minutes: float = 30.0,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
    text: str = "random",
) -> Path:
    """Build the corpus and return `out_dir`; a finished corpus with these parameters is kept as is.
    ``text``: ``random`` words or ``markov`` sentences (``supernet.data.sentences``).

    The corpus is built aside and renamed to `out_dir` when complete. A `out_dir` holding another
    corpus or other files is a CorpusError unless `overwrite`, which replaces it once the new
    corpus is complete.
    """
    _refuse_inside_a_worker_start()
    langs = tuple(langs)
    if not langs:
        raise CorpusError("no language given")
    if len(set(langs)) != len(langs):
        raise CorpusError(f"a language is given twice in {','.join(langs)}")
    if not (minutes > 0 and math.isfinite(minutes)):
        raise CorpusError(f"minutes must be a positive number, got {minutes}")
    if text not in sentences.TEXT_KINDS:
        raise CorpusError(f"text: unknown {text!r}; choose one of {', '.join(sentences.TEXT_KINDS)}")
    for lang in langs:
        check_language(lang)
    workers = max(1, workers or _available_cpus())

    given = Path(out_dir)
    out = Path(os.path.abspath(given))
    wanted = build_parameters(langs, minutes, seed, text)
    if holds_corpus(out, wanted):
        return given
    occupied = (out.exists() or out.is_symlink()) and not _is_empty_folder(out)
    if occupied and not overwrite:
        raise CorpusError(
            f"corpus folder {given} already holds {_describe_occupant(out)}; "
            "pass --overwrite to replace it, or choose another --out"
        )
    remove_stale_builds(out)
    partial = _new_sibling(out, "partial")
    try:
        _render_corpus(partial, langs, minutes, seed, workers, text)
        _move_into_place(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return given


SCRIPT_GUARD = (
    'a script that calls supernet.build_corpus must call it under `if __name__ == "__main__":`: '
    "the render workers are spawned and import the script, which would build the corpus again "
    "(a notebook needs no guard)"
)


def _refuse_inside_a_worker_start() -> None:
    """A spawned worker imports the user's main script; one that calls us at top level would
    start a build (and clear the parent's half-built folder) inside the worker. Stop it first."""
    import multiprocessing as mp

    if getattr(mp.current_process(), "_inheriting", False):
        raise RuntimeError(SCRIPT_GUARD)


def _refuse_a_main_script_spawn_cannot_import() -> None:
    """Spawned workers re-import the main module as ``multiprocessing.spawn`` does: by its module
    name when it has one (``python -m``, a zipapp's), else by its file's path (a frozen app
    re-runs itself). A script read from stdin (``python - <<EOF``) has the path '<stdin>', which
    no worker can open: each would die on start. Say so before one starts."""
    main = sys.modules.get("__main__")
    if getattr(sys, "frozen", False) or getattr(getattr(main, "__spec__", None), "name", None):
        return
    main_path = getattr(main, "__file__", None)
    if main_path is not None and (main_path.startswith("<") or not os.path.exists(main_path)):
        raise CorpusError(
            f"the corpus cannot be rendered from a main script whose file is {main_path!r}: the render "
            "workers are spawned and re-import it by its path. Save the script to a file (with the "
            "main guard) or pass it with `python -c`"
        )


def _render_corpus(
    out: Path, langs: tuple[str, ...], minutes: float, seed: int, workers: int, text: str = "random"
) -> None:
    """Render every utterance into the empty folder `out` and write the manifests, metadata last."""
    import multiprocessing as mp

    _refuse_a_main_script_spawn_cannot_import()
    for lang in langs:
        (out / "audio" / lang).mkdir(parents=True)

    plans = {lang: LanguagePlan(lang, seed, text) for lang in langs}
    target = language_seconds(langs, minutes)
    seconds = dict.fromkeys(langs, 0.0)
    records: dict[str, list[dict]] = {lang: [] for lang in langs}
    ctx = mp.get_context("spawn")  # a clean interpreter per worker: no inherited threads or espeak state

    def full(lang: str) -> bool:  # a language is full with its seconds and every split used
        return seconds[lang] >= target[lang] and len(records[lang]) >= len(SPLITS)

    # an executor, not mp.Pool: a worker that dies while starting (a script without the main
    # guard) breaks it with an error, where a Pool would start new workers forever
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
    try:
        round_ = 0
        while not all(full(lang) for lang in langs):
            # Plan a little more than the estimate asks; what is measured decides what is kept.
            round_ += 1
            batch: list[Utterance] = []
            for lang in (lang for lang in langs if not full(lang)):
                planned, missing = 0.0, (target[lang] - seconds[lang]) * PLAN_MARGIN
                while planned < missing or plans[lang].index < len(SPLITS):
                    batch.append(plans[lang].next())
                    planned += batch[-1].estimated_seconds()
            chunksize = max(1, min(16, len(batch) // (workers * 8)))
            with _progress(len(batch), f"corpus round {round_}") as bar:
                for utt, (flac, n_samples) in zip(batch, pool.map(render, batch, chunksize=chunksize)):
                    bar.update()
                    if full(utt.lang):
                        continue  # later utterances of a full language are dropped
                    seconds[utt.lang] += n_samples / SAMPLE_RATE
                    rel = f"audio/{utt.lang}/{utt.id}.flac"
                    (out / rel).write_bytes(flac)
                    records[utt.lang].append(
                        {
                            "audio_filepath": rel,
                            "duration": round(n_samples / SAMPLE_RATE, 4),
                            "text": utt.text,
                            "lang": utt.lang,
                            "speaker": utt.speaker.id,
                            "id": utt.id,
                            "_split": utt.split,
                        }
                    )
    except BrokenProcessPool as err:
        pool.shutdown(wait=False, cancel_futures=True)
        raise CorpusError(
            f"a corpus render worker died ({str(err).rstrip('.')}); if this runs from a script: {SCRIPT_GUARD}"
        ) from err
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()  # let the workers exit on their own, so that they stop their espeak servers

    manifests: dict[str, list[dict]] = {}
    for split in SPLITS:
        manifests[split] = [r for lang in langs for r in records[lang] if r["_split"] == split]
    for lang in langs:
        manifests[f"test_{lang}"] = [r for r in records[lang] if r["_split"] == "test"]
    from supernet.data.manifest import write_manifest  # here: the render workers need not import torchaudio

    public = ("audio_filepath", "duration", "text", "lang", "speaker", "id")
    for name, rows in manifests.items():
        write_manifest(out / f"{name}.jsonl", [{k: r[k] for k in public} for r in rows])

    metadata = _metadata(langs, minutes, seed, plans, records, text)
    atomic_write_text(out / "metadata.json", json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")


def _metadata(
    langs, minutes, seed, plans: dict[str, LanguagePlan], records: dict[str, list[dict]], text: str = "random"
) -> dict:
    from importlib.metadata import version

    rows = [r for lang in langs for r in records[lang]]
    total = sum(r["duration"] for r in rows)
    splits = {}
    for split in SPLITS:
        part = [r for r in rows if r["_split"] == split]
        seconds = sum(r["duration"] for r in part)
        splits[split] = {
            "utterances": len(part),
            "hours": round(seconds / 3600, 4),
            "fraction": round(seconds / total, 4),
            "speakers": sorted({r["speaker"] for r in part}),
        }
    languages = {}
    for lang in langs:
        words = [w for r in records[lang] for w in r["text"].split()]
        seconds = sum(r["duration"] for r in records[lang])
        languages[lang] = {
            "espeak_voice": espeak.language_voices()[lang],
            "utterances": len(records[lang]),
            "hours": round(seconds / 3600, 4),
            "fraction": round(seconds / total, 4),
            "words": len(words),
            "distinct_words": len(set(words)),
            "word_list_size": len(sentences.word_list(lang)),
        }
    speakers = {
        s.id: {k: v for k, v in asdict(s).items() if k != "id"}
        for lang in langs
        for split in SPLITS
        for s in plans[lang].speakers[split]
    }
    return {
        "generator": "supernet corpus",
        "format_version": FORMAT_VERSION,
        "parameters": build_parameters(langs, minutes, seed, text),
        "sample_rate": SAMPLE_RATE,
        "audio": "FLAC, PCM_16, mono",
        "espeak_ng": {
            "version": espeak.version(),
            "package": f"espeakng-loader {version('espeakng-loader')}",
        },
        "word_source": sentences.word_source(),
        "sentences": sentences.text_source(text),
        "sentence_words": [sentences.MIN_WORDS, sentences.MAX_WORDS],
        "language_weights": {lang: LANGUAGE_WEIGHTS.get(lang, 1.0) for lang in langs},
        "max_chars_per_second": MAX_CHARS_PER_SECOND,
        "noise": {"colours": list(NOISE_COLOURS), "snr_db": list(SNR_DB)},
        "splits": splits,
        "languages": languages,
        "speakers": speakers,
    }


def ensure_demo_corpus(
    out_dir: str | os.PathLike,
    langs: tuple[str, ...] | list[str] = DEFAULT_LANGS,
    minutes: float = 30.0,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Return `out_dir`, building the corpus first unless a finished one with these parameters is there.

    Another corpus there (say, of other minutes, or an unfinished one) is replaced, as the demo
    owns its corpus folder; a folder holding anything else is refused (CorpusError).
    """
    out = Path(out_dir)
    if holds_corpus(out, build_parameters(langs, minutes, seed)):
        return out
    replace = built_parameters(out) is not None or _is_unfinished_corpus(out)
    return build_corpus(out, langs, minutes, seed, workers, overwrite=replace)
