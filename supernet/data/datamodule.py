"""`SpeechDataModule`: manifests -> named splits -> bucketed loaders of padded audio; features are
computed after the batch reaches the model's device (`on_after_batch_transfer`).

`data` is a corpus folder (`train.jsonl`, `dev.jsonl`, `test*.jsonl`, the test sets named by stem;
or lhotse manifests named by split, `supernet.data.lhotse_io`) or one manifest (JSONL or a lhotse
CutSet: split 90/10 into train/dev by a hash of the id; the test set is that dev set).
`arch` is a deterministic `arch_fraction` of train, removed from train, for architecture steps; set
`arch_fraction=0` to retrain a derived model on all of train.

`setup` checks every split's audio before the first step (`supernet.data.preflight.check_audio`, cached):
a missing, corrupt or truncated file, or a duration that lies, stops the run naming manifest and
line, or with `skip_bad` is dropped and counted. Batching then uses the headers' true lengths.
`check_ctc` (called by the model, which knows its stride) drops or refuses utterances too short for
their transcripts.

`langs` keeps only those languages' utterances in every split (the arch split and the 90/10 dev
split are cut after the filter). `speed_perturb` and `noise` augment the train split's waveforms
(`supernet.data.augment`): its batches are then sized by each utterance's length at the slowest
speed factor and its CTC check weighs the fastest.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader, rank_zero_info, rank_zero_only
from torch.utils.data import DataLoader, Dataset

from supernet.data import lhotse_io, preflight
from supernet.data.audio import TARGET_SAMPLE_RATE, AudioInfo, load_audio
from supernet.data.augment import Augmenter, EpochKeySampler
from supernet.data.buckets import DurationBucketSampler, LhotseBucketSampler, distributed_defaults
from supernet.data.features import FeaturePipeline, GlobalCMVN, num_frames
from supernet.data.manifest import DURATION_TOLERANCE_S, ManifestError, Utterance, read_manifest
from supernet.data.tokenizer import (
    Tokenizer,
    build_tokenizer,
    load_tokenizer,
    normalize_text,
    tokenizer_from_dict,
)
from supernet.errors import UserError

DEV_FRACTION = 0.1
HOP_MS = 10.0
SAMPLERS = ("buckets", "lhotse")


def hash_split(
    utterances: list[Utterance], fraction: float, salt: str
) -> tuple[list[Utterance], list[Utterance]]:
    """`(kept, held_out)`: the `round(fraction * n)` utterances (at least one when `fraction > 0` and
    n > 1) with the smallest `sha1(salt:id)` are held out; both keep the manifest order. Depends only
    on the ids, so the split is the same on every machine, run and seed."""
    if fraction <= 0 or len(utterances) < 2:
        return list(utterances), []
    count = min(len(utterances) - 1, max(1, round(fraction * len(utterances))))
    ranked = sorted(
        range(len(utterances)),
        key=lambda i: hashlib.sha1(f"{salt}:{utterances[i].id}".encode()).hexdigest(),
    )
    held = set(ranked[:count])
    kept = [u for i, u in enumerate(utterances) if i not in held]
    return kept, [u for i, u in enumerate(utterances) if i in held]


def check_langs(utterances: list[Utterance], langs: list[str], data: Path) -> None:
    """`--data.langs` against the languages the manifests hold: a `UserError` naming the unknown ones."""
    if isinstance(langs, str) or not langs or not all(isinstance(lang, str) for lang in langs):
        raise UserError(f"data.langs must be a non-empty list of language codes like [en], got {langs!r}")
    present = sorted({u.lang for u in utterances if u.lang is not None})
    unknown = [lang for lang in langs if lang not in present]
    if unknown:
        raise UserError(
            f"data.langs: no utterance of {', '.join(unknown)} in {data}; languages present: "
            + (", ".join(present) or "none (no manifest line has a 'lang' field)")
        )


def of_langs(utterances: list[Utterance], langs: list[str] | None) -> list[Utterance]:
    return list(utterances) if langs is None else [u for u in utterances if u.lang in langs]


def read_corpus_folder(data: Path) -> tuple[list[Utterance], list[Utterance], dict[str, list[Utterance]]]:
    """`(train, dev, {test name: utterances})` of a corpus folder: `train.jsonl`, `dev.jsonl` and
    `test*.jsonl`, or lhotse manifests named by split (`supernet.data.lhotse_io`)."""
    if lhotse_io.is_lhotse_folder(data):
        return lhotse_io.read_folder(data)
    missing = [name for name in ("train.jsonl", "dev.jsonl") if not (data / name).is_file()]
    if missing:
        raise ManifestError(
            f"{data}: corpus folder lacks {', '.join(missing)} (and holds no lhotse cuts_SPLIT.jsonl.gz)"
        )
    tests = {path.stem: read_manifest(path) for path in sorted(data.glob("test*.jsonl"))}
    return read_manifest(data / "train.jsonl"), read_manifest(data / "dev.jsonl"), tests


def resolve_splits(
    data: str | Path, arch_fraction: float, langs: list[str] | None = None
) -> dict[str, dict[str, list[Utterance]]]:
    """`{"fit": {"train", "arch", "dev"}, "test": {name: utterances}}` from a corpus folder or manifest,
    keeping only the utterances of `langs` (None: all); a test set left empty by it is left out."""
    data = Path(data)
    if data.is_dir():
        train_all, dev, tests = read_corpus_folder(data)
        if langs is not None:
            check_langs([*train_all, *dev, *(u for test in tests.values() for u in test)], langs, data)
            for name, split in (("train", train_all), ("dev", dev)):
                if not of_langs(split, langs):
                    raise UserError(f"data.langs: {data / name}.jsonl has no utterance of {', '.join(langs)}")
            train_all, dev = of_langs(train_all, langs), of_langs(dev, langs)
            tests = {name: kept for name, test in tests.items() if (kept := of_langs(test, langs))}
        tests = tests or {"dev": dev}
    elif data.is_file():
        utterances = read_manifest(data)
        if langs is not None:
            check_langs(utterances, langs, data)
        train_all, dev = hash_split(of_langs(utterances, langs), DEV_FRACTION, salt="dev")
        if not dev:
            raise ManifestError(f"{data}: needs at least 2 utterances to split into train and dev")
        tests = {"dev": dev}
    else:
        raise ManifestError(f"{data}: neither a corpus folder nor a manifest file")
    train, arch = hash_split(train_all, arch_fraction, salt="arch")
    return {"fit": {"train": train, "arch": arch, "dev": dev, "train_all": train_all}, "test": tests}


class SpeechDataset(Dataset):
    """Reads, downmixes and resamples each utterance's audio; encodes its normalised text.

    With `augment`, items are keyed `(epoch, index)` (`EpochKeySampler`; a plain index is epoch 0)
    and their audio is augmented from that key."""

    def __init__(
        self,
        utterances: list[Utterance],
        tokenizer: Tokenizer,
        sample_rate: int,
        augment: Augmenter | None = None,
    ):
        self.utterances = utterances
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.augment = augment

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        utt = self.utterances[index]
        text = normalize_text(utt.text)
        audio = load_audio(utt.audio_filepath, self.sample_rate)
        return {
            "audio": audio if self.augment is None else self.augment(audio, epoch, index),
            "targets": torch.tensor(self.tokenizer.encode(text), dtype=torch.long),
            "text": text,
            "id": utt.id,
        }


def collate_speech(items: list[dict]) -> dict:
    """Zero-padded `audio (B, S)`, `targets (B, U)` (0 = blank) and their lengths, texts, ids."""
    audio_lengths = torch.tensor([len(item["audio"]) for item in items], dtype=torch.long)
    target_lengths = torch.tensor([len(item["targets"]) for item in items], dtype=torch.long)
    audio = torch.zeros(len(items), int(audio_lengths.max()), dtype=torch.float32)
    targets = torch.zeros(len(items), int(target_lengths.max()), dtype=torch.long)
    for i, item in enumerate(items):
        audio[i, : audio_lengths[i]] = item["audio"]
        targets[i, : target_lengths[i]] = item["targets"]
    return {
        "audio": audio,
        "audio_lengths": audio_lengths,
        "targets": targets,
        "target_lengths": target_lengths,
        "texts": [item["text"] for item in items],
        "ids": [item["id"] for item in items],
    }


class LhotseEpochKeySampler(EpochKeySampler, LhotseBucketSampler):
    """lhotse's batches as `(epoch, index)` keys, for an augmented train split."""


