"""CTC loss on batch-first log-probabilities, computed in float32.

Reduction: each utterance's negative log-likelihood is divided by its target length and the
results are averaged over the batch (PyTorch's ``reduction="mean"``). Dividing by the target
length keeps long and short utterances on one scale, so the learning rate does not depend on
the corpus' utterance lengths. Infinite losses (an output shorter than its target can need)
are zeroed (``zero_infinity``) rather than poisoning the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BLANK = 0


def ctc_loss(
    log_probs: torch.Tensor,
    out_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = BLANK,
    host_lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
    host_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over the batch of per-utterance CTC loss / target length.

    ``log_probs`` is ``(B, T, V)`` (log-softmax over V); ``targets`` is ``(B, U)`` padded with
    anything past ``target_lengths``. The sum over CTC paths runs in float32 even under bf16
    autocast: bf16's 8-bit mantissa loses the small differences of large log-likelihoods.

    ``host_lengths``: the same ``(out_lengths, target_lengths)`` as CPU tensors. PyTorch's CUDA CTC
    needs the lengths on the host; given device tensors it copies them back, and every such copy
    makes the host wait for the GPU to finish all queued work (16 waits per loss measured on an
    H200). The per-utterance division uses the device ``target_lengths``: no copy either way.

    ``host_labels`` (with ``host_lengths``): the targets concatenated, int32, on the CPU. On a GPU
    the loss then runs in cuDNN (``_cudnn_ctc``) when cuDNN can take the batch; PyTorch's own CUDA
    CTC copies the host lengths to the device with blocking copies, 5 host waits per loss.
    """
    if log_probs.dim() != 3:
        raise ValueError(f"ctc_loss expects log_probs of shape (B, T, V), got {tuple(log_probs.shape)}")
    if (
        host_lengths is not None
        and host_labels is not None
        and log_probs.is_cuda
        and blank == 0
        and torch.backends.cudnn.enabled
        and cudnn_can_take(*host_lengths, host_labels)
    ):
        nll = _cudnn_ctc(log_probs, out_lengths, host_labels, host_lengths[1])
        return (nll / target_lengths.to(nll.dtype).clamp(min=1)).mean()
    input_lengths, label_lengths = (out_lengths, target_lengths) if host_lengths is None else host_lengths
    with torch.autocast(device_type=log_probs.device.type, enabled=False):
        nll = F.ctc_loss(
            log_probs.float().transpose(0, 1),
            targets.long(),
            input_lengths.long(),
            label_lengths.long(),
            blank=blank,
            reduction="none",
            zero_infinity=True,
        )
        return (nll / target_lengths.to(nll.dtype).clamp(min=1)).mean()


def cudnn_can_take(out_lengths: torch.Tensor, target_lengths: torch.Tensor, labels: torch.Tensor) -> bool:
    """cuDNN's CTC takes labels shorter than 256 and, here, only feasible utterances: each output
    must have room for its labels plus a blank between repeated ones (infeasible utterances go to
    PyTorch's CTC, which zeroes their infinite loss). Host tensors only: no device read."""
    if len(target_lengths) == 0 or int(target_lengths.max()) >= 256:
        return False
    labels = labels.long()
    repeat = torch.zeros(len(labels), dtype=torch.long)
    repeat[1:] = (labels[1:] == labels[:-1]).long()
    starts = torch.cumsum(target_lengths, 0) - target_lengths
    repeat[starts[target_lengths > 0]] = 0  # an utterance's first label repeats nothing
    owner = torch.repeat_interleave(torch.arange(len(target_lengths)), target_lengths)
    repeats = torch.zeros(len(target_lengths), dtype=torch.long).index_add_(0, owner, repeat)
    return bool((target_lengths + repeats <= out_lengths).all())


def blank_padded(log_probs: torch.Tensor, out_lengths: torch.Tensor) -> torch.Tensor:
    """``log_probs`` (float32) with every frame past an utterance's length made a certain blank.

    CTC over the padded frames then equals CTC over the real ones: every alignment of an
    utterance extends in exactly one way (blanks to the end) with probability 1, and no other
    extension has any. So every utterance can be given the full length ``T``, as cuDNN requires.
    """
    B, T, V = log_probs.shape
    valid = torch.arange(T, device=log_probs.device) < out_lengths[:, None]
    certain_blank = torch.full((V,), -1e4, dtype=torch.float32, device=log_probs.device)
    certain_blank[BLANK] = 0.0
    return torch.where(valid[..., None], log_probs.float(), certain_blank)


def _cudnn_ctc(
    log_probs: torch.Tensor, out_lengths: torch.Tensor, labels: torch.Tensor, target_lengths: torch.Tensor
) -> torch.Tensor:
    """Per-utterance CTC in cuDNN: blank-padded to one length, labels and lengths from the host."""
    B, T, _ = log_probs.shape
    with torch.autocast(device_type=log_probs.device.type, enabled=False):
        return F.ctc_loss(
            blank_padded(log_probs, out_lengths).transpose(0, 1),
            labels.int(),
            [T] * B,
            target_lengths.tolist(),
            blank=BLANK,
            reduction="none",
            zero_infinity=True,
        )


class CTCLoss(nn.Module):
    """Module form of :func:`ctc_loss`, for configs that name a loss class."""

    def __init__(self, blank: int = BLANK) -> None:
        super().__init__()
        self.blank = blank

    def forward(self, log_probs, out_lengths, targets, target_lengths) -> torch.Tensor:
        return ctc_loss(log_probs, out_lengths, targets, target_lengths, blank=self.blank)
