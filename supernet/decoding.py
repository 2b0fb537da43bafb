"""Greedy (best-path) CTC decoding.

Best path is what the training metrics need: fast, batched and dependency-free. A beam search
with a lexicon or LM (torchaudio's ``ctc_decoder``) needs the optional ``flashlight-text``
extra (``pip install supernet[decoder]``) and is not used here.
"""

from __future__ import annotations

import torch

from losses.ctc import BLANK


def greedy_ctc_ids(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = BLANK) -> list[list[int]]:
    """Arg-max per frame, merge repeats, drop blanks; frames past ``lengths`` are ignored.

    ``log_probs`` is ``(B, T, V)``; returns one list of token ids per utterance.
    """
    best = log_probs.argmax(dim=-1)  # (B, T)
    time = torch.arange(best.size(1), device=best.device)
    inside = time[None, :] < lengths.to(best.device)[:, None]
    changed = torch.ones_like(inside)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = inside & changed & (best != blank)
    best, keep = best.cpu(), keep.cpu()
    return [row[mask].tolist() for row, mask in zip(best, keep)]


def greedy_ctc_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer, blank: int = BLANK
) -> list[str]:
    """Best-path transcripts as text, through ``tokenizer.decode``."""
    return [tokenizer.decode(ids) for ids in greedy_ctc_ids(log_probs, lengths, blank)]
