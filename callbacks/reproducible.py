"""Exact resume: the global random streams restart from ``(seed, epoch)`` at every epoch start.

Dropout, SpecAugment masks and weight noise draw from the global torch (CPU and CUDA), numpy and
Python generators. Saving their states in a checkpoint is not enough to resume exactly: between
the end-of-epoch save and the next epoch's first step, Lightning and the data loaders still draw
from them (worker seeds, validation), and a resumed run does not repeat those draws. Seeding every
stream from ``(seed, epoch)`` at each epoch start makes an epoch's randomness a function of the
seed and the epoch alone, so a run resumed from any end-of-epoch checkpoint replays the
uninterrupted run bit for bit (on the same device and software). The ST path sampler already
draws from ``(seed, step)`` (``ArchParams.generator``), the bucket sampler from ``(seed, epoch)``.

The checkpoint keeps the seed, so resuming with another ``--seed_everything`` is refused (it
would silently mix two runs). A mid-epoch checkpoint (Lightning's ``save_on_exception`` or
``every_n_train_steps``) is not bit-identical on resume: Lightning runs that epoch's remaining
steps over the data from the epoch's start, and the streams restart from the epoch's seed.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from supernet.errors import UserError


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for ``epoch`` of a run seeded with ``seed`` (streams of nearby pairs unrelated)."""
    digest = hashlib.sha256(f"supernet:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def seed_all(seed: int) -> None:
    """Seed torch (every device), numpy and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also every CUDA device


def check_resume_seed(ckpt_path: str, seed: int) -> None:
    """Refuse, before anything is written, to resume a checkpoint made with another seed."""
    if not Path(ckpt_path).is_file():
        return  # the run folder's claim names the missing checkpoint
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as err:  # not a checkpoint: a YAML, a truncated file, ...
        raise UserError(f"--ckpt_path {ckpt_path}: not a readable checkpoint ({type(err).__name__})") from err
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("EpochSeed"):
            EpochSeed(seed).load_state_dict(value)


class EpochSeed(pl.Callback):
    """Reseeds the global generators from ``(seed, epoch)`` at the start of every training epoch."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seed_all(epoch_seed(self.seed, trainer.current_epoch))

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = int(state_dict.get("seed", self.seed))
        if saved != self.seed:
            raise UserError(
                f"the checkpoint was made with --seed_everything {saved}, this run has {self.seed}: "
                f"resume with --seed_everything {saved} (another seed would mix two runs' random streams)"
            )
