"""Search under DDP (two CPU processes, gloo): same paths, same alphas, same weights on every rank.

Each rank reads different utterances (Lightning's DistributedSampler), so the ranks end with the
same weights and alphas only if the gradients were averaged across them.
"""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from supernet.accel.ddp import SearchDDPStrategy
from supernet.data.tokenizer import BLANK, UNKNOWN
from supernet.search.module import SearchModule

SPACE = {
    "name": "tiny_ddp",
    "features": "fbank",
    "feature_dim": 6,
    "dim": 8,
    "input": "linear",
    "layers": [
        {"name": "e1", "choice": ["tdnn-k3-d1", "tdnn-k3-d2", "skip"]},
        "tdnn-k3-d1-s2",
        {"name": "e2", "choice": ["tdnn-k3-d1", "tdnn-k5-d1", "skip"]},
    ],
    "head": "linear",
    "dropout": 0.0,
}
VOCAB = [BLANK, UNKNOWN, "a", "b", "c"]
FRAMES, UNITS = 24, 3


class PairDataset(Dataset):
    """Utterance ``i``: random features and targets seeded by ``i``; one train and one arch item."""

    def __len__(self) -> int:
        return 32

    def utterance(self, seed: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return {
            "features": torch.randn(FRAMES, SPACE["feature_dim"], generator=gen),
            "feature_lengths": torch.tensor(FRAMES),
            "targets": torch.randint(2, len(VOCAB), (UNITS,), generator=gen),
            "target_lengths": torch.tensor(UNITS),
        }

    def __getitem__(self, i: int) -> dict[str, dict[str, torch.Tensor]]:
        return {"train": self.utterance(i), "arch": self.utterance(1000 + i)}


class RecordPerRank(pl.Callback):
    """Writes, per rank, the path each weight step ran and the final alphas, weights and arch."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.paths: list[dict[str, int]] = []
        self.initial: dict[str, list[float]] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = {n: p.detach().flatten().tolist() for n, p in pl_module.net.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.paths.append({name: edge.plan.index for name, edge in pl_module.net.edges.items()})

    def on_train_end(self, trainer, pl_module) -> None:
        record = {
            "paths": self.paths,
            "initial": self.initial,
            "weights": {n: p.detach().flatten().tolist() for n, p in pl_module.net.named_parameters()},
            "alphas": {n: a.detach().tolist() for n, a in pl_module.arch.alphas.items()},
            "arch": pl_module.current_archspec().to_dict(),
            "world_size": trainer.world_size,
        }
        with open(f"{self.out_dir}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(record, f)


@pytest.mark.parametrize(
    "overlap, sample_ahead",
    [(True, False), (False, False), (True, True)],
    ids=["all-reduce during backward", "after backward", "sampled from alphas one update old"],
)
def test_two_ranks_sample_the_same_paths_and_end_identical(tmp_path, overlap, sample_ahead):
    pl.seed_everything(0)
    model = SearchModule(
        SPACE,
        vocab=VOCAB,
        method="st",
        lr=0.05,
        warmup_steps=1,
        arch_lr=0.1,
        seed=3,
        warmup_epochs=1,
        method_options={"sample_ahead": sample_ahead},
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=SearchDDPStrategy(start_method="spawn", overlap=overlap),
        max_epochs=2,
        callbacks=[RecordPerRank(str(tmp_path))],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=DataLoader(PairDataset(), batch_size=4))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    a, b = ranks
    assert a["world_size"] == b["world_size"] == 2
    assert len(a["paths"]) == 8  # 32 utterances / 2 ranks / batch 4, two epochs
    assert a["paths"] == b["paths"]
    assert len({tuple(p.values()) for p in a["paths"]}) > 1  # the path really changes per step
    assert a["alphas"] == b["alphas"]
    assert any(abs(x) > 1e-4 for alpha in a["alphas"].values() for x in alpha)  # the alphas learned
    assert a["arch"] == b["arch"]
    assert a["weights"].keys() == b["weights"].keys()
    for name in a["weights"]:
        torch.testing.assert_close(torch.tensor(a["weights"][name]), torch.tensor(b["weights"][name]))
    moved = [n for n in a["weights"] if a["weights"][n] != a["initial"][n]]
    assert moved and a["initial"] == b["initial"]  # same start, and the weights really trained
