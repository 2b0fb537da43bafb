"""CTC: the blank padding that lets cuDNN take a batch of unequal lengths, the host-side check of
what cuDNN can take, and (on a GPU) cuDNN's loss and gradient against PyTorch's own CTC."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from losses.ctc import blank_padded, ctc_loss, cudnn_can_take


def batch(seed: int = 0, device: str = "cpu"):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 30, 7, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    out_lengths = torch.tensor([30, 22, 9, 15])
    target_lengths = torch.tensor([8, 5, 3, 0])
    targets = torch.randint(1, 7, (4, 8), generator=gen)
    labels = torch.cat([t[:n] for t, n in zip(targets, target_lengths)]).int()
    return logits, out_lengths, targets, target_lengths, labels


def test_blank_padding_leaves_loss_and_gradients_unchanged():
    logits, out_lengths, targets, target_lengths, _ = batch()
    log_probs = logits.log_softmax(-1)
    plain = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths, reduction="none")
    (g_plain,) = torch.autograd.grad(plain.sum(), logits)
    padded_lp = blank_padded(logits.log_softmax(-1), out_lengths).double()
    full = torch.full_like(out_lengths, logits.shape[1])
    padded = F.ctc_loss(padded_lp.transpose(0, 1), targets, full, target_lengths, reduction="none")
    (g_padded,) = torch.autograd.grad(padded.sum(), logits)
    torch.testing.assert_close(padded, plain.to(padded.dtype), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_padded, g_plain, rtol=1e-5, atol=1e-5)
    past = torch.arange(logits.shape[1])[None, :] >= out_lengths[:, None]
    assert g_padded[past].abs().max() == 0  # the padded frames give the network no gradient


def test_cudnn_can_take_counts_repeats_within_utterances_only():
    # "aab" needs 4 frames (a blank between the two a's); "b" then "b" across utterances is no repeat
    labels = torch.tensor([1, 1, 2, 2], dtype=torch.int32)
    assert cudnn_can_take(torch.tensor([4, 1]), torch.tensor([3, 1]), labels)
    assert not cudnn_can_take(torch.tensor([3, 1]), torch.tensor([3, 1]), labels)
    assert cudnn_can_take(torch.tensor([4, 5, 1]), torch.tensor([3, 0, 1]), labels)  # an empty target
    long = torch.ones(256, dtype=torch.int32) * torch.arange(256, dtype=torch.int32) % 5 + 1
    assert not cudnn_can_take(torch.tensor([600]), torch.tensor([256]), long)  # cuDNN's label limit


@pytest.mark.skipif(not torch.cuda.is_available(), reason="cuDNN's CTC needs a GPU")
def test_cudnn_ctc_matches_pytorch_ctc_on_a_gpu():
    logits, out_lengths, targets, target_lengths, labels = batch(device="cuda")
    logits = logits.float().detach().requires_grad_()
    log_probs = logits.log_softmax(-1)
    host = (out_lengths, target_lengths)
    device_lengths = (out_lengths.cuda(), targets.cuda(), target_lengths.cuda())
    native = ctc_loss(log_probs, device_lengths[0], device_lengths[1], device_lengths[2], host_lengths=host)
    (g_native,) = torch.autograd.grad(native, logits)
    log_probs = logits.log_softmax(-1)
    cudnn = ctc_loss(
        log_probs,
        device_lengths[0],
        device_lengths[1],
        device_lengths[2],
        host_lengths=host,
        host_labels=labels,
    )
    (g_cudnn,) = torch.autograd.grad(cudnn, logits)
    torch.testing.assert_close(cudnn, native, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_cudnn, g_native, rtol=1e-3, atol=1e-5)
