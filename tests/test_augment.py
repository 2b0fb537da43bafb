"""Speed perturbation and additive noise of training utterances (known answers, determinism per
(seed, epoch, index) whatever the workers, never on arch/dev/test, batching under the slowest factor),
the language filter, Kaldi fbank features and the TensorBoard logger."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.transforms as T
from jsonargparse import ArgumentParser
from lightning_fabric.utilities.data import _set_sampler_epoch

from supernet import loggers
from supernet.data.audio import load_audio
from supernet.data.augment import (
    Augmenter,
    EpochKeySampler,
    NoiseOptions,
    SpeedPerturb,
    add_noise,
    perturbed_length,
    speed_factors,
)
from supernet.data.buckets import DurationBucketSampler
from supernet.data.datamodule import SpeechDataModule, collate_speech
from supernet.data.features import FeatureExtractor, FeaturePipeline, normalize_per_utterance
from supernet.errors import UserError

RATE = 16000


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """The audio probe cache of each test stays in its tmp_path (never the user's ~/.cache)."""
    monkeypatch.setenv("SUPERNET_CACHE", str(tmp_path / "cache"))


def tone(seconds: float, hz: float, rate: int = RATE) -> torch.Tensor:
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    return (0.5 * torch.sin(2 * math.pi * hz * t)).float()


def peak_hz(x: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x, n=1 << 20))
    return float(np.fft.rfftfreq(1 << 20, 1 / rate)[spectrum.argmax()])


def snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    clean, noise = clean.double().numpy(), (noisy.double() - clean.double()).numpy()
    return 10 * math.log10(np.sum(clean**2) / np.sum(noise**2))


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts over silence: a signal whose SNR is not that of its loud part."""
    rng = np.random.default_rng(seed)
    x = 0.2 * rng.standard_normal(round(seconds * RATE))
    x[: RATE // 10] = 0.0
    return x


def write_corpus(folder: Path, counts: dict[str, dict[str, int]], seconds=(0.5, 0.8, 0.65)) -> Path:
    """`{split: {lang: n}}` manifests of FLAC noise bursts; texts are "LANG SPLIT N"."""
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    k = 0
    for split, langs in counts.items():
        rows = []
        for lang, n in langs.items():
            for j in range(n):
                path = folder / "audio" / f"{split}_{lang}_{j}.flac"
                duration = seconds[k % len(seconds)]
                sf.write(str(path), speech_like(duration, seed=k), RATE)
                k += 1
                rows.append(
                    {
                        "audio_filepath": f"audio/{path.name}",
                        "duration": duration,
                        "text": f"{lang} {split} {j}",
                        "lang": lang,
                        "id": f"{split}-{lang}-{j}",
                    }
                )
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


BILINGUAL = {
    "train": {"en": 12, "de": 8},
    "dev": {"en": 2, "de": 2},
    "test": {"en": 1, "de": 2},
    "test_en": {"en": 2},
    "test_de": {"de": 3},
}
AUGMENT = {"speed_perturb": [0.9, 1.0, 1.1], "noise": {"dir": None, "snr_db": [5, 20], "prob": 0.5}}


def datamodule(corpus: Path, **options) -> SpeechDataModule:
    settings = {"num_workers": 0, "max_frames": 400, "seed": 7, "arch_fraction": 0.0, **options}
    return SpeechDataModule(str(corpus), **settings)


def same_draws(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Equal up to float32 rounding: the resampling convolution sums in the order of torch's
    intra-op threads, which are 1 in a loader worker and more in the main process."""
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k]) and (a[k] - b[k]).abs().max() < 1e-6 for k in a
    )


def audio_by_id(loader) -> dict[str, torch.Tensor]:
    out = {}
    for batch in loader:
        for i, (utt, n) in enumerate(zip(batch["ids"], batch["audio_lengths"].tolist())):
            out[utt] = batch["audio"][i, :n].clone()
    return out


