"""EpochCheckpoint writes last.ckpt at the end of every epoch, whatever top-k and validation do."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import EpochCheckpoint


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        self.log("val", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class RecordLast(pl.Callback):
    """At every epoch start: which epoch does last.ckpt hold (the previous one, if saved)?"""

    def __init__(self, path):
        self.path, self.epochs = path, []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append(
            torch.load(self.path, weights_only=False)["epoch"] if self.path.is_file() else None
        )


def test_last_checkpoint_every_epoch_with_top_k_0_and_sparse_validation(tmp_path):
    data = DataLoader(TensorDataset(torch.randn(8, 2), torch.randn(8, 1)), batch_size=4)
    checkpoint = EpochCheckpoint(dirpath=tmp_path, save_top_k=0, save_last=True)
    record = RecordLast(tmp_path / "last.ckpt")
    trainer = pl.Trainer(
        max_epochs=4,
        check_val_every_n_epoch=3,  # Lightning's own save_last then waits for validation
        callbacks=[checkpoint, record],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), data, data)
    assert record.epochs == [None, 0, 1, 2]  # Lightning alone: [None, None, None, None]
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["epoch"] == 3
