"""Known answer: a task that needs a receptive field of +-4 frames, which among TDNN k{3,5} x d{1,2}
only tdnn-k5-d2 has. Every search method must put its highest probability on it."""

import pytest
import torch
from torch import nn

import ops
from supernet.search.arch_params import ArchParams
from supernet.search.mixed_op import MixedOp
from supernet.search.relaxations import build

CANDIDATES = ["tdnn-k3-d1", "tdnn-k3-d2", "tdnn-k5-d1", "tdnn-k5-d2"]
ANSWER = "tdnn-k5-d2"


def toy_batch(gen, batch=16, frames=40, dim=8):
    x = torch.randn(batch, frames, dim, generator=gen)
    shifted_back = torch.nn.functional.pad(x, (0, 0, 4, 0))[:, :frames]  # x[t-4]
    shifted_fwd = torch.nn.functional.pad(x, (0, 0, 0, 4))[:, 4:]  # x[t+4]
    y = (shifted_back + shifted_fwd).sum(-1, keepdim=True)
    return x, torch.full((batch,), frames), y


@pytest.mark.parametrize(
    "method,hard,ahead",
    [("darts", False, False), ("gumbel", False, False), ("gumbel", True, False), ("st", False, False)]
    + [("st", False, True)],  # st with sample_ahead: paths drawn from the alphas one update old
)
def test_every_method_finds_the_wide_receptive_field(method, hard, ahead):
    torch.manual_seed(0)
    dim = 8
    edge = MixedOp("e", [ops.build(c, dim, 32, dropout=0.0) for c in CANDIDATES], CANDIDATES)
    readout = nn.Linear(32, 1)
    arch = ArchParams({"e": CANDIDATES}, seed=0)
    weight_opt = torch.optim.Adam([*edge.parameters(), *readout.parameters()], lr=3e-3)
    arch_opt = torch.optim.Adam(arch.parameters(), lr=0.05, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(1)

    def loss_on(batch):
        x, lengths, y = batch
        h, _ = edge(x, lengths)
        return ((readout(h) - y) ** 2).mean()

    options = {"gumbel": {"hard": hard, "tau_start": 2.0, "tau_end": 0.3}, "st": {"sample_ahead": ahead}}
    relaxation, warmup = build(method, options.get(method)), build("uniform")
    for step in range(150):
        relaxation.schedule(step / 150)  # gumbel's temperature, annealed per step here
        probs = relaxation.host_probs(arch) if step >= 30 else None
        edge.plan = (warmup if step < 30 else relaxation).plan(arch, "weight", 2 * step, probs)["e"]
        weight_opt.zero_grad()
        loss_on(toy_batch(gen)).backward()
        weight_opt.step()
        if step >= 30:
            edge.plan = relaxation.plan(arch, "arch", 2 * step + 1, probs)["e"]
            arch_opt.zero_grad()
            (grad,) = torch.autograd.grad(loss_on(toy_batch(gen)), [arch.alphas["e"]])
            arch.alphas["e"].grad = grad
            arch_opt.step()
            relaxation.after_arch_update(arch, arch.flat())
    probs = arch.probs()["e"].detach()
    assert CANDIDATES[int(probs.argmax())] == ANSWER, dict(zip(CANDIDATES, probs.tolist()))