# ----------------------------------------------------------------------------- speed perturbation


@pytest.mark.parametrize(
    "factor, samples, expected", [(0.9, 16037, 17819), (1.1, 16037, 14580), (0.9, 401, 446)]
)
def test_speed_perturbation_changes_duration_and_pitch_by_the_factor(factor, samples, expected):
    assert expected == math.ceil(samples / factor)  # the known answer, by hand
    audio = tone(samples / RATE, 1000.0)
    out = SpeedPerturb(RATE)(audio, factor)
    assert len(out) == perturbed_length(samples, factor, RATE) == expected
    if samples > RATE:  # slower playback lowers the pitch: 1 kHz at 0.9 is 900 Hz
        assert peak_hz(out.numpy()) == pytest.approx(1000.0 * factor, abs=1.0)


def test_speed_factor_one_leaves_the_audio_unchanged():
    audio = torch.randn(12345)
    assert SpeedPerturb(RATE)(audio, 1.0) is audio
    augmenter = Augmenter.from_options([1.0], None, seed=0, sample_rate=RATE)
    assert torch.equal(augmenter(audio, epoch=3, index=5), audio)


# ----------------------------------------------------------------------------- noise


@pytest.mark.parametrize("target", [0.0, 10.0, 25.0])
@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_generated_noise_lands_at_the_asked_snr(target, colour):
    clean = torch.from_numpy(speech_like(1.3, seed=1)).float()
    options = {"snr_db": [target, target], "prob": 1.0, "colours": [colour]}
    augmenter = Augmenter.from_options(None, options, seed=0, sample_rate=RATE)
    for index in range(3):
        noisy = augmenter(clean, epoch=0, index=index)
        assert len(noisy) == len(clean) and abs(snr_db(clean, noisy) - target) < 0.5


