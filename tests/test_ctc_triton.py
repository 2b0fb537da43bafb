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
from losses.ctc_triton import ctc_nll

device = sys.argv[1]
torch.manual_seed(0)
cases = {
    # name: (frames, vocab, input lengths, target lengths, repeated labels, blank)
    "unequal_lengths": (13, 6, [13, 9, 7, 1], [4, 3, 0, 1], False, 0),
    "repeats_need_blanks": (10, 4, [10, 7, 5], [5, 3, 3], True, 0),
    "infeasible": (6, 4, [6, 3], [4, 3], True, 0),
    "blank_last": (9, 5, [9, 8], [3, 4], False, 4),
    "long": (70, 9, [70, 64, 33], [20, 17, 9], False, 0),
}
report = {}
for name, (frames, vocab, inputs, labels, repeat, blank) in cases.items():
    batch, width = len(inputs), max(labels + [1])
    logits = torch.randn(batch, frames, vocab, dtype=torch.float64).float().to(device).requires_grad_()
    symbols = [c for c in range(vocab) if c != blank]
    targets = torch.tensor(symbols)[torch.randint(len(symbols), (batch, width))]
    if repeat:
        targets[:, 1::2] = targets[:, 0::2][:, : targets[:, 1::2].shape[1]]
    targets = targets.to(device)
    inputs_t = torch.tensor(inputs, device=device)
    labels_t = torch.tensor(labels, device=device)
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
