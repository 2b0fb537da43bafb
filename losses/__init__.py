"""ASR losses (CTC) and, later, the architecture-search penalties."""

from losses.ctc import BLANK, CTCLoss, ctc_loss

__all__ = ["BLANK", "CTCLoss", "ctc_loss"]
