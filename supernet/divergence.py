"""Finding the first value of a run that stopped being finite, without syncing every step.

On a GPU the training steps never wait for the device (see ``supernet.search.module``): checking
every loss on the host would make the host wait once per step. Instead ``FiniteWatch`` keeps each
step's values (detached losses; in a search the alphas' gradient and values after each update)
as the device tensors they already are, and reads all of them in one copy where the host reads
anyway: at the steps whose logs are written, at an epoch's last batch, before an evaluation. The
first value that is not finite, in the order the steps made them, tells what diverged first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

# Records kept before a read is forced (one device-to-host copy): with logs written every few
# steps this is never reached; it bounds the memory of a run that logs rarely.
MAX_PENDING = 1000


@dataclass(frozen=True)
class Finding:
    """The first value that is not finite: what it was, where in it, and when."""

    kind: str  # the name it was recorded under, e.g. "train loss", "alpha gradient"
    step: int
    epoch: int
    value: float  # nan, inf or -inf
    part: str | None = None  # the segment it lies in (an edge's name), if the record had segments

    @property
    def value_name(self) -> str:
        return "NaN" if math.isnan(self.value) else ("+inf" if self.value > 0 else "-inf")


class FiniteWatch:
    """Device values recorded step by step, checked together on request.

    ``record`` costs no device work and no host wait; ``first_nonfinite`` reads every value
    recorded since the last read in one copy and forgets them.
    """

    def __init__(self) -> None:
        # (kind, step, epoch, values, segments: [(name, size)] or None)
        self._pending: list[tuple[str, int, int, torch.Tensor, list[tuple[str, int]] | None]] = []

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= MAX_PENDING

    def record(
        self,
        kind: str,
        values: torch.Tensor,
        step: int,
        epoch: int,
        segments: list[tuple[str, int]] | None = None,
    ) -> None:
        """Keep ``values`` (not copied: the caller must not write into them later)."""
        self._pending.append((kind, int(step), int(epoch), values.detach(), segments))

    def forget(self) -> None:
        self._pending = []

    def first_nonfinite(self) -> Finding | None:
        """The earliest recorded value that is NaN or infinite, or None; forgets the records."""
        pending, self._pending = self._pending, []
        if not pending:
            return None
        flats = [values.reshape(-1) for _, _, _, values, _ in pending]
        host = torch.cat([f if f.dtype == torch.float32 else f.float() for f in flats]).cpu()
        finite = torch.isfinite(host)
        if bool(finite.all()):
            return None
        first = int((~finite).nonzero()[0])
        offset = 0
        for (kind, step, epoch, _, segments), flat in zip(pending, flats):
            if first < offset + flat.numel():
                index = first - offset
                return Finding(kind, step, epoch, float(host[first]), _segment_of(segments, index))
            offset += flat.numel()
        raise AssertionError("unreachable: the non-finite index lies in some record")


def _segment_of(segments: list[tuple[str, int]] | None, index: int) -> str | None:
    if segments is None:
        return None
    start = 0
    for name, size in segments:
        if index < start + size:
            return name
        start += size
    return None


def nonfinite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """The names of the tensors that hold a NaN or an infinity, in the order given.

    One fused L1 norm over all of them and one copy to the host: a sum is NaN or infinite when any
    element is (IEEE addition propagates both, whatever the reduction order). A finite tensor whose
    norm overflows is then told apart by an exact check of that tensor alone.
    """
    named = [(name, t.detach()) for name, t in named if t.is_floating_point()]
    if not named:
        return []
    tensors = [t for _, t in named]
    norms = torch._foreach_norm(tensors, 1)
    finite = torch.isfinite(torch.stack([n.float().to(norms[0].device) for n in norms])).cpu().tolist()
    return [
        name
        for (name, t), ok in zip(named, finite)
        if not ok and not bool(torch.isfinite(t).all())  # the exact check: suspects only
    ]
