"""Features, SpecAugment, duration buckets (incl. DDP sharding) and `SpeechDataModule` splits and
batches, on small corpora written by the tests."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import soundfile as sf
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DistributedSampler

from supernet.data.buckets import DurationBucketSampler
from supernet.data.datamodule import SpeechDataModule, collate_speech
from supernet.data.features import FeatureExtractor, FeaturePipeline, SpecAugment
from supernet.errors import UserError

RATE = 16000


def noise(seconds: float, seed: int) -> torch.Tensor:
    return 0.1 * torch.randn(round(seconds * RATE), generator=torch.Generator().manual_seed(seed))


def padded_batch(*seconds: float) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    waves = [noise(s, seed=i) for i, s in enumerate(seconds)]
    batch = collate_speech([{"audio": w, "targets": torch.ones(1), "text": "", "id": ""} for w in waves])
    return batch["audio"], batch["audio_lengths"], waves


# ----------------------------------------------------------------------------- features


@pytest.mark.parametrize("kind, dim", [("fbank", 80), ("mfcc", 40), ("raw", 1)])
def test_feature_shapes_lengths_and_zero_padding(kind, dim):
    audio, lengths, waves = padded_batch(1.0, 0.5, 0.7349)
    pipeline = FeaturePipeline(kind)
    feats, feat_lengths = pipeline(audio, lengths)
    expected = [16000, 8000, 11758] if kind == "raw" else [101, 51, 74]  # centred frames: S // 160 + 1
    assert pipeline.feature_dim == dim
    assert feats.shape == (3, expected[0], dim) and feat_lengths.tolist() == expected
    for i, n in enumerate(expected):
        assert feats[i, n:].abs().sum() == 0
        valid = feats[i, :n]
        torch.testing.assert_close(valid.mean(0), torch.zeros(dim), atol=1e-4, rtol=0)
        # An utterance's valid frames do not depend on its batch mates or on the padding.
        alone, alone_len = pipeline(waves[i][None], torch.tensor([len(waves[i])]))
        assert alone_len.item() == n
        torch.testing.assert_close(alone[0], valid, atol=1e-4, rtol=1e-4)


def test_spec_augment_masks_only_valid_frames_within_limits():
    torch.manual_seed(0)
    x = torch.randn(4, 50, 80)
    lengths = torch.tensor([50, 30, 10, 5])
    x = x * (torch.arange(50)[None, :, None] < lengths[:, None, None])
    augment = SpecAugment(freq_masks=2, freq_width=10, time_masks=2, time_width=40, time_ratio=0.2)
    for _ in range(20):
        y = augment(x, lengths)
        masked = (y == 0) & (x != 0)
        time_masked = masked.all(dim=2)  # frames zeroed across every channel
        freq_masked = masked.all(dim=1)  # channels zeroed across every valid frame (only long ones)
        for i, n in enumerate(lengths.tolist()):
            assert time_masked[i].sum() <= 2 * int(0.2 * n)
            assert not time_masked[i, n:].any()
        assert freq_masked[0].sum() <= 20
    assert (augment(x, lengths) != x).any()


def test_extractor_rejects_unknown_kind():
    with pytest.raises(
        ValueError, match="features must be one of fbank, mfcc, raw, kaldi_fbank; got 'spectrogram'"
    ):
        FeatureExtractor("spectrogram")


# ----------------------------------------------------------------------------- buckets


def frame_counts(n: int = 97, seed: int = 0) -> list[int]:
    return torch.randint(20, 400, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_buckets_respect_cap_cover_each_item_once_and_report_padding():
    counts = frame_counts()
    sampler = DurationBucketSampler(counts, max_frames=1200, seed=3, num_buckets=8)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == len(list(sampler))  # same count every epoch
        assert sorted(i for b in batches for i in b) == list(range(len(counts)))
        assert all(len(b) * max(counts[i] for i in b) <= 1200 for b in batches)
        padded = sum(len(b) * max(counts[i] for i in b) for b in batches)
        assert sampler.padding_fraction == pytest.approx(1 - sum(counts) / padded)
        orders.append(batches)
    assert orders[0] != orders[1]
    assert 0 < sampler.padding_fraction < 0.25  # sorted buckets keep padding small
    again = DurationBucketSampler(counts, max_frames=1200, seed=3, num_buckets=8)
    again.set_epoch(1)
    assert list(again) == orders[1]  # seeded by seed + epoch
    with pytest.raises(ValueError, match="longer than max_frames=300"):
        DurationBucketSampler(counts, max_frames=300)


@pytest.mark.parametrize("num_items", [97, 3])
def test_two_ranks_get_disjoint_equal_batches(num_items):
    counts = frame_counts(num_items, seed=1)
    ranks = [
        DurationBucketSampler(counts, 1500, num_replicas=2, rank=r, seed=5, num_buckets=5) for r in (0, 1)
    ]
    for epoch in (0, 1):
        for sampler in ranks:
            sampler.set_epoch(epoch)
        per_rank = [list(s) for s in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[0]) > 0
        items = [sorted(i for b in batches for i in b) for batches in per_rank]
        assert not set(items[0]) & set(items[1])
        assert sorted(items[0] + items[1]) == list(range(num_items)) and ranks[0].repeated_batches == 0
    # Lightning injects a DistributedSampler under DDP: its rank and world size are the ones used.
    dist = DistributedSampler(range(num_items), num_replicas=2, rank=1, shuffle=False)
    injected = DurationBucketSampler(counts, 1500, dist, seed=5, num_buckets=5)
    injected.set_epoch(1)
    assert list(injected) == per_rank[1] and injected.repeated_batches == 0


def test_lightning_injects_its_ddp_rank_into_the_bucket_sampler(tmp_path):
    """What Lightning does to a loader under DDP with the default `use_distributed_sampler=True`
    (private API of the pinned pytorch-lightning 2.6): our sampler must survive it, rank-aware."""
    from lightning_fabric.utilities.data import _replace_dunder_methods
    from pytorch_lightning.trainer.states import RunningStage
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader

    dm = SpeechDataModule(
        str(write_corpus(tmp_path / "c", {"train": 30, "dev": 2})), num_workers=0, max_frames=300
    )
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.train_dataloader()
    ddp = _update_dataloader(
        loader, DistributedSampler(loader.dataset, num_replicas=2, rank=1), RunningStage.TRAINING
    )
    sampler = ddp.batch_sampler
    assert isinstance(sampler, DurationBucketSampler) and (sampler.num_replicas, sampler.rank) == (2, 1)
    assert list(sampler) == loader.batch_sampler._all_batches(0)[1::2]


def test_lightning_sets_the_bucket_sampler_epoch(tmp_path):
    """Lightning calls ``set_epoch`` on ``loader.batch_sampler.sampler`` each epoch: it must reach
    our batch sampler, or every epoch replays the first one's order."""
    from lightning_fabric.utilities.data import _set_sampler_epoch

    dm = SpeechDataModule(
        str(write_corpus(tmp_path / "c", {"train": 30, "dev": 2})), num_workers=0, max_frames=300
    )
    loader = dm.train_dataloader()
    first = list(loader.batch_sampler)
    _set_sampler_epoch(loader, 2)
    assert loader.batch_sampler.epoch == 2 and list(loader.batch_sampler) != first


