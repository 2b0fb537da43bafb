"""Does the exported model compute what the checkpoint computes? fp32 onnxruntime against PyTorch
on the same inputs: the largest absolute log-probability difference over valid frames, and whether
greedy decoding gives the same texts.

Padded frames (past ``out_lengths``) are left out: they are zero-masked before the log-softmax,
so they hold a uniform distribution in both, but nothing reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from supernet.data.tokenizer import CharTokenizer
from supernet.decoding import greedy_ctc_ids

TOLERANCE = 1e-4  # max |log p_onnx - log p_torch| accepted on valid frames


@dataclass
class Parity:
    max_abs_diff: float
    valid_frames: int
    utterances: int
    same_lengths: bool
    same_transcripts: bool
    torch_texts: list[str]
    onnx_texts: list[str]
    tolerance: float = TOLERANCE

    @property
    def ok(self) -> bool:
        return self.same_lengths and self.same_transcripts and self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        verdict = "reached" if self.max_abs_diff <= self.tolerance else "NOT reached"
        texts = "identical" if self.same_transcripts else "DIFFERENT"
        return (
            f"max abs diff {self.max_abs_diff:.2e} of log-probs over {self.valid_frames} valid frames "
            f"of {self.utterances} utterances (target <= {self.tolerance:.0e}: {verdict}); "
            f"greedy transcripts {texts}"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "summary": self.summary()}


def as_if_trained(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """An untrained ``ASRModule`` that a parity check can fail on: BatchNorm statistics other than
    the identity's (as after training), and a confident head that rarely picks blank, so that
    texts differ when the numbers do. For checks of random networks (tests, scripts)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2, generator=generator)
            m.running_var.uniform_(0.5, 2.0, generator=generator)
    head = module.net.head
    proj = head.proj if hasattr(head, "proj") else head.op.proj  # linear, or norm-linear
    with torch.no_grad():
        proj.weight.mul_(4.0)
        proj.bias[0] -= 2.0
    return module


def max_valid_diff(a: np.ndarray, b: np.ndarray, lengths: np.ndarray) -> tuple[float, int]:
    """``max |a - b|`` over frames ``t < lengths[b]`` of ``(B, T, V)`` arrays, and how many frames."""
    valid = np.arange(a.shape[1])[None, :] < lengths[:, None]
    if not valid.any():
        return 0.0, 0
    return float(np.abs(a - b)[valid].max()), int(valid.sum())


def check_parity(
    session,
    model: nn.Module,
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    tokenizer: CharTokenizer,
    tolerance: float = TOLERANCE,
) -> Parity:
    """Run ``model`` (the module that was exported) and ``session`` (its ONNX model in
    onnxruntime) on ``(inputs, lengths)`` and compare."""
    with torch.no_grad():
        ref_lp, ref_len = (t.numpy() for t in model(inputs, lengths))
    names = [i.name for i in session.get_inputs()]
    onnx_lp, onnx_len = session.run(None, {names[0]: inputs.numpy(), names[1]: lengths.numpy()})
    same_lengths = onnx_lp.shape == ref_lp.shape and np.array_equal(onnx_len, ref_len)
    diff, frames = max_valid_diff(onnx_lp, ref_lp, ref_len) if same_lengths else (float("inf"), 0)
    torch_texts, onnx_texts = texts(ref_lp, ref_len, tokenizer), texts(onnx_lp, onnx_len, tokenizer)
    return Parity(
        max_abs_diff=diff,
        valid_frames=frames,
        utterances=len(ref_len),
        same_lengths=same_lengths,
        same_transcripts=torch_texts == onnx_texts,
        torch_texts=torch_texts,
        onnx_texts=onnx_texts,
        tolerance=tolerance,
    )


def texts(log_probs: np.ndarray, lengths: np.ndarray, tokenizer: CharTokenizer) -> list[str]:
    ids = greedy_ctc_ids(torch.from_numpy(log_probs), torch.from_numpy(lengths))
    return [tokenizer.decode(row) for row in ids]
