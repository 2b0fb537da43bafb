"""Experiment loggers and plots, and the optional packages behind them.

wandb and matplotlib are extras (``pip install 'supernet[wandb]'``, ``'supernet[plots]'``),
imported only here and only when used, because some machines (the GPU hosts) lack wandb.

Loggers: offline W&B writes runs under ``SAVE_DIR/wandb`` with no account or network (``wandb
sync`` uploads them later).

- ``auto`` (the default): W&B if wandb is installed, else CSV, saying so in one printed line;
- ``wandb``: W&B, and a ``UserError`` naming the extra when wandb is missing;
- ``csv``: ``SAVE_DIR/csv/metrics.csv``, kept across a resume (``supernet.csv_logger``);
  ``none``: no logger;
- ``tensorboard``: event files under ``SAVE_DIR/tensorboard`` (``tensorboard --logdir SAVE_DIR``),
  and a ``UserError`` saying ``pip install tensorboard`` when it is missing.

Plots (alpha heatmaps, ``pareto``, ``latency-check --plot``): without matplotlib a plot is skipped
with one printed line (``can_plot``); drawing one anyway is a ``UserError`` naming the extra.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from supernet.errors import UserError

if TYPE_CHECKING:  # Lightning is imported when a logger is made: `pareto` plots without it
    from pytorch_lightning.loggers import Logger

LOGGER_KINDS = ("auto", "wandb", "csv", "tensorboard", "none")
DEFAULT_LOGGER = "auto"
WANDB_INSTALL = "pip install 'supernet[wandb]'"
PLOTS_INSTALL = "pip install 'supernet[plots]'"
TENSORBOARD_INSTALL = "pip install tensorboard"


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _say_csv_fallback(save_dir: Path) -> None:
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        csv = save_dir / "csv" / "metrics.csv"
        print(
            f"supernet: wandb is not installed, so this run logs to {csv} (`{WANDB_INSTALL}` for W&B)",
            file=sys.stderr,
        )


def make_logger(kind: str, save_dir: str | Path, name: str, project: str = "supernet") -> Logger | bool:
    """A Lightning logger of ``kind`` (``auto`` | ``wandb`` | ``csv`` | ``tensorboard`` | ``none``)
    writing under ``save_dir``.

    Returns ``False`` for ``none`` (what ``Trainer(logger=...)`` takes to disable logging).
    ``WANDB_MODE`` is set to ``offline`` unless the user already set it.
    """
    if kind not in LOGGER_KINDS:
        raise UserError(f"unknown logger {kind!r}; choose one of {', '.join(LOGGER_KINDS)}")
    save_dir = Path(save_dir)
    if kind == "none":
        return False
    if kind == "tensorboard":
        if not installed("tensorboard"):
            raise UserError(
                f"--logger tensorboard needs tensorboard: `{TENSORBOARD_INSTALL}`, or choose --logger csv"
            )
        from pytorch_lightning.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(save_dir), name="tensorboard", version="")
    if kind in ("auto", "wandb"):
        if installed("wandb"):
            from pytorch_lightning.loggers import WandbLogger

            os.environ.setdefault("WANDB_MODE", "offline")
            save_dir.mkdir(parents=True, exist_ok=True)
            return WandbLogger(project=project, name=name, save_dir=str(save_dir))
        if kind == "wandb":
            raise UserError(f"--logger wandb needs wandb: `{WANDB_INSTALL}`, or choose --logger csv")
        _say_csv_fallback(save_dir)
    from supernet.csv_logger import ResumableCSVLogger  # keeps a resumed run's rows

    return ResumableCSVLogger(save_dir=str(save_dir), name="csv", version="")


def finish_loggers(loggers: list[Logger]) -> None:
    """End the W&B run of a finished command, so the next command in the same process (the demo
    runs search and two retrains in one) starts its own run instead of appending to this one."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            import wandb

            wandb.finish()


def can_plot(what: str) -> bool:
    """Whether matplotlib is installed; if not, says in one line that ``what`` is skipped."""
    if installed("matplotlib"):
        return True
    print(
        f"supernet: {what} skipped: matplotlib is not installed (`{PLOTS_INSTALL}` draws it)", file=sys.stderr
    )
    return False


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files, no display); a UserError naming the extra
    when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError as err:
        raise UserError(f"plots need matplotlib: `{PLOTS_INSTALL}`") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
