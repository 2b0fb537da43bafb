"""CTC negative log-likelihood as two Triton kernels that never make the host wait.

Why: PyTorch's CUDA CTC copies lengths and offsets between host and device inside every call,
and each copy waits for all queued GPU work (9 waits per loss and gradient, given host lengths,
measured on an H200 by ``scripts/bench_ctc.py``). A search step is short enough at batch 32 that these waits leave the
GPU idle while the host catches up. Here every length stays on the device: the state count comes
from the padded target width, and each utterance's own lengths are read inside the kernel.

One program per utterance runs the alpha recursion over time (forward) and the beta recursion
(backward), with the 2U+1 CTC states spread over the program's threads. The alphas are kept for
the backward: ``B x T x next_pow2(2U+1)`` float32, 9 MB at batch 32 x 267 frames x 120 labels.

Lengths past the tensors' sizes give a NaN loss (PyTorch's CTC raises; raising here would need
the host to read the lengths). Each padded length (rounded up to 32 frames) and label width
(rounded up to a power of two) compiles its own kernel once, cached on disk by Triton. The
gradient adds with atomics, so it is not bitwise deterministic: under
``torch.use_deterministic_algorithms`` ``losses.ctc`` uses PyTorch's CTC instead.

Importing this module registers it with ``losses.ctc`` as the ``"triton"`` implementation, which
``implementation="auto"`` then picks on CUDA.

The gradient returned is the exact derivative of the NLL with respect to ``log_probs``, minus the
occupation probabilities. PyTorch's CTC returns ``exp(log_probs)`` minus the same, a difference
that vanishes through the log-softmax before it; both give the same gradient on the logits.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from losses.ctc import register_implementation


@triton.jit
def _labels(targets_ptr, s, S, U):
    """Per state ``s``: its label (blank for even states), and whether the state two back may be
    skipped to reach it (a label that differs from the previous label)."""
    is_label = (s % 2 == 1) & (s < S)
    k = (s - 1) // 2
    label = tl.load(targets_ptr + k, mask=is_label & (k < U), other=0)
    previous = tl.load(targets_ptr + k - 1, mask=is_label & (s >= 3), other=-1)
    return label, is_label, is_label & (s >= 3) & (label != previous)


@triton.jit
def _lengths(input_lengths_ptr, target_lengths_ptr, b, T, U):
    """Utterance ``b``'s frame and label counts, clamped to the tensors' sizes so that no access
    leaves them, and whether they were in range."""
    n_frames = tl.load(input_lengths_ptr + b).to(tl.int32)
    n_labels = tl.load(target_lengths_ptr + b).to(tl.int32)
    in_range = (n_frames >= 0) & (n_frames <= T) & (n_labels >= 0) & (n_labels <= U)
    n_frames = tl.minimum(tl.maximum(n_frames, 0), T)
    n_labels = tl.minimum(tl.maximum(n_labels, 0), U)
    return n_frames, n_labels, in_range


@triton.jit
def _logsumexp3(a, b, c):
    m = tl.maximum(tl.maximum(a, b), c)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    return m_safe + tl.log(tl.exp(a - m_safe) + tl.exp(b - m_safe) + tl.exp(c - m_safe))


@triton.jit
def _utterance(
    b,
    log_probs_ptr,
    targets_ptr,
    input_lengths_ptr,
    target_lengths_ptr,
    alpha_ptr,
    T,
    U,
    stride_lb,
    stride_tb,
    blank,
    BLOCK_S: tl.constexpr,
    T_LOOP: tl.constexpr,
):
    """What both kernels know of utterance ``b``: its frame count, state count, the valid states,
    each state's symbol, its row of log-probs and of alphas, and whether its lengths fit."""
    s = tl.arange(0, BLOCK_S)
    n_frames, n_labels, in_range = _lengths(input_lengths_ptr, target_lengths_ptr, b, T, U)
    S = 2 * n_labels + 1
    label, is_label, _ = _labels(targets_ptr + b * stride_tb, s, S, U)
    symbol = tl.where(is_label, label, blank)
    lp_row = log_probs_ptr + b * stride_lb
    alpha_row = alpha_ptr + b * T_LOOP * BLOCK_S
    return s, n_frames, S, s < S, symbol, lp_row, alpha_row, in_range


