"""The Triton CTC against PyTorch's, run on the CPU through Triton's interpreter.

The interpreter is chosen when a kernel is defined, so the comparison runs in a child process
started with ``TRITON_INTERPRET=1``; on a GPU machine the same script runs the compiled kernels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]

COMPARE = r"""
import json, sys, torch
import torch.nn.functional as F
from supernet.accel.ctc_triton import ctc_nll

device = sys.argv[1]
torch.manual_seed(0)
cases = {
    # name: (frames, vocab, input lengths, target lengths, repeated labels, blank, index dtype)
    "unequal_lengths": (13, 6, [13, 9, 7, 1], [4, 3, 0, 1], False, 0, torch.long),
    "repeats_need_blanks": (10, 4, [10, 7, 5], [5, 3, 3], True, 0, torch.long),
    "infeasible": (6, 4, [6, 3], [4, 3], True, 0, torch.long),
    "blank_last": (9, 5, [9, 8], [3, 4], False, 4, torch.long),
    "int32_one_utterance": (40, 7, [40], [12], False, 0, torch.int32),
    "states_fill_the_block": (64, 9, [64, 50], [15, 16], True, 0, torch.long),  # 2U+1 = 31, 33
    "long": (70, 9, [70, 64, 33], [32, 17, 9], False, 0, torch.long),
}
report = {}
for name, (frames, vocab, inputs, labels, repeat, blank, index) in cases.items():
    batch, width = len(inputs), max(labels + [1])
    logits = torch.randn(batch, frames, vocab, dtype=torch.float64).float().to(device).requires_grad_()
    symbols = [c for c in range(vocab) if c != blank]
    targets = torch.tensor(symbols)[torch.randint(len(symbols), (batch, width))]
    if repeat:
        targets[:, 1::2] = targets[:, 0::2][:, : targets[:, 1::2].shape[1]]
    targets = targets.to(device, index)
    inputs_t = torch.tensor(inputs, device=device, dtype=index)
    labels_t = torch.tensor(labels, device=device, dtype=index)
    weights = torch.rand(batch, device=device)

    expected = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1).cpu(), targets.cpu(), inputs_t.cpu(),
                          labels_t.cpu(), blank=blank, reduction="none", zero_infinity=True)
    (grad_expected,) = torch.autograd.grad((expected * weights.cpu()).sum(), logits)
    ours = ctc_nll(logits.log_softmax(-1), targets, inputs_t, labels_t, blank=blank)
    finite = torch.where(torch.isinf(ours), torch.zeros_like(ours), ours)
    (grad_ours,) = torch.autograd.grad((finite * weights).sum(), logits)
    report[name] = {
        "expected": expected.tolist(),
        "ours": ours.tolist(),
        "grad_error": (grad_ours.cpu() - grad_expected.cpu()).abs().max().item(),
        "grad_scale": grad_expected.abs().max().item(),
    }

# lengths as strided views, and lengths past the tensors' sizes (NaN: PyTorch's CTC raises)
log_probs = torch.randn(3, 20, 5, device=device).log_softmax(-1)
targets = torch.randint(1, 5, (3, 4), device=device)
lengths = torch.tensor([[20, 0], [15, 0], [11, 0]], device=device)
labels = torch.tensor([[4, 0], [2, 0], [3, 0]], device=device)
view = ctc_nll(log_probs, targets, lengths[:, 0], labels[:, 0])
copy = ctc_nll(log_probs, targets, lengths[:, 0].contiguous(), labels[:, 0].contiguous())
report["strided_lengths_equal_contiguous"] = torch.equal(view, copy)
bad = ctc_nll(log_probs, targets, torch.tensor([21, 15, 11], device=device), torch.tensor([4, 5, 3], device=device))
report["out_of_range_is_nan"] = [v != v for v in bad.tolist()]
print(json.dumps(report))
"""


def _compare(device: str, interpret: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", COMPARE, device],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check(report: dict) -> None:
    assert report.pop("strided_lengths_equal_contiguous")
    assert report.pop("out_of_range_is_nan") == [True, True, False]  # 21 > 20 frames, 5 > 4 labels
    for name, case in report.items():
        for expected, ours in zip(case["expected"], case["ours"]):
            if expected == 0.0:  # PyTorch's zero_infinity: no alignment fits
                assert ours == float("inf"), (name, case)
            else:
                assert abs(ours - expected) <= 1e-4 * max(1.0, abs(expected)), (name, case)
        assert case["grad_error"] <= 1e-5 * max(1.0, case["grad_scale"]), (name, case)
    assert report["infeasible"]["ours"][1] == float("inf")  # 3 frames cannot hold "a a b"


def test_triton_ctc_matches_pytorch_in_the_interpreter():
    _check(_compare("cpu", interpret=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_triton_ctc_matches_pytorch_on_the_gpu():
    _check(_compare("cuda", interpret=False))


def test_implementation_choice():
    from losses.ctc import use_triton

    assert not use_triton("auto", torch.device("cpu"))
    assert not use_triton("torch", torch.device("cuda"))
    with pytest.raises(ValueError, match="runs on CUDA"):
        use_triton("triton", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown CTC implementation 'cudnn'"):
        use_triton("cudnn", torch.device("cuda"))
    torch.use_deterministic_algorithms(True)
    try:  # the kernels add with atomics: PyTorch's CTC then decides
        assert not use_triton("auto", torch.device("cuda"))
    finally:
        torch.use_deterministic_algorithms(False)


def test_auto_picks_the_triton_ctc_where_it_is_registered(monkeypatch):
    import supernet.accel.ctc_triton  # noqa: F401  (registers "triton" with losses.ctc)
    from losses import ctc

    cuda = torch.device("cuda")
    assert ctc.use_triton("auto", cuda)
    monkeypatch.delitem(ctc._REGISTERED, "triton")
    assert not ctc.use_triton("auto", cuda) and ctc.use_triton("triton", cuda)
