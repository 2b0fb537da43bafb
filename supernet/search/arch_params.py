"""All architecture parameters (alphas) in one place.

Keeping every alpha in one module gives one optimizer group that the weight optimizer never sees,
one place to read probabilities and entropy from, and one sampler. The sampler draws from a
generator seeded by ``(seed, step)`` alone, so that every DDP rank draws the same path at the same
step and a resumed search draws what the uninterrupted one would have drawn.

The alphas start at ``init_std`` times noise from the seed (zeros by default); that start is made
again from ``(seed, init_std)`` when asked (``initial``), so a search reloaded from its checkpoint
can still tell whether its alphas ever moved (``moved``) without storing the start.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ArchParams(nn.Module):
    """One logit vector per searchable edge, in the order of the space."""

    def __init__(self, edges: dict[str, list[str]], seed: int = 0, init_std: float = 0.0):
        super().__init__()
        if not edges:
            raise ValueError("ArchParams needs at least one searchable edge")
        self.labels: dict[str, list[str]] = {name: list(cands) for name, cands in edges.items()}
        self.seed = int(seed)
        self.init_std = float(init_std)
        self.alphas = nn.ParameterDict({name: nn.Parameter(a) for name, a in self.initial().items()})
        # (alpha versions, host copy, copy-done event) after each of the last two updates: see prefetch
        self._copies: list[tuple] = []

    @property
    def names(self) -> list[str]:
        return list(self.labels)

    def initial(self) -> dict[str, torch.Tensor]:
        """The alphas every search with this seed and ``init_std`` starts from (on the CPU)."""
        init = torch.Generator().manual_seed(self.seed)
        return {
            name: self.init_std * torch.randn(len(cands), generator=init)
            for name, cands in self.labels.items()
        }

    def moved(self, atol: float = 1e-6) -> bool:
        """Whether any alpha differs from its start by more than ``atol``. False after a search
        with arch_lr 0, a uniform one, or one whose search stage never ran: its argmax is then a
        tie-break, not a search result. One copy to the host."""
        start = torch.cat([a.reshape(-1) for a in self.initial().values()]).double()
        now = self.flat().cpu().double()
        return bool(((now - start).abs() > atol).any()) or not bool(torch.isfinite(now).all())

    def nonfinite_edges(self) -> list[str]:
        """The edges whose alphas hold a NaN or an infinity (one copy to the host)."""
        sizes = [alpha.numel() for alpha in self.alphas.values()]
        finite = torch.isfinite(self.flat().cpu())
        return [name for name, ok in zip(self.alphas, finite.split(sizes)) if not bool(ok.all())]

    def probs(self) -> dict[str, torch.Tensor]:
        return {name: torch.softmax(alpha, dim=-1) for name, alpha in self.alphas.items()}

    def entropy(self) -> dict[str, float]:
        """Per-edge entropy in nats; log(K) means undecided, 0 means one candidate."""
        out = {}
        for name, p in self.probs().items():
            p = p.detach()
            out[name] = float(-(p * p.clamp_min(1e-12).log()).sum())
        return out

    def mean_normalised_entropy(self) -> float:
        ent = self.entropy()
        return sum(ent[n] / math.log(len(self.labels[n])) for n in ent) / len(ent)

    def argmax(self) -> dict[str, int]:
        """Each edge's top candidate; every index comes to the host in one copy (one sync)."""
        indices = torch.stack([alpha.detach().argmax() for alpha in self.alphas.values()]).tolist()
        return dict(zip(self.alphas, indices))

    def argmax_labels(self) -> dict[str, str]:
        return {name: self.labels[name][i] for name, i in self.argmax().items()}

    def generator(self, step: int) -> torch.Generator:
        """A CPU generator that depends on (seed, step) only: identical on every rank."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + int(step) * 7_919 + 12_345) % (2**63))

    def host_probs(self) -> dict[str, torch.Tensor]:
        """Every edge's softmax(alpha) on the CPU, from ONE device-to-host copy of all the alphas.

        A blocking copy to the host waits for the whole device queue to drain. One copy of the
        concatenated alphas instead of one per edge keeps it to one wait, and after ``prefetch``
        (called right after the alphas change) the copy is already under way: the host then waits
        only for the alpha update, not for the work queued behind it. A prefetched copy is used only
        while no alpha has changed since (parameter versions), so it can never be stale.
        """
        latest = self._copies[-1] if self._copies else None
        if latest is not None and latest[0] == self._versions():
            return self._softmax(_finished(latest))
        return self._softmax(self.flat().cpu())

    def lagged_host_probs(self) -> dict[str, torch.Tensor]:
        """``host_probs`` of the alphas as they were before their latest update (the same as now
        before any update): that copy was started a whole step ago and is done, so the host does not
        wait for the device at all, and on several ranks it does not wait for the other ranks' last
        alpha all-reduce either (``SearchModule(sample_ahead=True)``)."""
        if not self._copies:  # no update seen yet: the alphas as they are now, read once
            flat = self.flat()
            self._copies = [((), flat.cpu() if flat.is_cuda else flat.clone(), None)]
        return self._softmax(_finished(self._copies[-2] if len(self._copies) > 1 else self._copies[0]))

    def prefetch(self, flat: torch.Tensor | None = None) -> None:
        """Start copying the alphas to the host without waiting (pinned memory on a GPU); call it
        after every update. The last two copies are kept (see ``lagged_host_probs``). ``flat``:
        the alphas already concatenated (``flat()``), which the caller must not change."""
        flat = self.flat() if flat is None else flat
        if flat.is_cuda:
            host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
            host.copy_(flat, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        else:
            host, done = flat.clone(), None
        self._copies = [*self._copies[-1:], (self._versions(), host, done)]

    def host_copies(self) -> list[torch.Tensor]:
        """The kept host copies, oldest first (what a checkpoint needs to resume lagged sampling)."""
        return [_finished(copy) for copy in self._copies]

    def restore_host_copies(self, copies: list[torch.Tensor]) -> None:
        """Put back ``host_copies`` from a checkpoint (the versions are unknown: lagged use only)."""
        self._copies = [((-1,), flat.clone(), None) for flat in copies[-2:]]

    def forget_host_copies(self) -> None:
        """After alphas were loaded: the kept copies describe other alphas."""
        self._copies = []

    def _softmax(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        sizes = [alpha.numel() for alpha in self.alphas.values()]
        return {name: torch.softmax(a, -1) for name, a in zip(self.alphas, flat.split(sizes))}

    def flat(self) -> torch.Tensor:
        """Every alpha, concatenated in edge order (float32, detached; a new tensor)."""
        return torch.cat([alpha.detach().float().reshape(-1) for alpha in self.alphas.values()])

    def segments(self) -> list[tuple[str, int]]:
        """``(edge, number of candidates)`` in the order of ``flat``."""
        return [(name, alpha.numel()) for name, alpha in self.alphas.items()]

    def _versions(self) -> tuple[int, ...]:
        return tuple(alpha._version for alpha in self.alphas.values())

    def sample(
        self, step: int, uniform: bool = False, probs: dict[str, torch.Tensor] | None = None
    ) -> dict[str, int]:
        """One candidate per edge, from the alphas' softmax (or uniformly, or from ``probs``: host
        probabilities already read by ``host_probs``); uniform never syncs."""
        # one uniform draw per edge, inverted through the edge's cumulative probabilities: one
        # generator call a step instead of one ``torch.multinomial`` per edge (~40 us each)
        draws = torch.rand(len(self.labels), generator=self.generator(step), dtype=torch.float64).tolist()
        if uniform:
            return {
                name: min(int(u * len(cands)), len(cands) - 1)
                for (name, cands), u in zip(self.labels.items(), draws)
            }
        if probs is None:
            probs = self.host_probs()
        return {name: _inverse_cdf(p.tolist(), u, name) for (name, p), u in zip(probs.items(), draws)}

    def fair_sample(self, step: int) -> dict[str, int]:
        """FairNAS's strict fairness (Chu et al. 2021): steps come in rounds of as many steps as the
        widest edge has candidates; in a round each edge walks a seeded permutation of its
        candidates (a narrower edge repeats its own), so every candidate trains as often as the
        others of its edge. Depends on (seed, step) only, as ``sample``."""
        width = max(len(cands) for cands in self.labels.values())
        round_, position = divmod(int(step), width)
        gen = torch.Generator().manual_seed(self.generator(round_).initial_seed() ^ 0x5F3759DF)
        return {
            name: torch.randperm(len(cands), generator=gen)[position % len(cands)].item()
            for name, cands in self.labels.items()
        }

    def gumbel_noise(self, step: int) -> dict[str, torch.Tensor]:
        """Gumbel(0, 1) noise per edge, drawn from the same (seed, step) generator in one draw and
        sent to the device in one copy."""
        gen = self.generator(step)
        sizes = [alpha.numel() for alpha in self.alphas.values()]
        u = torch.rand(sum(sizes), generator=gen).clamp_(1e-10, 1 - 1e-10)
        device = next(iter(self.alphas.values())).device
        noise = (-torch.log(-torch.log(u))).to(device, non_blocking=True)
        return {
            name: part.view_as(alpha) for (name, alpha), part in zip(self.alphas.items(), noise.split(sizes))
        }

    def table(self) -> list[dict]:
        """Rows of (edge, candidate, probability) for logging."""
        rows = []
        for name, p in self.probs().items():
            for label, value in zip(self.labels[name], p.detach().cpu().tolist()):
                rows.append({"edge": name, "candidate": label, "prob": value})
        return rows


class NotADistributionError(ValueError):
    """The sampler was given probabilities that are no distribution. Softmax turns finite alphas
    into a distribution, so from the alphas this means they are NaN or infinite, whatever made them
    so: ``SearchModule`` names the cause (the alphas' own step or the weights' loss)."""

    def __init__(self, edge: str, weights: list[float]):
        self.edge, self.weights = edge, weights
        super().__init__(
            f"edge {edge!r}: cannot sample from probabilities {weights}: not a distribution "
            "(NaN, infinite, negative or all zero)"
        )


def _inverse_cdf(weights: list[float], u: float, edge: str = "") -> int:
    """The index ``i`` where ``u`` in [0, 1) falls among the cumulative ``weights`` (any positive
    scale); an index of weight 0 is never drawn. Weights that are not a distribution (NaN,
    negative, all zero) raise ``NotADistributionError``, as ``torch.multinomial`` raised."""
    whole = sum(weights)
    if not math.isfinite(whole) or whole <= 0 or min(weights) < 0:
        raise NotADistributionError(edge, weights)
    target, total, last = u * whole, 0.0, 0
    for i, w in enumerate(weights):
        if w > 0:
            total, last = total + w, i
            if total > target:
                return i
    return last  # rounding left the target at the very top


def _finished(copy: tuple) -> torch.Tensor:
    """A kept host copy, once its device-to-host transfer is done."""
    _, host, done = copy
    if done is not None:
        done.synchronize()
    return host