def test_file_noise_is_resampled_looped_and_lands_at_the_asked_snr(tmp_path):
    """A 0.3 s 3 kHz tone at 8 kHz is the only noise file: under a 1.2 s utterance it must be
    resampled to 16 kHz (still 3 kHz) and looped, at the SNR drawn from the range."""
    (tmp_path / "noise" / "sub").mkdir(parents=True)
    sf.write(str(tmp_path / "noise" / "sub" / "hum.wav"), tone(0.3, 3000.0, rate=8000).numpy(), 8000)
    (tmp_path / "noise" / "notes.txt").write_text("not audio")
    clean = torch.from_numpy(speech_like(1.2, seed=2)).float()
    options = {"dir": str(tmp_path / "noise"), "snr_db": [5, 15], "prob": 1.0}
    augmenter = Augmenter.from_options(None, options, seed=0, sample_rate=RATE)
    measured = []
    for index in range(8):
        noisy = augmenter(clean, epoch=1, index=index)
        residual = (noisy.double() - clean.double()).numpy()
        assert peak_hz(residual) == pytest.approx(3000.0, abs=1.0)
        assert np.abs(residual[-RATE // 10 :]).max() > 0  # looped to the end
        measured.append(snr_db(clean, noisy))
    assert all(4.5 < s < 15.5 for s in measured) and max(measured) - min(measured) > 2  # drawn, not fixed
    rng = np.random.default_rng(0)
    noise, source = augmenter.noise_source.draw(RATE, rng)
    assert (
        source.endswith("hum.wav")
        and abs(snr_db(clean[:RATE], add_noise(clean[:RATE], noise, 7.0)) - 7.0) < 0.5
    )


def test_noise_probability_and_silent_noise():
    clean = torch.from_numpy(speech_like(0.5, seed=3)).float()
    never = Augmenter.from_options(None, {"prob": 0.0}, seed=0, sample_rate=RATE)
    assert all(torch.equal(never(clean, 0, i), clean) for i in range(20))
    half = Augmenter.from_options(None, {"prob": 0.5}, seed=0, sample_rate=RATE)
    noisy = sum(not torch.equal(half(clean, 0, i), clean) for i in range(200))
    assert 70 < noisy < 130  # binomial(200, 0.5): 5 standard deviations either side
    assert torch.equal(add_noise(clean, np.zeros(len(clean)), 10.0), clean)


@pytest.mark.parametrize(
    "speed, noise, message",
    [
        ([], None, "data.speed_perturb must be a non-empty list"),
        ([0.9, 3.0], None, r"data.speed_perturb: factors must be numbers in \[0.5, 2.0\], got \[3.0\]"),
        ("0.9", None, "data.speed_perturb must be a non-empty list"),
        (None, "loud", "data.noise must be a mapping"),
        (None, {"snr": [1, 2]}, "data.noise: unknown field.* snr; accepted: dir, snr_db, prob, colours"),
        (None, {"snr_db": [30, 10]}, r"data.noise.snr_db must be \[low, high\]"),
        (None, {"snr_db": [10]}, r"data.noise.snr_db must be \[low, high\]"),
        (None, {"prob": 1.5}, r"data.noise.prob must be a probability in \[0, 1\], got 1.5"),
        (None, {"colours": ["purple"]}, r"data.noise.colours: unknown \['purple'\]"),
        (None, {"dir": "/nonexistent/noise"}, "data.noise.dir: /nonexistent/noise is not a folder"),
    ],
)
def test_bad_options_are_user_errors_naming_the_field(speed, noise, message):
    with pytest.raises(UserError, match=message):
        Augmenter.from_options(speed, noise, seed=0, sample_rate=RATE)


def test_noise_folder_without_audio_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"data.noise.dir: no .wav or .flac file below .*empty"):
        Augmenter.from_options(None, {"dir": str(tmp_path / "empty")}, seed=0, sample_rate=RATE)


def test_options_parse_from_the_command_line_shape():
    parser = ArgumentParser()
    parser.add_class_arguments(SpeechDataModule, "data")
    args = ["--data.data", "c", "--data.speed_perturb", "[0.9, 1.0, 1.1]", "--data.langs", "[en]"]
    args += ["--data.noise", "{dir: null, snr_db: [10, 30], prob: 0.5}"]
    data = parser.parse_args(args).data
    assert data.speed_perturb == [0.9, 1.0, 1.1] and data.langs == ["en"]
    assert NoiseOptions.parse(data.noise) == NoiseOptions(None, (10.0, 30.0), 0.5, ("white", "pink", "brown"))
    assert speed_factors(data.speed_perturb) == (0.9, 1.0, 1.1)
    assert Augmenter.from_options(None, None, 0, RATE) is None  # off by default


# ----------------------------------------------------------------------------- in the data module


def test_same_seed_epoch_and_index_give_the_same_audio_whatever_the_workers(tmp_path):
    corpus = write_corpus(tmp_path / "c", BILINGUAL)
    serial = datamodule(corpus, **AUGMENT)
    loader = serial.loader("train", shuffle=True)
    assert isinstance(loader.batch_sampler, EpochKeySampler)
    first, again = audio_by_id(loader), audio_by_id(loader)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    loader.batch_sampler.set_epoch(1)
    epoch1 = audio_by_id(loader)
    changed = sum(not torch.equal(first[k], epoch1[k]) for k in first)
    assert changed >= len(first) // 2  # a new epoch draws anew (1/3 x 1/2 chance to match)

    assert not same_draws(first, epoch1)

    parallel = datamodule(corpus, num_workers=2, **AUGMENT)  # persistent workers keep their dataset copy
    workers = parallel.loader("train", shuffle=True)
    assert workers.persistent_workers
    by_workers = audio_by_id(workers)
    assert same_draws(first, by_workers)
    workers.batch_sampler.set_epoch(1)
    by_workers_1 = audio_by_id(workers)
    assert same_draws(epoch1, by_workers_1)
    workers.batch_sampler.set_epoch(0)
    again = audio_by_id(workers)
    assert all(torch.equal(by_workers[k], again[k]) for k in by_workers)  # bitwise with the same workers
    other_seed = audio_by_id(datamodule(corpus, **{**AUGMENT, "seed": 8}).loader("train", shuffle=True))
    assert any(not torch.equal(first[k], other_seed[k]) for k in first)


def test_lightning_tells_the_augmented_sampler_its_epoch_and_keeps_it_under_ddp(tmp_path):
    """What Lightning does each epoch (`_set_sampler_epoch`) and under DDP (`_update_dataloader`)."""
    from lightning_fabric.utilities.data import _replace_dunder_methods
    from pytorch_lightning.trainer.states import RunningStage
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

    corpus = write_corpus(tmp_path / "c", BILINGUAL)
    dm = datamodule(corpus, **AUGMENT)
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.loader("train", shuffle=True)
    _set_sampler_epoch(loader, 3)
    assert loader.batch_sampler.epoch == 3
    assert {epoch for batch in loader.batch_sampler for epoch, _ in batch} == {3}
    ddp = _update_dataloader(
        loader, DistributedSampler(loader.dataset, num_replicas=2, rank=1), RunningStage.TRAINING
    )
    assert isinstance(ddp.batch_sampler, EpochKeySampler) and ddp.batch_sampler.rank == 1
    _set_sampler_epoch(ddp, 2)
    assert ddp.batch_sampler.epoch == 2


def test_augmentation_never_reaches_arch_dev_or_test(tmp_path):
    corpus = write_corpus(tmp_path / "c", BILINGUAL)
    options = {"speed_perturb": [1.1], "noise": {"prob": 1.0}}
    dm = datamodule(corpus, search=True, arch_fraction=0.25, **options)
    files = {u.id: u.audio_filepath for split in dm.splits["fit"].values() for u in split}
    files.update({u.id: u.audio_filepath for split in dm.splits["test"].values() for u in split})
    train = audio_by_id(dm.loader("train", shuffle=True))
    assert all(len(a) == math.ceil(len(load_audio(files[k])) / 1.1) for k, a in train.items())
    clean = {}
    for loader in [dm.loader("arch", shuffle=True), dm.val_dataloader(), *dm.test_dataloader()]:
        assert type(loader.batch_sampler) is DurationBucketSampler
        clean.update(audio_by_id(loader))
    assert len(clean) == 5 + 4 + 3 + 2 + 3
    assert all(torch.equal(audio, load_audio(files[k])) for k, audio in clean.items())


def test_batches_are_sized_for_the_slowest_factor(tmp_path):
    corpus = write_corpus(tmp_path / "c", BILINGUAL)
    dm = datamodule(corpus, speed_perturb=[0.9, 1.0], max_frames=250)
    dm.setup("fit")
    samples = [dm.num_samples(u) for u in dm.splits["fit"]["train"]]
    slowest = [math.ceil(n / 0.9) // 160 + 1 for n in samples]
    assert dm.frame_counts("train") == slowest
    assert dm.frame_counts("dev") == [dm.num_samples(u) // 160 + 1 for u in dm.splits["fit"]["dev"]]
    loader = dm.loader("train", shuffle=True)
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            frames = batch["audio_lengths"] // 160 + 1
            assert len(frames) * int(frames.max()) <= 250
    # The data is such that batches sized by the unperturbed lengths would break the cap at 0.9.
    naive = DurationBucketSampler([n // 160 + 1 for n in samples], 250, shuffle=False)
    assert any(len(b) * max(slowest[i] for i in b) > 250 for b in naive)


def test_ctc_check_weighs_the_fastest_factor(tmp_path):
    """0.5 s gives 51 frames, 13 at stride 4: 13 distinct letters just fit. At speed 1.1 the audio
    has ceil(8000 / 1.1) = 7273 samples, 46 frames, 12 at stride 4: no longer."""
    corpus = tmp_path / "c"
    (corpus / "audio").mkdir(parents=True)
    for split, n in (("train", 4), ("dev", 1)):
        rows = []
        for j in range(n):
            sf.write(str(corpus / "audio" / f"{split}{j}.flac"), speech_like(0.5, seed=j), RATE)
            text = "abcdefghijklm" if j == 0 else "abc"
            rows.append(
                {
                    "audio_filepath": f"audio/{split}{j}.flac",
                    "duration": 0.5,
                    "text": text,
                    "id": f"{split}{j}",
                }
            )
        (corpus / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = datamodule(corpus).check_ctc(stride=4, what="net", max_fraction=0.5)
    assert plain["infeasible"]["train"] == 0
    fast = datamodule(corpus, speed_perturb=[1.0, 1.1])
    summary = fast.check_ctc(stride=4, what="net", max_fraction=0.5)
    assert summary["infeasible"]["train"] == 1 and summary["dropped"] == 1
    assert [u.id for u in fast.splits["fit"]["train"]] == ["train1", "train2", "train3"]


# ----------------------------------------------------------------------------- languages


def test_langs_keeps_only_the_asked_language_in_every_split(tmp_path):
    corpus = write_corpus(tmp_path / "c", BILINGUAL)
    dm = datamodule(corpus, langs=["de"], arch_fraction=0.25)
    dm.setup("fit")
    fit, tests = dm.splits["fit"], dm.splits["test"]
    assert (len(fit["train"]), len(fit["arch"]), len(fit["dev"])) == (6, 2, 2)  # the 25% is of de
    assert list(tests) == ["test", "test_de"]  # test_en, left empty, is left out
    assert (len(tests["test"]), len(tests["test_de"])) == (2, 3)
    every = [*fit["train_all"], *fit["arch"], *fit["dev"], *(u for t in tests.values() for u in t)]
    assert {u.lang for u in every} == {"de"} and set(dm.tokenizer.languages) == {"de"}
    assert "(langs de)" in dm.describe()
    both = datamodule(corpus, langs=["en", "de"])
    assert len(both.splits["fit"]["train_all"]) == 20 and len(both.splits["test"]) == 3


def test_langs_on_one_manifest_filters_before_the_dev_split(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"all": {"en": 10, "de": 20}})
    fit = datamodule(corpus / "all.jsonl", langs=["de"]).splits["fit"]
    assert (len(fit["train"]), len(fit["dev"])) == (18, 2)
    assert {u.lang for u in fit["train"] + fit["dev"]} == {"de"}


def test_unknown_languages_are_named_with_those_present(tmp_path):
    corpus = write_corpus(tmp_path / "c", BILINGUAL)
    with pytest.raises(
        UserError, match=r"data.langs: no utterance of fr, xx in .*; languages present: de, en"
    ):
        datamodule(corpus, langs=["en", "fr", "xx"]).setup("fit")
    with pytest.raises(UserError, match="data.langs must be a non-empty list"):
        datamodule(corpus, langs=[]).setup("fit")
    only_test = write_corpus(tmp_path / "d", {"train": {"en": 3}, "dev": {"en": 1}, "test": {"es": 1}})
    with pytest.raises(UserError, match=r"train.jsonl has no utterance of es"):
        datamodule(only_test, langs=["es"]).setup("fit")


# ----------------------------------------------------------------------------- Kaldi fbank


def test_kaldi_fbank_matches_torchaudio_kaldi_on_one_utterance():
    wave = torch.from_numpy(speech_like(1.0, seed=4)).float()
    direct = kaldi.fbank(wave[None] * 32768, num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0)
    assert direct.shape == (98, 80)
    extractor = FeatureExtractor("kaldi_fbank")
    feats, lengths = extractor(wave[None], torch.tensor([len(wave)]))
    assert lengths.tolist() == [98] and extractor.dim == 80
    torch.testing.assert_close(feats[0], direct, atol=1e-5, rtol=0)
    pipeline = FeaturePipeline("kaldi_fbank")
    normed, _ = pipeline(wave[None], torch.tensor([len(wave)]))
    torch.testing.assert_close(
        normed, normalize_per_utterance(direct[None], torch.tensor([98])), atol=1e-4, rtol=0
    )


def test_kaldi_fbank_lengths_are_kaldis_frames_in_a_padded_batch():
    waves = [torch.from_numpy(speech_like(n / RATE, seed=n)).float() for n in (16000, 8000, 11758, 399, 400)]
    batch = collate_speech([{"audio": w, "targets": torch.ones(1), "text": "", "id": ""} for w in waves])
    pipeline = FeaturePipeline("kaldi_fbank")
    feats, lengths = pipeline(batch["audio"], batch["audio_lengths"])
    expected = [1 + (n - 400) // 160 if n >= 400 else 0 for n in (16000, 8000, 11758, 399, 400)]
    assert expected == [98, 48, 71, 0, 1]
    assert lengths.tolist() == expected and feats.shape == (5, 98, 80)
    assert pipeline.extractor.output_lengths(batch["audio_lengths"]).tolist() == expected
    for i, n in enumerate(expected):
        assert feats[i, n:].abs().sum() == 0
        if n > 1:
            direct = kaldi.fbank(waves[i][None] * 32768, num_mel_bins=80, dither=0.0)
            assert direct.shape[0] == n
            torch.testing.assert_close(
                feats[i, :n], normalize_per_utterance(direct[None], torch.tensor([n]))[0], atol=1e-4, rtol=0
            )


def test_existing_fbank_is_unchanged_by_the_kaldi_kind():
    """fbank is torchaudio's log-mel at the project's n_fft (512); the n_fft 400 it had before is
    kept for checkpoints that do not record theirs (tests/test_nfft.py)."""
    wave = torch.from_numpy(speech_like(0.7, seed=5)).float()[None]
    for n_fft in (None, 400):
        mel = T.MelSpectrogram(
            RATE,
            n_fft=n_fft or 512,
            win_length=400,
            hop_length=160,
            n_mels=80,
            center=True,
            pad_mode="constant",
        )
        feats, lengths = FeatureExtractor("fbank", n_fft=n_fft)(wave, torch.tensor([wave.shape[1]]))
        torch.testing.assert_close(feats, torch.log(mel(wave) + 1e-6).transpose(1, 2))
        assert lengths.tolist() == [wave.shape[1] // 160 + 1]


def test_datamodule_with_kaldi_fbank_keeps_host_and_device_lengths_equal(tmp_path):
    corpus = write_corpus(tmp_path / "c", BILINGUAL)
    dm = datamodule(corpus, features="kaldi_fbank", **AUGMENT)
    batch = dm.on_before_batch_transfer(next(iter(dm.loader("train", shuffle=True))), 0)
    dm.trainer = None
    batch = dm.on_after_batch_transfer(batch, 0)
    assert batch["host_lengths"]["features"] == batch["feature_lengths"].tolist()
    assert batch["feature_lengths"].tolist() == [
        1 + (n - 400) // 160 for n in batch["audio_lengths"].tolist()
    ]
    assert batch["features"].shape[-1] == dm.feature_dim == 80


# ----------------------------------------------------------------------------- TensorBoard


def test_tensorboard_logger_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    logger = loggers.make_logger("tensorboard", tmp_path, name="run")
    assert type(logger).__name__ == "TensorBoardLogger" and Path(logger.log_dir) == tmp_path / "tensorboard"
    logger.log_metrics({"dev/cer": 0.5}, step=1)
    logger.finalize("success")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_tensorboard_logger_without_tensorboard_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(loggers, "installed", lambda package: package != "tensorboard")
    with pytest.raises(UserError, match="--logger tensorboard needs tensorboard: `pip install tensorboard`"):
        loggers.make_logger("tensorboard", tmp_path, name="run")
    assert "tensorboard" in loggers.LOGGER_KINDS