# ----------------------------------------------------------------------------- datamodule


def write_corpus(folder: Path, splits: dict[str, int], seconds=(0.3, 0.5, 0.8)) -> Path:
    """Noise utterances (FLAC) with texts "utt N" / "wort N" for en / de."""
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    k = 0
    for split, count in splits.items():
        rows = []
        for j in range(count):
            duration = seconds[k % len(seconds)]
            path = folder / "audio" / f"{split}_{j}.flac"
            sf.write(str(path), noise(duration, seed=k).numpy(), RATE)
            lang = "de" if j % 2 else "en"
            text = f"{'wort' if lang == 'de' else 'utt'} {j}"
            rows.append(
                {
                    "audio_filepath": f"audio/{path.name}",
                    "duration": duration,
                    "text": text,
                    "lang": lang,
                    "speaker": f"s{j % 3}",
                    "id": f"{split}-{j}",
                }
            )
            k += 1
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_corpus_folder_splits_arch_deterministic_and_disjoint(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"train": 40, "dev": 4, "test": 3, "test_de": 2})
    dm = SpeechDataModule(str(corpus), num_workers=0, max_frames=400)
    dm.setup("fit")
    fit = dm.splits["fit"]
    assert dm.test_names == ["test", "test_de"]
    assert len(fit["arch"]) == 4 and len(fit["train"]) == 36 and len(fit["dev"]) == 4
    train_ids, arch_ids = {u.id for u in fit["train"]}, {u.id for u in fit["arch"]}
    assert not train_ids & arch_ids and len(train_ids | arch_ids) == 40
    other = SpeechDataModule(str(corpus), num_workers=0, seed=123)
    assert [u.id for u in other.splits["fit"]["arch"]] == [u.id for u in fit["arch"]]
    assert "padding" in dm.describe() and "test:test_de" in dm.describe()
    tok = dm.tokenizer
    assert set("utt wort 0123456789") <= set(tok.chars) and set(tok.languages) == {"de", "en"}
    assert dm.save_tokenizer(tmp_path / "run").name == "tokenizer.json"
    assert [len(loader.dataset) for loader in dm.test_dataloader()] == [3, 2]


