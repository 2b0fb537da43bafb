"""A retrain checkpoint loaded for inference, with one-line errors for the wrong kind of file, and
the global CMVN statistics it was trained with (kept by the data module, not the network)."""

from __future__ import annotations

from pathlib import Path

import torch

from supernet.asr_module import ASRModule
from supernet.data import datamodule
from supernet.data.features import GlobalCMVN
from supernet.errors import UserError


def checkpoint_cmvn(checkpoint: str | Path) -> GlobalCMVN | None:
    """The global CMVN statistics the checkpoint file was trained with (``--data.normalisation
    global``), or None for a model trained with per-utterance statistics. A module loaded by
    ``load_module`` has them already, as ``cmvn``."""
    return datamodule.checkpoint_cmvn(torch.load(checkpoint, map_location="cpu", weights_only=False))


def load_module(checkpoint: str | Path) -> ASRModule:
    """The ``ASRModule`` of a ``supernet retrain`` checkpoint, on the CPU, in eval mode; its
    ``cmvn`` is the global statistics it was trained with, or None (per-utterance normalisation)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found")
    try:
        module = ASRModule.load_from_checkpoint(checkpoint, map_location="cpu")
    except UserError:
        raise
    except Exception as err:  # a search checkpoint, another library's, or not a checkpoint at all
        raise UserError(
            f"{checkpoint}: not a `supernet retrain` checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    return module.eval()
