"""Checks before the first training step: audio probed and cached at `SpeechDataModule.setup`, bad
lines named by manifest:line or dropped with a count, and CTC feasibility at a model's stride."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ops
from ops.base import strided_lengths
from supernet.data import preflight
from supernet.data.audio import load_audio
from supernet.data.datamodule import SpeechDataModule
from supernet.data.manifest import ManifestError, Utterance
from supernet.data.tokenizer import CharTokenizer
from supernet.errors import UserError
from supernet.space import SearchSpace

RATE = 16000


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    """Each test gets its own probe cache (never the user's ~/.cache)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUPERNET_CACHE", str(cache))
    return cache


def write_audio(path: Path, seconds: float, rate: int = RATE, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).uniform(-0.3, 0.3, round(seconds * rate))
    sf.write(str(path), noise, rate)
    return path


def write_split(folder: Path, split: str, items: list[tuple[float, str]], claimed=None) -> Path:
    """`split.jsonl` with one FLAC of `seconds` per `(seconds, text)`; `claimed[i]` overrides the
    manifest duration of line i + 1."""
    claimed = claimed or {}
    rows = []
    for i, (seconds, text) in enumerate(items):
        audio = write_audio(folder / "audio" / f"{split}_{i}.flac", seconds, seed=hash((split, i)) % 1000)
        rows.append(
            {
                "audio_filepath": f"audio/{audio.name}",
                "duration": claimed.get(i, seconds),
                "text": text,
                "id": f"{split}-{i}",
            }
        )
    manifest = folder / f"{split}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def write_corpus(folder: Path, train: int = 12, dev: int = 3, test: int = 2, seconds: float = 0.5) -> Path:
    for split, count in (("train", train), ("dev", dev), ("test", test)):
        write_split(folder, split, [(seconds, f"utt {i}") for i in range(count)])
    return folder


def datamodule(corpus: Path, **kwargs) -> SpeechDataModule:
    return SpeechDataModule(str(corpus), num_workers=0, max_frames=400, **kwargs)


# ----------------------------------------------------------------------------- audio at setup


def test_missing_train_audio_is_named_by_manifest_line_before_any_step(tmp_path):
    corpus = write_corpus(tmp_path / "c")
    (corpus / "audio" / "train_2.flac").unlink()
    dm = datamodule(corpus)
    with pytest.raises(ManifestError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert f"{corpus / 'train.jsonl'}:3: " in message and "train_2.flac: audio file not found" in message
    assert "1 bad utterance(s)" in message and "--data.skip_bad true" in message
    assert dm.datasets == {} and dm.samplers == {}  # nothing was loaded
    with pytest.raises(ManifestError, match=r"train\.jsonl:3: "):
        dm.setup("test")  # a failed check is not remembered as passed


@pytest.mark.parametrize("stage", ["fit", "test", "validate"])
def test_missing_test_set_audio_is_caught_at_setup(tmp_path, stage):
    corpus = write_corpus(tmp_path / "c")
    (corpus / "audio" / "test_1.flac").unlink()
    with pytest.raises(ManifestError, match=r"test\.jsonl:2: .*test_1\.flac: audio file not found"):
        datamodule(corpus).setup(stage)


def test_corrupt_and_truncated_flac_are_caught_at_setup(tmp_path):
    corpus = write_corpus(tmp_path / "c")
    (corpus / "audio" / "train_1.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)
    whole = (corpus / "audio" / "train_4.flac").read_bytes()
    (corpus / "audio" / "train_4.flac").write_bytes(whole[: len(whole) * 3 // 4])
    with pytest.raises(ManifestError) as err:
        datamodule(corpus).setup("fit")
    message = str(err.value)
    assert "2 bad utterance(s) of 17" in message
    assert "train.jsonl:2: " in message and "train_1.flac: cannot read audio header" in message
    assert "train.jsonl:5: " in message and "train_4.flac: truncated" in message


def test_lying_durations_are_caught_and_bucketing_uses_the_header(tmp_path):
    corpus = tmp_path / "c"
    # Every train line claims 0.3 s; two files hold 3 s (refused), one 0.38 s (within tolerance).
    items = [(0.3, "utt a"), (3.0, "utt b"), (0.38, "utt c"), (3.0, "utt d"), (0.3, "utt e")]
    write_split(corpus, "train", items, claimed={i: 0.3 for i in range(len(items))})
    write_split(corpus, "dev", [(0.3, "utt f")])
    with pytest.raises(ManifestError) as err:
        datamodule(corpus).setup("fit")
    message = str(err.value)
    assert "train.jsonl:2: " in message and "manifest duration 0.300 s but the file holds 3.000 s" in message
    assert "train.jsonl:4: " in message and "train.jsonl:3: " not in message
    dm = datamodule(corpus, skip_bad=True, arch_fraction=0.0)
    dm.setup("fit")
    assert [u.id for u in dm.splits["fit"]["train"]] == ["train-0", "train-2", "train-4"]
    assert dm.frame_counts("train") == [31, 39, 31]  # 0.38 s from the header, not the 0.3 s claimed
    sampler = dm.sampler("train", shuffle=False)
    for batch in sampler:
        assert len(batch) * max(sampler.frame_counts[i] for i in batch) <= dm.max_frames


def test_skip_bad_drops_every_split_with_a_count_and_a_report(tmp_path, caplog):
    corpus = write_corpus(tmp_path / "c", train=20)
    for name in ("train_3.flac", "train_7.flac", "dev_0.flac", "test_1.flac"):
        (corpus / "audio" / name).unlink()
    dm = datamodule(corpus, skip_bad=True)
    with caplog.at_level("INFO"):
        dm.setup("fit")
    assert "dropped 4 bad utterance(s) of 25" in caplog.text
    fit = dm.splits["fit"]
    assert len(fit["train"]) + len(fit["arch"]) == 18 and len(fit["dev"]) == 2
    assert [u.id for u in dm.splits["test"]["test"]] == ["test-0"]
    assert not {"train-3", "train-7"} & {u.id for u in fit["train"] + fit["arch"]}
    report = dm.data_report
    assert report["checked"] == 25 and report["bad"] == 4 and len(report["problems"]) == 4
    assert report["dropped"]["dev"] == 1 and report["dropped"]["test:test"] == 1
    assert any(p.startswith(f"{corpus / 'train.jsonl'}:4: ") for p in report["problems"])
    assert len(dm.sampler("train", shuffle=False).frame_counts) == len(fit["train"])


def test_check_audio_false_skips_the_probe(tmp_path):
    corpus = write_corpus(tmp_path / "c")
    (corpus / "audio" / "train_2.flac").unlink()
    dm = datamodule(corpus, check_audio=False)
    dm.setup("fit")
    assert dm.data_report is None


def test_probe_results_are_cached_by_manifest_and_file_state(tmp_path, monkeypatch, private_cache):
    corpus = write_corpus(tmp_path / "c")
    calls = []
    real_probe = preflight.probe_audio
    monkeypatch.setattr(preflight, "probe_audio", lambda path: calls.append(path) or real_probe(path))
    datamodule(corpus).setup("fit")
    assert len(calls) == 17
    assert len(list((private_cache / "audio-check").glob("*.json"))) == 3  # one per manifest
    calls.clear()
    dm = datamodule(corpus)
    dm.setup("fit")
    assert calls == [] and len(dm.audio_infos) == 17  # a re-run reads no audio
    touched = corpus / "audio" / "dev_1.flac"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    datamodule(corpus).setup("fit")
    assert sorted(Path(p).name for p in calls) == ["dev_0.flac", "dev_1.flac", "dev_2.flac"]
    calls.clear()
    with (corpus / "test.jsonl").open("a") as handle:  # a changed manifest is checked again
        handle.write(
            json.dumps({"audio_filepath": "audio/train_0.flac", "duration": 0.5, "text": "x"}) + "\n"
        )
    datamodule(corpus).setup("fit")
    assert len(calls) == 3


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("SUPERNET_CACHE", str(blocker))
    corpus = write_corpus(tmp_path / "c")
    (corpus / "audio" / "dev_2.flac").unlink()
    for _ in range(2):
        with pytest.raises(ManifestError, match=r"dev\.jsonl:3: "):
            datamodule(corpus).setup("fit")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SUPERNET_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert preflight.cache_root() == tmp_path / "xdg" / "supernet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert preflight.cache_root() == tmp_path / "home" / ".cache" / "supernet"


# ----------------------------------------------------------------------------- CTC


def test_ctc_frames_needed_is_what_ctc_loss_accepts():
    """Known answer, and the boundary checked against torch's CTC: finite at `needed` frames,
    infinite at one fewer."""
    assert preflight.ctc_frames_needed([3, 3, 4, 4, 4, 5]) == 9
    tok = CharTokenizer.build(["hello moon"])
    for text in ("hello moon", "abc", "aaaa"):
        labels = tok.encode(text) if set(text) <= set(tok.chars) else [2 + " abc".index(c) for c in text]
        needed = preflight.ctc_frames_needed(labels)
        targets = torch.tensor([labels])
        for frames, finite in ((needed, True), (needed - 1, False)):
            log_probs = torch.zeros(frames, 1, 12).log_softmax(-1)
            loss = torch.nn.functional.ctc_loss(
                log_probs, targets, torch.tensor([frames]), torch.tensor([len(labels)]), reduction="sum"
            )
            assert math.isfinite(loss.item()) == finite, (text, frames)
    assert preflight.ctc_frames_needed(tok.encode("hello moon")) == 12  # 10 labels, "ll" and "oo"


def test_output_frames_follow_the_ops_length_arithmetic():
    """One ceiling division by the total stride equals the ops' own per-op lengths, chained."""
    for length in (1, 100, 101, 102, 299, 1001):
        lengths = torch.tensor([length])
        for strides in ([3], [2, 2], [2, 2, 3], [3, 2, 2], [4, 3]):
            out = lengths
            for stride in strides:
                out = strided_lengths(out, stride)
            assert preflight.output_frames(length, math.prod(strides)) == out.item()
    net = [ops.build("conv2d4x", 8, 8), ops.build("tdnn-k3-d1-s3", 8, 8)]
    x, lengths = torch.zeros(2, 101, 8), torch.tensor([101, 77])
    for op in net:
        op.eval()
        x, lengths = op(x, lengths)
    assert lengths.tolist() == [preflight.output_frames(101, 12), preflight.output_frames(77, 12)] == [9, 7]


def test_ctc_fits_known_answer(tmp_path):
    """1.0 s at 16 kHz: 16000 samples, 101 frames of 10 ms, ceil(101 / 3) = 34 frames at stride 3.
    "hello moon" needs 12; 30 letters with 4 doubled pairs need 34 (fits), with 5 need 35 (not)."""
    audio = write_audio(tmp_path / "a.flac", 1.0)
    texts = ["hello moon", "aabbccddefghijklmnopqrstuvwxyz", "aabbccddeeghijklmnopqrstuvwxyz"]
    utts = [
        Utterance(str(audio), 1.0, text, f"u{i}", source=f"m.jsonl:{i + 1}") for i, text in enumerate(texts)
    ]
    tok = CharTokenizer.build(texts)
    check = preflight.check_audio(utts)
    fits = preflight.ctc_fits(utts, tok, 3, check.infos)
    assert [(f.frames, f.needed, f.feasible) for f in fits] == [
        (34, 12, True),
        (34, 34, True),
        (34, 35, False),
    ]
    assert [str(f) for f in preflight.worst_fits(fits)] == ["m.jsonl:3 (34 output frames, needs 35)"]
    raw = preflight.ctc_fits(utts[:1], tok, 160 * 3, check.infos, features="raw")
    assert raw[0].frames == math.ceil(16000 / 480) == 34


def test_num_samples_match_the_loaded_waveform(tmp_path):
    for rate, seconds in ((8000, 0.2503), (22050, 0.31), (44100, 0.5), (16000, 0.4)):
        audio = write_audio(tmp_path / f"r{rate}.flac", seconds, rate=rate)
        utt = Utterance(str(audio), seconds, "x", "x", source="m.jsonl:1")
        info = preflight.check_audio([utt]).infos[str(audio)]
        assert preflight.num_samples(utt, info) == load_audio(audio).shape[0]


def test_check_ctc_refuses_a_stride_that_makes_training_infeasible(tmp_path):
    corpus = write_corpus(tmp_path / "c", seconds=0.3)  # 31 frames; "utt N" needs 6 ("tt")
    dm = datamodule(corpus)
    dm.setup("fit")
    assert dm.check_ctc(3, "architecture small")["dropped"] == 0
    with pytest.raises(UserError) as err:
        datamodule(corpus).check_ctc(9, "architecture tdnn_big")
    message = str(err.value)
    assert message.startswith("architecture tdnn_big: total stride 9 leaves too few output frames")
    assert "on 12 of 12 training utterances (100.0%" in message
    assert f"{corpus / 'train.jsonl'}:1 (4 output frames, needs 6)" in message
    assert message.count("output frames, needs") == 5


def test_check_ctc_drops_a_few_infeasible_training_utterances_and_rebuilds_batches(tmp_path, caplog):
    corpus = tmp_path / "c"
    long_text = "a truncated file with a transcript far longer than its audio"  # 1.9 s would hold it
    train = [(0.5, f"utt {i}") for i in range(40)]
    train[5] = (0.5, long_text)
    write_split(corpus, "train", train)
    write_split(corpus, "dev", [(0.5, "utt x"), (0.5, long_text)])
    write_split(corpus, "test", [(0.5, long_text), (0.5, "utt y")])
    dm = datamodule(corpus, search=True)
    dm.setup("fit")  # builds samplers on every utterance (describe)
    before = {name: len(dm.sampler(name, shuffle=True).frame_counts) for name in ("train", "arch")}
    assert sum(before.values()) == 40
    with pytest.raises(
        UserError, match=r"space tiny: total stride 3 .* on 1 of 40 training utterances \(2\.5%"
    ):
        dm.check_ctc(3, "space tiny", max_fraction=0.02)
    with caplog.at_level("INFO"):
        summary = dm.check_ctc(3, "space tiny", max_fraction=0.05)
    assert summary["stride"] == 3 and summary["dropped"] == 1
    assert summary["infeasible"]["dev"] == 1 and summary["infeasible"]["test:test"] == 1
    assert summary["infeasible"]["train"] + summary["infeasible"]["arch"] == 1
    assert summary["utterances"]["train"] + summary["utterances"]["arch"] == 40
    assert "space tiny: dropped 1 training utterance(s) too short for CTC at total stride 3" in caplog.text
    kept = dm.splits["fit"]["train"] + dm.splits["fit"]["arch"]
    assert len(kept) == 39 and "train-5" not in {u.id for u in kept}
    assert len(dm.splits["fit"]["dev"]) == 2 and len(dm.splits["test"]["test"]) == 2  # scored, not dropped
    after = {name: len(dm.sampler(name, shuffle=True).frame_counts) for name in ("train", "arch")}
    assert sum(after.values()) == 39 and after == {n: len(dm.splits["fit"][n]) for n in after}
    assert (
        sum(len(b) for b in dm.sampler("train", shuffle=True)) == len(dm.dataset("train")) == after["train"]
    )
    assert dm.check_ctc(3, "space tiny", max_fraction=0.05) is summary  # the model's setup may run twice


# ----------------------------------------------------------------------------- spaces


def test_space_max_total_stride_is_the_largest_over_its_paths():
    space = SearchSpace(
        {
            "name": "strided",
            "features": "fbank",
            "feature_dim": 8,
            "dim": 8,
            "input": "conv2d4x",
            "layers": [
                "tdnn-k3-d1-s3",
                {"choice": ["tdnn-k3-d1-s2", "skip-s2"]},
                {"choice": ["tdnn-k3-d1", "skip"]},
            ],
        }
    )
    assert space.max_total_stride == 24
    strides = {space.derive({"layer1": a, "layer2": b}).total_stride for a in (0, 1) for b in (0, 1)}
    assert strides == {24}
    assert SearchSpace.from_yaml("st_nas").max_total_stride == 3


def test_a_cached_failure_is_probed_again(tmp_path, monkeypatch):
    """A file that failed (permissions, a passing I/O error) is not remembered as bad: fixing it
    need not change its size or mtime, which key the cache."""
    import supernet.data.preflight as preflight

    monkeypatch.setenv("SUPERNET_CACHE", str(tmp_path / "cache"))
    audio = tmp_path / "a.wav"
    sf.write(audio, np.zeros(1600, dtype=np.float32), 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 0.1, "text": "a"}) + "\n")
    real = preflight.probe_audio
    monkeypatch.setattr(preflight, "probe_audio", lambda path: (_ for _ in ()).throw(OSError(5, "EIO")))
    assert isinstance(preflight.probe_manifest_audio(manifest, [str(audio)])[str(audio)], str)
    monkeypatch.setattr(preflight, "probe_audio", real)
    assert not isinstance(preflight.probe_manifest_audio(manifest, [str(audio)])[str(audio)], str)


def test_feature_frames_count_what_each_front_end_makes():
    import torch

    from supernet.data.features import FeatureExtractor
    from supernet.data.preflight import feature_frames

    for kind in ("fbank", "kaldi_fbank"):
        extractor = FeatureExtractor(kind)
        for samples in (399, 400, 16_000, 16_123):
            made = extractor(torch.randn(1, samples), torch.tensor([samples]))[1]
            assert feature_frames(samples, kind) == int(made), (kind, samples)
    assert feature_frames(16_000, "fbank") - feature_frames(16_000, "kaldi_fbank") == 3
    assert feature_frames(5, "raw") == 5
