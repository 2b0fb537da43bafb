"""Search methods as plans: how each edge combines its candidates in one forward pass.

A relaxation turns the alphas into one ``EdgePlan`` per edge for a given step and phase
(``"weight"`` or ``"arch"``). Switching from DARTS to SNAS to ST-NAS changes only this function,
never the edges or the network (the NNI idea of injecting the softmax).
"""

from __future__ import annotations

import torch

from supernet.search.arch_params import ArchParams
from supernet.search.mixed_op import EdgePlan

METHODS = ("darts", "gumbel", "st", "uniform")


def make_plan(
    arch: ArchParams,
    method: str,
    phase: str,
    step: int,
    tau: float = 1.0,
    hard: bool = False,
    host_probs: dict[str, torch.Tensor] | None = None,
) -> dict[str, EdgePlan]:
    """Plans for every edge. ``phase`` is "weight" (alphas frozen) or "arch" (alphas learn).

    ``host_probs`` (``ArchParams.host_probs()``): st samples from these instead of reading the
    alphas again, so that a step's two paths cost one read of the alphas.
    """
    if method not in METHODS:
        raise ValueError(f"unknown search method {method!r}; choose one of {', '.join(METHODS)}")
    if phase not in ("weight", "arch"):
        raise ValueError(f"unknown phase {phase!r}; use 'weight' or 'arch'")
    track = phase == "arch"

    if method == "uniform":
        return {n: EdgePlan("single", index=i) for n, i in arch.sample(step, uniform=True).items()}

    if method == "darts":
        plans = {}
        for name, p in arch.probs().items():
            plans[name] = EdgePlan("sum", weights=p if track else p.detach())
        return plans

    if method == "gumbel":
        noise = arch.gumbel_noise(step)
        softs = {}
        for name, alpha in arch.alphas.items():
            soft = torch.softmax((alpha + noise[name]) / tau, dim=-1)
            softs[name] = soft if track else soft.detach()
        if not hard:
            return {name: EdgePlan("sum", weights=soft) for name, soft in softs.items()}
        # GDAS: run one candidate, straight-through one-hot weight; every edge's argmax in one copy
        indices = torch.stack([soft.detach().argmax() for soft in softs.values()]).tolist()
        plans = {}
        for (name, soft), index in zip(softs.items(), indices):
            one_hot = torch.zeros_like(soft)
            one_hot[index] = 1.0  # a fill on the device: no host-to-device copy
            plans[name] = EdgePlan("single", weights=one_hot - soft.detach() + soft, index=index)
        return plans

    # st: sample a path from the alphas; the arch phase adds the straight-through gradient.
    choices = arch.sample(step, probs=host_probs)
    if not track:
        return {n: EdgePlan("single", index=i) for n, i in choices.items()}
    probs = arch.probs()
    return {n: EdgePlan("st", index=i, probs=probs[n]) for n, i in choices.items()}