def test_single_manifest_splits_train_dev_and_tests_on_dev(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"all": 30})
    dm = SpeechDataModule(str(corpus / "all.jsonl"), num_workers=0, arch_fraction=0.0)
    fit = dm.splits["fit"]
    assert len(fit["dev"]) == 3 and len(fit["train"]) == 27 and fit["arch"] == []
    assert dm.test_names == ["dev"] and dm.splits["test"]["dev"] == fit["dev"]
    assert not {u.id for u in fit["train"]} & {u.id for u in fit["dev"]}


def test_batches_follow_the_contract_and_augment_only_in_training(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"train": 20, "dev": 4})
    dm = SpeechDataModule(str(corpus), num_workers=0, max_frames=300, search=True, features="fbank")
    loader = dm.train_dataloader()
    assert isinstance(loader, CombinedLoader)
    iter(loader)
    batch, _, _ = next(loader)
    assert set(batch) == {"train", "arch"}
    part = batch["train"]
    assert part["audio"].dtype == torch.float32 and part["targets"].dtype == torch.long
    for i, (n, text) in enumerate(zip(part["audio_lengths"].tolist(), part["texts"])):
        assert part["audio"][i, n:].abs().sum() == 0
        assert dm.tokenizer.decode(part["targets"][i, : part["target_lengths"][i]].tolist()) == text
        assert part["targets"][i, part["target_lengths"][i] :].eq(0).all()
    assert part["audio"].shape[0] * (part["audio"].shape[1] // 160 + 1) <= 300

    dm.trainer = SimpleNamespace(training=False)
    clean = dm.on_after_batch_transfer({k: dict(v) for k, v in batch.items()}, 0)
    assert clean["train"]["features"].shape[-1] == dm.feature_dim == 80
    assert clean["train"]["feature_lengths"].tolist() == (part["audio_lengths"] // 160 + 1).tolist()
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    augmented = dm.on_after_batch_transfer({k: dict(v) for k, v in batch.items()}, 0)
    assert not torch.equal(augmented["train"]["features"], clean["train"]["features"])
    assert torch.equal(augmented["arch"]["features"], clean["arch"]["features"])  # arch step: no SpecAugment
    dev_batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert dev_batch["features"].shape[0] == len(dev_batch["ids"])


class _Probe(pl.LightningModule):
    """Records what the trainer hands to the steps."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(80, 4)
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append(("train", batch["features"].shape, batch["feature_lengths"].max().item()))
        assert batch["host_lengths"]["features"] == batch["feature_lengths"].tolist()  # a list: never moved
        assert batch["host_lengths"]["targets"] == batch["target_lengths"].tolist()
        return self.layer(batch["features"]).mean()

    def validation_step(self, batch, batch_idx):
        self.seen.append(("val", batch["features"].shape, batch["feature_lengths"].max().item()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_runs_features_through_on_after_batch_transfer(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"train": 12, "dev": 3})
    dm = SpeechDataModule(str(corpus), num_workers=0, max_frames=300, arch_fraction=0.0)
    probe = _Probe()
    trainer = pl.Trainer(
        max_steps=3,
        val_check_interval=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    trainer.fit(probe, datamodule=dm)
    kinds = [kind for kind, _, _ in probe.seen]
    assert kinds.count("train") == 3 and "val" in kinds
    for _, shape, longest in probe.seen:
        assert shape[1] == longest and shape[2] == 80


def test_pad_frames_pads_features_to_a_multiple_and_keeps_lengths(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"train": 6, "dev": 2})
    plain = SpeechDataModule(
        str(corpus), num_workers=0, max_frames=300, arch_fraction=0.0, spec_augment=False
    )
    padded = SpeechDataModule(
        str(corpus), num_workers=0, max_frames=300, arch_fraction=0.0, spec_augment=False, pad_frames=16
    )
    for dm in (plain, padded):
        dm.setup("fit")
    batch = next(iter(plain.train_dataloader()))
    a = plain.featurize({k: v for k, v in batch.items()}, augment=False)
    b = padded.featurize({k: v for k, v in batch.items()}, augment=False)
    frames = a["features"].shape[1]
    assert b["features"].shape[1] == -(-frames // 16) * 16
    assert torch.equal(b["features"][:, :frames], a["features"])
    assert not b["features"][:, frames:].any()  # zero frames, past every length
    assert torch.equal(b["feature_lengths"], a["feature_lengths"])
    with pytest.raises(UserError, match="pad_frames"):
        SpeechDataModule(str(corpus), pad_frames=0)
