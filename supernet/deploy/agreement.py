"""How far two sets of transcripts are apart where references may be empty (jiwer refuses those):
the int8 model's greedy texts against the fp32 model's, on any audio, speech or not."""

from __future__ import annotations

from torchaudio.functional import edit_distance


def char_error_rate(refs: list[str], hyps: list[str]) -> float | None:
    """Character edits over reference characters; 0 for two empty sets, None when only the
    references are empty (undefined)."""
    edits = sum(edit_distance(r, h) for r, h in zip(refs, hyps, strict=True))
    chars = sum(len(r) for r in refs)
    if not chars:
        return 0.0 if edits == 0 else None
    return edits / chars
