"""All architecture parameters (alphas) in one place.

Keeping every alpha in one module gives one optimizer group that the weight optimizer never sees,
one place to read probabilities and entropy from, and one sampler. The sampler draws from a
generator seeded by ``(seed, step)`` alone, so that every DDP rank draws the same path at the same
step and a resumed search draws what the uninterrupted one would have drawn.
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
        init = torch.Generator().manual_seed(self.seed)
        self.alphas = nn.ParameterDict(
            {
                name: nn.Parameter(init_std * torch.randn(len(cands), generator=init))
                for name, cands in self.labels.items()
            }
        )

    @property
    def names(self) -> list[str]:
        return list(self.labels)

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
        return {name: int(alpha.detach().argmax()) for name, alpha in self.alphas.items()}

    def argmax_labels(self) -> dict[str, str]:
        return {name: self.labels[name][i] for name, i in self.argmax().items()}

    def generator(self, step: int) -> torch.Generator:
        """A CPU generator that depends on (seed, step) only: identical on every rank."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + int(step) * 7_919 + 12_345) % (2**63))

    def sample(self, step: int, uniform: bool = False) -> dict[str, int]:
        """One candidate per edge, from the alphas' softmax (or uniformly)."""
        gen = self.generator(step)
        choices = {}
        for name, alpha in self.alphas.items():
            p = (
                torch.ones_like(alpha, device="cpu")
                if uniform
                else torch.softmax(alpha.detach().float().cpu(), -1)
            )
            choices[name] = int(torch.multinomial(p, 1, generator=gen))
        return choices

    def gumbel_noise(self, step: int) -> dict[str, torch.Tensor]:
        """Gumbel(0, 1) noise per edge, drawn from the same (seed, step) generator."""
        gen = self.generator(step)
        noise = {}
        for name, alpha in self.alphas.items():
            u = torch.rand(alpha.shape, generator=gen).clamp_(1e-10, 1 - 1e-10)
            noise[name] = (-torch.log(-torch.log(u))).to(alpha.device)
        return noise

    def table(self) -> list[dict]:
        """Rows of (edge, candidate, probability) for logging."""
        rows = []
        for name, p in self.probs().items():
            for label, value in zip(self.labels[name], p.detach().cpu().tolist()):
                rows.append({"edge": name, "candidate": label, "prob": value})
        return rows
