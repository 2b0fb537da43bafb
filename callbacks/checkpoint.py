"""A ``last.ckpt`` at the end of every training epoch, whatever the top-k settings.

Lightning's ``ModelCheckpoint`` writes ``last.ckpt`` only when it has just saved a top-k
checkpoint; with ``save_top_k: 0`` (the search's setting: it has no score to rank) that means at
the end of training only, so an interrupted search lost every epoch. This subclass also writes it
at the end of every training epoch (after that epoch's validation, if any; not twice at one
step), through Lightning's transactional save (a temporary file renamed into place).
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn


class EpochCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``save_last`` holds at every epoch end."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # always: with validation every few epochs (or timed) Lightning saves at validation end only
        self._save_last_every_epoch(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)

    def _save_last_every_epoch(self, trainer: pl.Trainer) -> None:
        if (
            not self.save_last
            or trainer.fast_dev_run
            or trainer.sanity_checking
            or trainer.state.fn != TrainerFn.FITTING
        ):
            return
        if self._last_checkpoint_saved and self._last_global_step_saved == trainer.global_step:
            return  # Lightning's own save_last has just written it
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