def checkpoint_tokenizer(checkpoint: dict, vocab_tokenizer: Tokenizer) -> Tokenizer:
    """The subword tokenizer a checkpoint's data-module state carries (`SpeechDataModule.state_dict`)
    when its vocabulary is `vocab_tokenizer`'s (the one rebuilt from a model's vocabulary, which
    decodes but cannot encode); else `vocab_tokenizer` itself."""
    saved = checkpoint.get(SpeechDataModule.__qualname__, {}).get("tokenizer")
    if saved is None:
        return vocab_tokenizer
    tokenizer = tokenizer_from_dict(saved, "the checkpoint's tokenizer")
    return tokenizer if tokenizer.vocab == vocab_tokenizer.vocab else vocab_tokenizer


def checkpoint_n_fft(checkpoint: dict) -> int | None:
    """The FFT size a checkpoint's features were made with (its data-module state), or None for one
    saved before it was recorded (`supernet.data.features.n_fft_of` says what that means)."""
    return checkpoint.get(SpeechDataModule.__qualname__, {}).get("n_fft")


def checkpoint_cmvn(checkpoint: dict) -> GlobalCMVN | None:
    """The global CMVN statistics a checkpoint's data-module state carries (a model trained with
    `normalisation: global`), else None (per-utterance normalisation)."""
    saved = checkpoint.get(SpeechDataModule.__qualname__, {}).get("cmvn")
    return None if saved is None else GlobalCMVN.from_dict(saved)


