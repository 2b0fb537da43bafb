"""Gumbel-softmax temperature, annealed exponentially over the search epochs (SNAS, GDAS)."""

from __future__ import annotations

import pytorch_lightning as pl


class TemperatureSchedule(pl.Callback):
    """tau goes from ``start`` to ``end`` across the search epochs (after warm-up)."""

    def __init__(self, start: float = 5.0, end: float = 0.5, warmup_epochs: int = 0):
        if not (start > 0 and end > 0):
            raise ValueError(f"temperatures must be positive, got start={start}, end={end}")
        self.start, self.end, self.warmup_epochs = start, end, warmup_epochs

    def tau_at(self, epoch: int, max_epochs: int) -> float:
        search_epochs = max(1, max_epochs - self.warmup_epochs - 1)
        progress = min(1.0, max(0.0, (epoch - self.warmup_epochs) / search_epochs))
        return self.start * (self.end / self.start) ** progress

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.tau = self.tau_at(trainer.current_epoch, trainer.max_epochs or 1)
        pl_module.log("search/tau", pl_module.tau, on_step=False, on_epoch=True)
