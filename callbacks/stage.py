"""Warm-up then search: the stage is a function of the epoch, so a resumed run agrees."""

from __future__ import annotations

import pytorch_lightning as pl


class StageSwitch(pl.Callback):
    """Sets ``pl_module.stage`` to "warmup" for the first ``warmup_epochs``, then "search"."""

    def __init__(self, warmup_epochs: int = 1):
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        self.warmup_epochs = warmup_epochs

    def stage_at(self, epoch: int) -> str:
        return "warmup" if epoch < self.warmup_epochs else "search"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stage = self.stage_at(trainer.current_epoch)
        if stage != pl_module.stage:
            pl_module.print(f"epoch {trainer.current_epoch}: stage {pl_module.stage} -> {stage}")
        pl_module.stage = stage
