"""Experiment loggers: W&B offline by default, CSV when wandb is missing or not wanted.

Offline W&B writes runs under ``SAVE_DIR/wandb`` with no account or network; ``wandb sync``
uploads them later. ``wandb`` is imported only here and only when asked for, because some
machines (the GPU hosts) do not have it installed.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger, Logger

LOGGER_KINDS = ("wandb", "csv", "none")


def make_logger(kind: str, save_dir: str | Path, name: str, project: str = "supernet") -> Logger | bool:
    """A Lightning logger of ``kind`` (``wandb`` | ``csv`` | ``none``) writing under ``save_dir``.

    Returns ``False`` for ``none`` (what ``Trainer(logger=...)`` takes to disable logging).
    ``WANDB_MODE`` is set to ``offline`` unless the user already set it.
    """
    if kind not in LOGGER_KINDS:
        raise ValueError(f"unknown logger {kind!r}; choose one of {', '.join(LOGGER_KINDS)}")
    save_dir = Path(save_dir)
    if kind == "none":
        return False
    if kind == "wandb":
        if importlib.util.find_spec("wandb") is None:
            warnings.warn("wandb is not installed; logging to CSV instead", stacklevel=2)
        else:
            from pytorch_lightning.loggers import WandbLogger

            os.environ.setdefault("WANDB_MODE", "offline")
            save_dir.mkdir(parents=True, exist_ok=True)
            return WandbLogger(project=project, name=name, save_dir=str(save_dir))
    return CSVLogger(save_dir=str(save_dir), name="csv", version="")


def finish_loggers(loggers: list[Logger]) -> None:
    """End the W&B run of a finished command, so the next command in the same process (the demo
    runs search and two retrains in one) starts its own run instead of appending to this one."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            import wandb

            wandb.finish()
