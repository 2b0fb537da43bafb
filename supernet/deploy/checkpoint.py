"""A retrain checkpoint loaded for inference, with one-line errors for the wrong kind of file."""

from __future__ import annotations

from pathlib import Path

from supernet.asr_module import ASRModule
from supernet.errors import UserError


def load_module(checkpoint: str | Path) -> ASRModule:
    """The ``ASRModule`` of a ``supernet retrain`` checkpoint, on the CPU, in eval mode."""
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
