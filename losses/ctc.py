"""CTC loss on batch-first log-probabilities, computed in float32.

Reduction: each utterance's negative log-likelihood is divided by its target length and the
results are averaged over the batch (PyTorch's ``reduction="mean"``). Dividing by the target
length keeps long and short utterances on one scale, so the learning rate does not depend on
the corpus' utterance lengths. Infinite losses (an output shorter than its target can need)
are zeroed (``zero_infinity``) rather than poisoning the batch.

Implementations: ``"torch"`` (PyTorch's, built in) and ``"triton"``, two Triton kernels that read
every length on the device, which ``supernet.accel.ctc_triton`` registers here when imported (the
recipe, ``supernet.asr_module``, imports it on a GPU). PyTorch's CUDA CTC makes the host wait for
the GPU 9 times per loss and gradient, even given host lengths (``scripts/bench_ctc.py`` on an
H200). ``"auto"`` picks Triton's on CUDA where it is registered, else PyTorch's (the CPU's).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

BLANK = 0
IMPLEMENTATIONS = ("auto", "triton", "torch")

# per-utterance NLL, zeroed where no alignment fits: (log_probs (B, T, V) float32, targets,
# out_lengths, target_lengths, blank, host_lengths or None) -> (B,)
NLL = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, tuple | None], torch.Tensor]


def _torch_nll(log_probs, targets, out_lengths, target_lengths, blank, host_lengths) -> torch.Tensor:
    input_lengths, label_lengths = (out_lengths, target_lengths) if host_lengths is None else host_lengths
    return F.ctc_loss(
        log_probs.transpose(0, 1),
        targets.long(),
        input_lengths.long(),
        label_lengths.long(),
        blank=blank,
        reduction="none",
        zero_infinity=True,
    )


_REGISTERED: dict[str, NLL] = {"torch": _torch_nll}


def register_implementation(name: str, nll: NLL) -> None:
    """Make ``nll`` the CTC implementation ``name`` (``supernet.accel.ctc_triton``: ``"triton"``)."""
    if name not in IMPLEMENTATIONS or name == "auto":
        raise ValueError(f"unknown CTC implementation {name!r}; choose one of {IMPLEMENTATIONS[1:]}")
    _REGISTERED[name] = nll


def use_triton(implementation: str, device: torch.device) -> bool:
    """Whether :func:`ctc_loss` runs the Triton kernels (and needs no host lengths)."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown CTC implementation {implementation!r}; choose one of {IMPLEMENTATIONS}")
    if implementation == "triton":
        if device.type != "cuda":
            raise ValueError(f"the Triton CTC runs on CUDA tensors, got {device.type}")
        return True
    if implementation == "torch" or device.type != "cuda" or torch.are_deterministic_algorithms_enabled():
        return False  # the kernels' gradient adds with atomics: not bitwise deterministic
    return "triton" in _REGISTERED


def ctc_loss(
    log_probs: torch.Tensor,
    out_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = BLANK,
    host_lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
    implementation: str = "auto",
) -> torch.Tensor:
    """Mean over the batch of per-utterance CTC loss / target length.

    ``log_probs`` is ``(B, T, V)`` (log-softmax over V); ``targets`` is ``(B, U)`` padded with
    anything past ``target_lengths``. The sum over CTC paths runs in float32 even under bf16
    autocast: bf16's 8-bit mantissa loses the small differences of large log-likelihoods.

    ``host_lengths``: the same ``(out_lengths, target_lengths)`` as CPU tensors. PyTorch's CUDA CTC
    needs the lengths on the host; given device tensors it copies them back, and every such copy
    makes the host wait for the GPU to finish all queued work (16 waits per loss measured on an
    H200). The per-utterance division uses the device ``target_lengths``: no copy either way. The
    Triton implementation (``implementation="auto"`` on CUDA) needs no host lengths at all.
    """
    if log_probs.dim() != 3:
        raise ValueError(f"ctc_loss expects log_probs of shape (B, T, V), got {tuple(log_probs.shape)}")
    name = "triton" if use_triton(implementation, log_probs.device) else "torch"
    if name not in _REGISTERED:
        raise ValueError(
            "the Triton CTC is not registered: import supernet.accel.ctc_triton first (it needs the "
            "triton package)"
        )
    with torch.autocast(device_type=log_probs.device.type, enabled=False):
        nll = _REGISTERED[name](log_probs.float(), targets, out_lengths, target_lengths, blank, host_lengths)
        return (nll / target_lengths.to(nll.dtype).clamp(min=1)).mean()


class CTCLoss(nn.Module):
    """Module form of :func:`ctc_loss`, for configs that name a loss class."""

    def __init__(self, blank: int = BLANK) -> None:
        super().__init__()
        self.blank = blank

    def forward(self, log_probs, out_lengths, targets, target_lengths) -> torch.Tensor:
        return ctc_loss(log_probs, out_lengths, targets, target_lengths, blank=self.blank)
