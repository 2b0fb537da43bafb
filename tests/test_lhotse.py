"""lhotse: CutSet manifests read and written (`supernet data export-lhotse`), the folder layout of
lhotse recipes, clear refusals, and `LhotseBucketSampler` (`--data.sampler lhotse`)."""

from __future__ import annotations

import gzip
import json

import pytest
from lightning_fabric.utilities.data import _set_sampler_epoch

from supernet.commands.cli import main as cli_main
from supernet.data import lhotse_io
from supernet.data.buckets import LhotseBucketSampler
from supernet.data.datamodule import SpeechDataModule, resolve_splits
from supernet.data.manifest import ManifestError, check_manifest, read_manifest
from tests.test_data_features import write_corpus

pytest.importorskip("lhotse")


def facts(utterances) -> list[tuple]:
    return [(u.id, round(u.duration, 6), u.text, u.lang, u.speaker, u.audio_filepath) for u in utterances]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A corpus folder (train, dev, test, test_de) and its export."""
    tmp = tmp_path_factory.mktemp("lhotse")
    corpus = write_corpus(tmp / "corpus", {"train": 12, "dev": 3, "test": 2, "test_de": 2})
    assert cli_main(["data", "export-lhotse", str(corpus), str(tmp / "cuts")]) == 0
    return corpus, tmp / "cuts"


def test_export_then_read_gives_the_same_utterances(exported, tmp_path):
    corpus, cuts = exported
    assert sorted(p.name for p in cuts.iterdir()) == [
        "cuts_dev.jsonl.gz", "cuts_test.jsonl.gz", "cuts_test_de.jsonl.gz", "cuts_train.jsonl.gz",
    ]  # fmt: skip
    ours, theirs = resolve_splits(corpus, 0.1), resolve_splits(cuts, 0.1)
    for group in ("fit", "test"):
        assert theirs[group].keys() == ours[group].keys()
        for name in ours[group]:
            assert facts(theirs[group][name]) == facts(ours[group][name]), name
    # One CutSet file is a manifest like a JSONL one, and `data check` reads it.
    assert facts(read_manifest(cuts / "cuts_train.jsonl.gz")) == facts(read_manifest(corpus / "train.jsonl"))
    report = check_manifest(cuts / "cuts_dev.jsonl.gz")
    assert len(report.good) == report.lines == 3 and not report.problems
    # ... and exports to one file again.
    assert cli_main(["data", "export-lhotse", str(corpus / "dev.jsonl"), str(tmp_path / "dev.jsonl")]) == 0
    assert lhotse_io.is_cuts_file(tmp_path / "dev.jsonl")
    assert facts(read_manifest(tmp_path / "dev.jsonl")) == facts(read_manifest(corpus / "dev.jsonl"))


def test_recordings_and_supervisions_of_lhotse_prepare(exported, tmp_path):
    """`lhotse prepare` writes RecordingSets and SupervisionSets, not cuts; train* splits are joined."""
    from lhotse import CutSet

    corpus, cuts = exported
    train_cuts, dev_cuts = (
        list(CutSet.from_file(cuts / f"cuts_{split}.jsonl.gz")) for split in ("train", "dev")
    )
    parts = {"train-clean-5": train_cuts[:4], "train-other-1": train_cuts[4:], "dev-clean-2": dev_cuts}
    for name, part in parts.items():
        recordings, supervisions, _ = CutSet.from_cuts(part).decompose()
        recordings.to_file(tmp_path / f"mini_librispeech_recordings_{name}.jsonl.gz")
        supervisions.to_file(tmp_path / f"mini_librispeech_supervisions_{name}.jsonl.gz")
    train, dev, tests = lhotse_io.read_folder(tmp_path)
    assert sorted(facts(train)) == sorted(facts(read_manifest(corpus / "train.jsonl")))
    assert facts(dev) == facts(read_manifest(corpus / "dev.jsonl"))
    assert tests == {}


def cut_row(cuts_file, **changes) -> dict:
    with gzip.open(cuts_file, "rt") as handle:
        row = json.loads(handle.readline())
    row.update(changes)
    return row


def test_cuts_supernet_cannot_read_are_refused_by_file_line_and_cut(exported, tmp_path):
    _, cuts = exported
    good = cut_row(cuts / "cuts_train.jsonl.gz")
    cases = {
        "no supervisions": {"supervisions": []},
        "covers 0.10-0.20 s of its": {"start": 0.1, "duration": 0.1},
        "has no text": {"supervisions": [{**good["supervisions"][0], "text": " "}]},
        "has no recording": {"recording": None},  # a features-only cut
    }
    for message, changes in cases.items():
        bad = {key: value for key, value in {**good, "id": "x", **changes}.items() if value is not None}
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(ManifestError, match=f"bad.jsonl:2: cut 'x'.*{message}"):
            read_manifest(path)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "cuts_train.jsonl.gz").write_bytes((cuts / "cuts_train.jsonl.gz").read_bytes())
    with pytest.raises(ManifestError, match="no dev split among the lhotse manifests"):
        resolve_splits(folder, 0.1)
    (folder / "cuts_other.jsonl.gz").write_bytes((cuts / "cuts_dev.jsonl.gz").read_bytes())
    with pytest.raises(ManifestError, match="split.s. other are neither train"):
        resolve_splits(folder, 0.1)


def test_lhotse_sampler_yields_every_utterance_once_per_epoch_in_new_orders(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"train": 40, "dev": 2}, seconds=(0.3, 0.5, 0.8, 1.1, 1.6))
    dm = SpeechDataModule(str(corpus), num_workers=0, max_frames=500, arch_fraction=0.0, sampler="lhotse")
    loader = dm.train_dataloader()
    sampler = loader.batch_sampler
    assert isinstance(sampler, LhotseBucketSampler) and sampler.sampler is sampler
    frames = dm.frame_counts("train")
    orders = []
    for epoch in range(3):
        _set_sampler_epoch(loader, epoch)  # what Lightning does at each epoch start
        batches = list(sampler)
        assert sampler.epoch == epoch and len(batches) == len(sampler) == len(loader)
        assert sorted(i for b in batches for i in b) == list(range(40))
        assert all(len(b) * max(frames[i] for i in b) <= 500 for b in batches)
        orders.append([i for b in batches for i in b])
    assert len({tuple(order) for order in orders}) == 3
    assert "lhotse DynamicBucketingSampler" in dm.describe()
    # An augmented train split gets lhotse's batches as (epoch, index) keys.
    augmented = SpeechDataModule(
        str(corpus),
        num_workers=0,
        max_frames=600,
        arch_fraction=0.0,
        sampler="lhotse",
        speed_perturb=[0.9, 1.1],
    )
    keyed = augmented.train_dataloader().batch_sampler
    keyed.set_epoch(4)
    assert sorted(key for batch in keyed for key in batch) == [(4, i) for i in range(40)]
    # Two DDP ranks: disjoint shards of equal length that cover the epoch.
    ranks = [LhotseBucketSampler(frames, 500, seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    shards = [[i for b in rank for i in b] for rank in ranks]
    assert len(ranks[0]) == len(ranks[1]) and sorted(shards[0] + shards[1]) == list(range(40))
    # lhotse's quadratic_duration weighs long items more: smaller batches of them.
    quadratic = LhotseBucketSampler(frames, 500, seed=5, quadratic_duration=1.0)
    assert len(quadratic) > len(LhotseBucketSampler(frames, 500, seed=5))


def test_lightning_rebuilds_the_lhotse_sampler_for_its_ddp_rank(exported):
    """Under DDP Lightning rebuilds the batch sampler from its saved arguments (`_update_dataloader`)."""
    from lightning_fabric.utilities.data import _replace_dunder_methods
    from pytorch_lightning.trainer.states import RunningStage
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

    corpus, _ = exported
    dm = SpeechDataModule(str(corpus), num_workers=0, max_frames=300, arch_fraction=0.0, sampler="lhotse")
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.loader("train", shuffle=True)
    shards = []
    for rank in (0, 1):
        ddp = _update_dataloader(loader, DistributedSampler(loader.dataset, 2, rank), RunningStage.TRAINING)
        assert isinstance(ddp.batch_sampler, LhotseBucketSampler) and ddp.batch_sampler.rank == rank
        _set_sampler_epoch(ddp, 2)
        shards.append([i for batch in ddp.batch_sampler for i in batch])
    assert len(shards[0]) + len(shards[1]) == 12 and sorted(shards[0] + shards[1]) == list(range(12))


def test_data_batches_prints_both_samplers(exported, capsys):
    corpus, _ = exported
    assert cli_main(["data", "batches", str(corpus), "--max-frames", "300", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "buckets  mean padding over 2 epoch(s)" in out and "lhotse   mean padding over 2 epoch(s)" in out
    assert "lhotse   epoch 1: lhotse DynamicBucketingSampler:" in out


def test_every_epoch_has_the_first_epochs_batch_count():
    """Lightning counts batches once: more are merged under the cap, fewer split."""
    sampler = LhotseBucketSampler([100, 100, 100, 100, 200, 200], max_frames=400, shuffle=False)
    assert sampler.batches_per_epoch == 2
    merged = sampler._fit_count([[0], [1], [2, 3], [4], [5]], epoch=1)
    assert sorted(map(sorted, merged)) == [[0, 1, 2, 3], [4, 5]]
    assert sampler._fit_count([[0, 1, 2, 3, 4, 5]], epoch=1) == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(RuntimeError, match="no two small ones fit max_frames=400"):
        sampler._fit_count([[4, 0], [5, 1], [2, 3]], epoch=1)


def test_the_guides_lhotse_librispeech_flow_on_a_tiny_tree(tmp_path):
    """The guide's `lhotse prepare librispeech DIR OUT` then `supernet search --data OUT`, without the
    download: lhotse's own recipe over a LibriSpeech tree made here, read as a corpus whose
    utterances are those `supernet data import-librispeech` reads from the same tree."""
    from lhotse.recipes import prepare_librispeech

    from supernet.data.tokenizer import normalize_text
    from tests.test_data_manifest import make_librispeech

    root = tmp_path / "LibriSpeech"
    durations = {
        part: make_librispeech(root / part) for part in ("train-clean-100", "dev-clean", "test-clean")
    }
    prepare_librispeech(root, dataset_parts="auto", output_dir=tmp_path / "manifests")
    splits = resolve_splits(tmp_path / "manifests", 0.1)
    assert set(splits["test"]) == {"test-clean"}
    for part, utterances in [
        ("train-clean-100", splits["fit"]["train"] + splits["fit"]["arch"]),
        ("dev-clean", splits["fit"]["dev"]),
        ("test-clean", splits["test"]["test-clean"]),
    ]:
        assert (
            cli_main(["data", "import-librispeech", str(root / part), "-o", str(tmp_path / f"{part}.jsonl")])
            == 0
        )
        # lhotse keeps the transcript's spacing, our import collapses it: the tokenizer sees one text
        ours = {u.id: (normalize_text(u.text), u.speaker) for u in read_manifest(tmp_path / f"{part}.jsonl")}
        assert {u.id: (normalize_text(u.text), u.speaker) for u in utterances} == ours, part
        assert {u.id: round(u.duration, 3) for u in utterances} == {
            k: round(v, 3) for k, v in durations[part].items()
        }