class SpeechDataModule(pl.LightningDataModule):
    def __init__(
        self,
        data: str,
        features: str = "fbank",
        n_mels: int = 80,
        n_mfcc: int = 40,
        arch_fraction: float = 0.1,
        max_frames: int = 20000,
        spec_augment: bool = True,
        num_workers: int | None = None,
        seed: int = 0,
        search: bool = False,
        sample_rate: int = TARGET_SAMPLE_RATE,
        num_buckets: int = 16,
        tokenizer_path: str | None = None,
        pin_memory: bool | None = None,
        pad_frames: int = 1,
        skip_bad: bool = False,
        check_audio: bool = True,
        langs: list[str] | None = None,
        speed_perturb: list[float] | None = None,
        noise: dict | None = None,
        normalisation: str = "utterance",
        tokenizer: str = "char",
        vocab_size: int | None = None,
        sampler: str = "buckets",
        quadratic_duration: float | None = None,
    ):
        """`max_frames`: cap on `batch size x longest item` in 10 ms frames. `tokenizer_path`: reuse a
        saved tokenizer (retrain/evaluate) instead of building one from the train manifest.
        `pad_frames`: pad each batch's features with zero frames to a multiple of this, so that
        batches come in few shapes (each new shape is a capture under `model.cuda_graphs`); the
        lengths are unchanged, and every op zeroes the frames past them. BatchNorm in training
        still takes its statistics over every frame, padding included, so padding changes them
        a little (as the bucketed batches' own padding does).
        `check_audio`: probe every split's audio in `setup` (see the module docstring).
        `skip_bad`: drop the utterances that fail it (counted, listed in `data_report`) instead of
        stopping. `langs`: keep only these languages' utterances (`[en]`; None: all).
        `speed_perturb` (`[0.9, 1.0, 1.1]`) and `noise` (`{dir: PATH | null, snr_db: [10, 30],
        prob: 0.5}`): augmentation of the train split, drawn from (seed, epoch, index);
        `supernet.data.augment` says how. `normalisation`: `utterance` (each utterance's own
        statistics) or `global` (the train split's, computed in `setup` and kept in checkpoints:
        a model that will stream needs it, `supernet.deploy.streaming`).
        `tokenizer`: `char`, or SentencePiece `bpe` | `unigram` of `vocab_size` outputs (blank and
        unknown included), trained on the train split (train and arch) only; saved with the run and
        in its checkpoints (`state_dict`). `sampler`: `buckets` (`DurationBucketSampler`) or `lhotse`
        (its DynamicBucketingSampler under the same `max_frames` cap, with `quadratic_duration` in
        seconds; `supernet.data.buckets.LhotseBucketSampler`)."""
        super().__init__()
        self.save_hyperparameters()
        self.data = Path(data)
        self.search = search
        self.sample_rate = sample_rate
        self.max_frames = max_frames
        self.seed = seed
        self.num_buckets = num_buckets
        self.arch_fraction = arch_fraction
        self.num_workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.tokenizer_path = tokenizer_path
        self.tokenizer_kind = tokenizer
        self.vocab_size = vocab_size
        if sampler not in SAMPLERS:
            raise UserError(f"data.sampler: unknown {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if quadratic_duration is not None and sampler != "lhotse":
            raise UserError("data.quadratic_duration is an option of data.sampler lhotse")
        self.sampler_kind = sampler
        self.quadratic_duration = quadratic_duration
        if pad_frames < 1:
            raise UserError(f"data.pad_frames must be at least 1, got {pad_frames}")
        self.pad_frames = pad_frames
        self.feature_pipeline = FeaturePipeline(
            features,
            spec_augment=spec_augment,
            normalisation=normalisation,
            sample_rate=sample_rate,
            n_mels=n_mels,
            n_mfcc=n_mfcc,
        )
        self.skip_bad = skip_bad
        self.check_audio = check_audio
        self.langs = langs
        self.augmenter = Augmenter.from_options(speed_perturb, noise, seed, sample_rate)
        self.datasets: dict[str, SpeechDataset] = {}
        self.samplers: dict[str, DurationBucketSampler] = {}  # a LhotseBucketSampler is one too
        self.audio_infos: dict[str, AudioInfo] = {}  # audio path -> header facts, once checked
        self.data_report: dict | None = None  # what the audio check found (None until it ran)
        self.ctc_report: dict | None = None  # what check_ctc found

    # ------------------------------------------------------------------ splits and tokenizer

    @cached_property
    def splits(self) -> dict[str, dict[str, list[Utterance]]]:
        return resolve_splits(self.data, self.arch_fraction, self.langs)

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The saved one (`tokenizer_path`), else built from the train split's texts (train and arch:
        never dev or test)."""
        if self.tokenizer_path:
            return load_tokenizer(self.tokenizer_path)
        train_all = self.splits["fit"]["train_all"]
        return build_tokenizer(
            self.tokenizer_kind,
            [u.text for u in train_all],
            [u.lang for u in train_all],
            self.vocab_size,
            source=f"the training transcripts of {self.data}",
        )

    @property
    def feature_dim(self) -> int:
        return self.feature_pipeline.feature_dim

    @property
    def test_names(self) -> list[str]:
        return list(self.splits["test"])

    def save_tokenizer(self, directory: str | Path) -> Path:
        return self.tokenizer.save(Path(directory) / "tokenizer.json")

    # ------------------------------------------------------------------ datasets and loaders

    def _utterances(self, name: str) -> list[Utterance]:
        if name in self.splits["test"]:
            return self.splits["test"][name]
        return self.splits["fit"][name]

    def dataset(self, name: str) -> SpeechDataset:
        if name not in self.datasets:
            utterances = self._utterances(name)
            if not utterances:
                raise UserError(f"split {name!r} of {self.data} is empty")
            self.datasets[name] = SpeechDataset(
                utterances, self.tokenizer, self.sample_rate, self._augmenter(name)
            )
        return self.datasets[name]

    def _augmenter(self, name: str) -> Augmenter | None:
        """Waveform augmentation is for the weights' training split only."""
        return self.augmenter if name == "train" else None

    def num_samples(self, utt: Utterance) -> int:
        """Samples of the loaded waveform: from the header once checked, else the manifest duration."""
        return preflight.num_samples(utt, self.audio_infos.get(utt.audio_filepath), self.sample_rate)

    def frame_counts(self, name: str) -> list[int]:
        """Each utterance's length in 10 ms feature frames (from the headers once checked); under
        speed perturbation, at the slowest factor, so that every drawn factor fits the batch cap."""
        hop = round(self.sample_rate * HOP_MS / 1000)
        augment = self._augmenter(name)
        samples = [self.num_samples(u) for u in self._utterances(name)]
        if augment is not None:
            samples = [augment.longest_samples(n) for n in samples]
        return [num_frames(n, hop) for n in samples]

    def sampler(self, name: str, shuffle: bool) -> DurationBucketSampler:
        """The split's bucket sampler, sharded by the process group's rank and size as they are when
        it is made: one made before a DDP process group started is not reused after."""
        world, rank = distributed_defaults(None, None)  # as the sampler will read them
        key = f"{name}:{shuffle}:{rank}/{world}"
        if key not in self.samplers:
            counts = self.frame_counts(name)
            too_long = [u for u, n in zip(self._utterances(name), counts) if n > self.max_frames]
            if too_long:
                listed = ", ".join(
                    f"{u.id} ({self.num_samples(u) / self.sample_rate:.1f} s, {u.source})"
                    for u in too_long[:5]
                )
                slowed = " at the slowest speed_perturb factor" if self._augmenter(name) else ""
                raise UserError(
                    f"{len(too_long)} utterance(s) of split {name!r} exceed max_frames={self.max_frames} "
                    f"({self.max_frames * HOP_MS / 1000:.0f} s){slowed}: {listed}; raise max_frames"
                )
            seed = self.seed + int(hashlib.sha1(name.encode()).hexdigest()[:6], 16)
            # An augmented split's batches carry the epoch to the workers (and Lightning sets it).
            keyed = self._augmenter(name) is not None
            options = {"shuffle": shuffle, "seed": seed, "num_buckets": self.num_buckets}
            if self.sampler_kind == "lhotse":
                lhotse_io.require_lhotse()
                sampler_class = LhotseEpochKeySampler if keyed else LhotseBucketSampler
                options.update(quadratic_duration=self.quadratic_duration, frame_seconds=HOP_MS / 1000)
            else:
                sampler_class = EpochKeySampler if keyed else DurationBucketSampler
            try:
                self.samplers[key] = sampler_class(counts, self.max_frames, **options)
            except ValueError as err:  # an item whose quadratic weight is over the cap
                raise UserError(f"split {name!r} of {self.data}: {err}") from err
        return self.samplers[key]

    def loader(self, name: str, shuffle: bool = False) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            self.dataset(name),
            batch_sampler=self.sampler(name, shuffle),
            collate_fn=collate_speech,
            num_workers=workers,
            pin_memory=self.pin_memory,
            persistent_workers=workers > 0,
            # each new iterator draws its workers' base seed from this generator, not from the
            # global one, whose streams dropout and SpecAugment replay on resume (callbacks.EpochSeed)
            generator=torch.Generator().manual_seed(self.seed),
        )

    def setup(self, stage: str | None = None) -> None:
        self.splits  # noqa: B018  (read the manifests now, so errors surface before training starts)
        if self.check_audio and self.data_report is None:
            self._check_all_audio()
        if self.feature_pipeline.normalisation == "global" and self.feature_pipeline.cmvn is None:
            self.fit_cmvn()
        if stage in (None, "fit"):
            rank_zero_info(self.describe())

    def fit_cmvn(self, batch_size: int = 16) -> GlobalCMVN:
        """Global CMVN statistics of the train split's unaugmented features (`normalisation: global`)."""
        dataset = SpeechDataset(self.splits["fit"]["train"], self.tokenizer, self.sample_rate)
        loader = DataLoader(
            dataset, batch_size=batch_size, collate_fn=collate_speech, num_workers=self.num_workers
        )
        cmvn = self.feature_pipeline.fit_cmvn((b["audio"], b["audio_lengths"]) for b in loader)
        rank_zero_info(f"data: global CMVN from {cmvn.frames} frames of the train split")
        return cmvn

    def state_dict(self) -> dict:
        """What checkpoints keep of the data: the global CMVN statistics, when there are some, and a
        subword tokenizer's model (a model's vocabulary decodes, but encoding needs the model:
        `checkpoint_tokenizer`; a char tokenizer's vocabulary says it all), and the features' FFT size
        (`n_fft`: a checkpoint without it was made before it was recorded, `n_fft_of`)."""
        cmvn = self.feature_pipeline.cmvn
        state = {"n_fft": self.feature_pipeline.extractor.n_fft}
        if cmvn is not None:
            state["cmvn"] = cmvn.to_dict()
        if self.tokenizer.kind != "char":
            state["tokenizer"] = self.tokenizer.to_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.feature_pipeline.use_recorded_n_fft(state.get("n_fft"))
        if "cmvn" in state:
            self.feature_pipeline.cmvn = GlobalCMVN.from_dict(state["cmvn"])
        if "tokenizer" in state:
            self._load_tokenizer_state(state["tokenizer"])

    def _load_tokenizer_state(self, saved: dict) -> None:
        """A resumed or tested run encodes with the checkpoint's own subword model; one whose pieces
        differ from this data module's (other data or options) is refused."""
        tokenizer = tokenizer_from_dict(saved, "the checkpoint's tokenizer")
        if tokenizer.vocab != self.tokenizer.vocab:
            raise UserError(
                f"the checkpoint's {tokenizer.kind} tokenizer ({len(tokenizer)} tokens) is not the one built "
                f"from {self.data} ({self.tokenizer.kind}, {len(self.tokenizer)}): resume with the same data "
                "and tokenizer options, or pass --data.tokenizer_path RUN/tokenizer.json"
            )
        self.tokenizer = tokenizer
        self.datasets.clear()

    # ------------------------------------------------------------------ checks before the first step

    def _split_lists(self) -> dict[str, list[Utterance]]:
        """Every split's list by its name in reports (`test:NAME` for test sets; train_all too)."""
        named = dict(self.splits["fit"])
        named.update({f"test:{k}": v for k, v in self.splits["test"].items()})
        return named

    def _drop(self, bad: set[tuple[str, str]], names: list[str]) -> dict[str, int]:
        """Remove the utterances keyed `(source, audio path)` in `bad` from the named splits, in place
        (a test set may be the dev list itself), and forget the datasets and samplers built on them.
        Returns the count dropped per split; a split left empty is an error."""
        lists = self._split_lists()
        dropped = {}
        for name in names:
            utterances = lists[name]
            before = len(utterances)
            utterances[:] = [u for u in utterances if (u.source, u.audio_filepath) not in bad]
            dropped[name] = before - len(utterances)
            if before and not utterances:
                raise ManifestError(
                    f"split {name!r} of {self.data}: no utterance left after dropping {before}"
                )
        self.datasets.clear()
        self.samplers.clear()
        return dropped

    def _check_all_audio(self) -> None:
        """Probe the audio of every split before the first step; refuse or (skip_bad) drop bad lines."""
        lists = self._split_lists()
        utterances = [u for utterances in lists.values() for u in utterances]
        check = preflight.check_audio(
            utterances, self.sample_rate, DURATION_TOLERANCE_S, progress=rank_zero_only.rank == 0
        )
        self.audio_infos = check.infos
        bad = {(u.source, u.audio_filepath) for u in utterances if u.source in check.bad_sources}
        report = {
            "checked": check.checked,
            "bad": len(check.bad_sources),
            "problems": [f"{p.where}: {p.message}" for p in check.errors],
            "dropped": {},
        }
        if bad and not self.skip_bad:  # no report kept: a second setup() checks (and fails) again
            raise ManifestError(
                f"{self.data}: {check.describe_errors()}; fix them (`supernet data check MANIFEST "
                "--fix-out CLEAN` writes the good lines) or pass --data.skip_bad true to drop them"
            )
        self.data_report = report
        if not bad:
            return
        dropped = self._drop(bad, list(lists))
        report["dropped"] = {k: n for k, n in dropped.items() if n and k != "train_all"}
        rank_zero_info(
            f"data: dropped {len(check.bad_sources)} bad utterance(s) of {check.checked} (--data.skip_bad): "
            + ", ".join(f"{k} {n}" for k, n in report["dropped"].items())
        )

    def check_ctc(self, stride: int, what: str, max_fraction: float = 0.02) -> dict:
        """Refuse a model whose total time `stride` leaves too few output frames for CTC on more
        than `max_fraction` of the training utterances (train and arch together): each would get
        a loss of exactly 0 under `zero_infinity`. Below that, drop those from train and arch. Dev
        and test utterances are kept (they are still decoded and scored) but counted. `what` names
        the model in the error ("architecture tdnn_d", "space st_nas"). Returns a summary for the
        run's metrics; a second call with the same arguments returns the first's summary. Under
        speed perturbation the train split is weighed at its fastest factor (its shortest audio)."""
        previous = self.ctc_report
        if previous is not None and previous["stride"] == stride and previous["max_fraction"] == max_fraction:
            return previous
        self.splits  # noqa: B018
        named = {k: v for k, v in self._split_lists().items() if k != "train_all" and v}
        fits = {
            name: preflight.ctc_fits(
                utterances,
                self.tokenizer,
                stride,
                self._ctc_infos(name),
                self.feature_pipeline.extractor.kind,
                self.sample_rate,
            )
            for name, utterances in named.items()
        }
        trained = [name for name in ("train", "arch") if name in fits]
        trained_fits = [fit for name in trained for fit in fits[name]]
        infeasible = preflight.infeasible_of(trained_fits)
        fraction = len(infeasible) / max(1, len(trained_fits))
        if fraction > max_fraction or (infeasible and len(infeasible) == len(trained_fits)):
            worst = "; ".join(str(fit) for fit in preflight.worst_fits(infeasible))
            raise UserError(
                f"{what}: total stride {stride} leaves too few output frames for CTC on "
                f"{len(infeasible)} of {len(trained_fits)} training utterances ({fraction:.1%}, more than "
                f"{max_fraction:.1%}); each would train on a loss of 0. Worst: {worst}. Use a smaller "
                "stride, or drop the short or long-transcript utterances from the manifest"
            )
        summary = {
            "stride": stride,
            "what": what,
            "max_fraction": max_fraction,
            "utterances": {name: len(f) for name, f in fits.items()},
            "infeasible": {name: len(preflight.infeasible_of(f)) for name, f in fits.items()},
            "dropped": len(infeasible),
        }
        if infeasible:
            bad = {(fit.utterance.source, fit.utterance.audio_filepath) for fit in infeasible}
            self._drop(bad, trained)
            rank_zero_info(
                f"{what}: dropped {len(infeasible)} training utterance(s) too short for CTC at total stride "
                f"{stride} ({fraction:.2%}); e.g. "
                + "; ".join(str(f) for f in preflight.worst_fits(infeasible, 3))
            )
        self.ctc_report = summary
        return summary

    def _ctc_infos(self, name: str) -> dict[str, AudioInfo]:
        """The header facts `check_ctc` counts frames from: a speed-perturbed split's shortest lengths."""
        augment = self._augmenter(name)
        if augment is None or not augment.speeds:
            return self.audio_infos
        return {
            u.audio_filepath: AudioInfo(self.sample_rate, 1, augment.shortest_samples(self.num_samples(u)))
            for u in self._utterances(name)
        }

    def train_dataloader(self):
        train = self.loader("train", shuffle=True)
        if not self.search:
            return train
        return CombinedLoader(
            {"train": train, "arch": self.loader("arch", shuffle=True)}, mode="max_size_cycle"
        )

    def val_dataloader(self) -> DataLoader:
        return self.loader("dev")

    def test_dataloader(self) -> list[DataLoader]:
        return [self.loader(name) for name in self.test_names]

    # ------------------------------------------------------------------ features on the device

    def featurize(self, batch: dict, augment: bool) -> dict:
        """Adds `features (B, T, F)` and `feature_lengths (B,)` computed on the batch's device."""
        audio = batch["audio"]
        pipeline = self.feature_pipeline.to(audio.device)
        features, batch["feature_lengths"] = pipeline(audio, batch["audio_lengths"], augment=augment)
        extra = -features.shape[1] % self.pad_frames
        batch["features"] = torch.nn.functional.pad(features, (0, 0, 0, extra)) if extra else features
        return batch

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Keep the feature and target lengths on the host as lists (Lightning moves tensors only),
        so that CTC on a GPU never copies lengths back (``losses.ctc.ctc_loss``)."""
        for part in [batch] if "audio" in batch else batch.values():
            part["host_lengths"] = {
                "features": self.feature_pipeline.extractor.output_lengths(part["audio_lengths"]).tolist(),
                "targets": part["target_lengths"].tolist(),
            }
        return batch

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        training = self.trainer is not None and self.trainer.training
        if "audio" in batch:
            return self.featurize(batch, augment=training)
        # CombinedLoader batch: SpecAugment on the weight-step batch only; the arch step sees clean data.
        return {
            name: self.featurize(part, augment=training and name == "train") for name, part in batch.items()
        }

    # ------------------------------------------------------------------ report

    def describe(self) -> str:
        """Splits (utterances, hours, speakers, unknown characters), vocabulary, features, batching."""
        lines = [
            f"data: {self.data}" + (f" (langs {', '.join(self.langs)})" if self.langs else ""),
            f"tokenizer: {self.tokenizer.kind}, {len(self.tokenizer)} symbols; "
            f"features: {self.feature_pipeline.extractor.kind} "
            f"(dim {self.feature_dim})",
        ]
        named = {k: v for k, v in self._split_lists().items() if k != "train_all"}
        for name, utterances in named.items():
            hours = sum(self.num_samples(u) for u in utterances) / self.sample_rate / 3600
            speakers = len({u.speaker for u in utterances if u.speaker is not None})
            unknown = sum(self.tokenizer.unknown_chars(u.text for u in utterances).values())
            lines.append(
                f"  {name:12s} {len(utterances):6d} utts {hours:8.3f} h {speakers:5d} speakers"
                f" {unknown:5d} unknown chars"
            )
        if self.augmenter is not None:
            lines.append(f"  {self.augmenter.describe()}")
        for name in ("train", "arch") if self.search else ("train",):
            if self._utterances(name):
                lines.append(f"  {name} batches: {self.sampler(name, shuffle=True).describe()}")
        return "\n".join(lines)