# both kernels take these arguments first, in this order (``_shared_arguments`` builds them)
@triton.jit
def _ctc_forward_kernel(
    log_probs_ptr, targets_ptr, input_lengths_ptr, target_lengths_ptr, alpha_ptr, nll_ptr,
    T, U, stride_lb, stride_lt, stride_tb, blank, BLOCK_S: tl.constexpr, T_LOOP: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    s, n_frames, S, valid, symbol, lp_row, alpha_row, in_range = _utterance(
        b, log_probs_ptr, targets_ptr, input_lengths_ptr, target_lengths_ptr, alpha_ptr,
        T, U, stride_lb, stride_tb, blank, BLOCK_S, T_LOOP,
    )  # fmt: skip
    _, _, can_skip = _labels(targets_ptr + b * stride_tb, s, S, U)
    neg_inf = float("-inf")

    alpha = tl.load(lp_row + symbol, mask=valid & (s < 2), other=neg_inf).to(tl.float32)
    tl.store(alpha_row + s, alpha)
    for t in range(1, T_LOOP):  # frames past this utterance's own leave alpha as it is
        tl.debug_barrier()
        previous = alpha_row + (t - 1) * BLOCK_S
        one_back = tl.load(previous + s - 1, mask=(s >= 1), other=neg_inf)
        two_back = tl.load(previous + s - 2, mask=can_skip, other=neg_inf)
        emit = tl.load(lp_row + t * stride_lt + symbol, mask=valid & (t < n_frames), other=neg_inf)
        advanced = tl.where(valid, _logsumexp3(alpha, one_back, two_back) + emit, neg_inf)
        alpha = tl.where(t < n_frames, advanced, alpha)
        tl.store(alpha_row + t * BLOCK_S + s, alpha)

    last = tl.max(tl.where(s == S - 1, alpha, neg_inf), axis=0)
    before_last = tl.max(tl.where(s == S - 2, alpha, neg_inf), axis=0)
    log_likelihood = _logsumexp3(last, before_last, neg_inf)
    log_likelihood = tl.where(n_frames > 0, log_likelihood, neg_inf)
    # lengths past the tensors' sizes: NaN, which zero_infinity does not hide (PyTorch raises)
    tl.store(nll_ptr + b, tl.where(in_range, -log_likelihood, float("nan")))


@triton.jit
def _ctc_backward_kernel(
    log_probs_ptr, targets_ptr, input_lengths_ptr, target_lengths_ptr, alpha_ptr, nll_ptr,
    T, U, stride_lb, stride_lt, stride_tb, blank,
    grad_nll_ptr, beta_ptr, grad_ptr, stride_gb, stride_gt, BLOCK_S: tl.constexpr, T_LOOP: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    s, n_frames, S, valid, symbol, lp_row, alpha_row, _ = _utterance(
        b, log_probs_ptr, targets_ptr, input_lengths_ptr, target_lengths_ptr, alpha_ptr,
        T, U, stride_lb, stride_tb, blank, BLOCK_S, T_LOOP,
    )  # fmt: skip
    # the transition s -> s + 2 is allowed when state s + 2 may skip back to s
    _, _, skip_from_here = _labels(targets_ptr + b * stride_tb, s + 2, S, U)
    nll = tl.load(nll_ptr + b)
    beta_row = beta_ptr + b * BLOCK_S * 2  # two alternating rows: the beta of t + 1 and of t
    grad_row = grad_ptr + b * stride_gb
    scale = -tl.load(grad_nll_ptr + b).to(tl.float32)
    neg_inf = float("-inf")

    beta = tl.full((BLOCK_S,), neg_inf, tl.float32)
    for step in range(0, T_LOOP):
        t = T_LOOP - 1 - step
        tl.debug_barrier()
        following = beta_row + ((t + 1) % 2) * BLOCK_S
        one_ahead = tl.load(following + s + 1, mask=(s + 1 < S), other=neg_inf)
        two_ahead = tl.load(following + s + 2, mask=skip_from_here, other=neg_inf)
        emit = tl.load(lp_row + t * stride_lt + symbol, mask=valid & (t < n_frames), other=neg_inf)
        # the last frame starts in one of the two final states; earlier frames step back from t + 1
        start = tl.where(s >= S - 2, emit, neg_inf)
        beta = tl.where(t == n_frames - 1, start, _logsumexp3(beta, one_ahead, two_ahead) + emit)
        beta = tl.where(valid & (t < n_frames), beta, neg_inf)
        tl.store(beta_row + (t % 2) * BLOCK_S + s, beta)
        alpha = tl.load(alpha_row + t * BLOCK_S + s)
        occupancy = tl.exp(alpha + beta - emit + nll)
        # no state of an infeasible utterance (nll = inf) lies on a full path: no gradient
        live = valid & (t < n_frames) & (alpha + beta > neg_inf)
        tl.atomic_add(grad_row + t * stride_gt + symbol, tl.where(live, occupancy, 0.0) * scale, mask=live)


def _shared_arguments(log_probs, targets, input_lengths, target_lengths, alpha, nll, blank) -> tuple:
    return (
        log_probs, targets, input_lengths, target_lengths, alpha, nll,
        log_probs.shape[1], targets.shape[1], log_probs.stride(0), log_probs.stride(1), targets.stride(0), blank,
    )  # fmt: skip


def _launch_options(frames: int, block: int) -> dict:
    return {"BLOCK_S": block, "T_LOOP": _loop_length(frames), "num_warps": _warps(block)}


def _block_size(max_labels: int) -> int:
    return max(32, triton.next_power_of_2(2 * max_labels + 1))


class TritonCTC(torch.autograd.Function):
    """Per-utterance CTC NLL (``inf`` where no alignment fits) from ``(B, T, V)`` log-probs."""

    @staticmethod
    def forward(ctx, log_probs, targets, input_lengths, target_lengths, blank: int):
        log_probs, targets = log_probs.contiguous(), targets.contiguous()
        input_lengths, target_lengths = input_lengths.contiguous(), target_lengths.contiguous()
        batch, frames, _ = log_probs.shape
        block = _block_size(targets.shape[1])
        alpha = torch.empty(batch, _loop_length(frames), block, device=log_probs.device, dtype=torch.float32)
        nll = torch.empty(batch, device=log_probs.device, dtype=torch.float32)
        shared = _shared_arguments(log_probs, targets, input_lengths, target_lengths, alpha, nll, blank)
        _ctc_forward_kernel[(batch,)](*shared, **_launch_options(frames, block))
        ctx.save_for_backward(log_probs, targets, input_lengths, target_lengths, alpha, nll)
        ctx.blank = blank
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        log_probs, targets, input_lengths, target_lengths, alpha, nll = ctx.saved_tensors
        batch, frames, _ = log_probs.shape
        block = alpha.shape[2]
        grad = torch.zeros_like(log_probs, dtype=torch.float32)
        beta = torch.empty(batch, 2, block, device=log_probs.device, dtype=torch.float32)
        shared = _shared_arguments(log_probs, targets, input_lengths, target_lengths, alpha, nll, ctx.blank)
        _ctc_backward_kernel[(batch,)](
            *shared, grad_nll.contiguous(), beta, grad, grad.stride(0), grad.stride(1),
            **_launch_options(frames, block),
        )  # fmt: skip
        return grad.to(log_probs.dtype), None, None, None, None


def _loop_length(frames: int) -> int:
    """Frames rounded up to a multiple of 32, a compile-time loop bound: one kernel per 32 frames
    of padded length rather than one per length (Triton's interpreter, used by the tests on CPU,
    cannot loop to a runtime bound with NumPy 2.4)."""
    return -(-frames // 32) * 32


def _warps(block: int) -> int:
    return max(1, min(8, block // 64))


def ctc_nll(log_probs, targets, input_lengths, target_lengths, blank: int = 0) -> torch.Tensor:
    """Per-utterance CTC negative log-likelihood; ``inf`` where the frames cannot fit the labels.

    ``log_probs`` ``(B, T, V)``; ``targets`` ``(B, U)`` padded; both length tensors on the same
    device as ``log_probs``. Nothing is read back to the host.
    """
    return TritonCTC.apply(log_probs, targets, input_lengths, target_lengths, blank)


def _zeroed_nll(
    log_probs, targets, out_lengths, target_lengths, blank: int, host_lengths=None
) -> torch.Tensor:
    """``ctc_nll`` with ``inf`` (no alignment fits) zeroed, as ``losses.ctc`` wants it; the host
    lengths are not needed."""
    nll = ctc_nll(log_probs, targets, out_lengths, target_lengths, blank=blank)
    return torch.where(torch.isinf(nll), torch.zeros_like(nll), nll)


register_implementation("triton", _zeroed_nll)
