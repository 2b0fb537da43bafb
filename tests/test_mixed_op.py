"""Known-answer checks of the relaxations on a toy edge."""

import pytest
import torch
from torch import nn

from supernet.search.arch_params import ArchParams
from supernet.search.mixed_op import MixedOp
from supernet.search.relaxations import make_plan


class CountingLinear(nn.Module):
    """A toy op that counts how often it runs."""

    stride, lookahead, streamable, parameter_free = 1, 0, True, False

    def __init__(self, dim, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(dim, dim).double()
        self.calls = 0

    def forward(self, x, lengths):
        self.calls += 1
        return torch.tanh(self.lin(x)), lengths


def make_edge(k=4, dim=5):
    cands = [CountingLinear(dim, seed) for seed in range(k)]
    edge = MixedOp("e0", cands, [f"c{i}" for i in range(k)])
    arch = ArchParams({"e0": edge.labels}, seed=3, init_std=0.5).double()
    x = torch.randn(2, 7, dim, dtype=torch.float64)
    lengths = torch.tensor([7, 5])
    return edge, arch, x, lengths


def test_darts_forward_is_weighted_sum():
    edge, arch, x, lengths = make_edge()
    edge.plan = make_plan(arch, "darts", "arch", step=0)["e0"]
    y, _ = edge(x, lengths)
    p = torch.softmax(arch.alphas["e0"], -1)
    expected = sum(p[k] * c(x, lengths)[0] for k, c in enumerate(edge.candidates))
    torch.testing.assert_close(y, expected)


def test_st_forward_is_sampled_op_exactly_and_weight_step_runs_only_it():
    edge, arch, x, lengths = make_edge()
    plan = make_plan(arch, "st", "weight", step=11)["e0"]
    edge.plan = plan
    y, _ = edge(x, lengths)
    y.sum().backward()
    calls = [c.calls for c in edge.candidates]
    assert calls[plan.index] == 1 and sum(calls) == 1, calls
    assert torch.equal(y, edge.candidates[plan.index](x, lengths)[0])
    assert arch.alphas["e0"].grad is None
    unsampled = [c for k, c in enumerate(edge.candidates) if k != plan.index]
    assert all(p.grad is None for c in unsampled for p in c.parameters())


def test_st_alpha_gradient_equals_eq10_by_hand():
    edge, arch, x, lengths = make_edge()
    target = torch.randn(2, 7, 5, dtype=torch.float64)
    plan = make_plan(arch, "st", "arch", step=5)["e0"]
    edge.plan = plan
    y, _ = edge(x, lengths)
    torch.testing.assert_close(y, edge.candidates[plan.index](x, lengths)[0])
    loss = ((y - target) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, [arch.alphas["e0"]])

    # Eq. 10: dL/dalpha_j = sum_k <dL/dy, o_k(x)> p_k (delta_kj - p_j)
    with torch.no_grad():
        outs = [c(x, lengths)[0] for c in edge.candidates]
        g = 2 * (outs[plan.index] - target)
        scores = torch.stack([(g * o).sum() for o in outs])
        p = torch.softmax(arch.alphas["e0"], -1)
        jacobian = torch.diag(p) - torch.outer(p, p)
        expected = jacobian @ scores
    torch.testing.assert_close(grad, expected)


class DroppedLinear(CountingLinear):
    """A toy op with dropout, as the real ops have."""

    def __init__(self, dim, seed):
        super().__init__(dim, seed)
        self.drop = nn.Dropout(0.5)

    def forward(self, x, lengths):
        y, lengths = super().forward(x, lengths)
        return self.drop(y), lengths


def test_st_recomputes_unsampled_candidates_without_dropout():
    """Eq. 10 with dropout: the sampled candidate's score uses the output the forward produced (its
    dropout mask); the others' are their dropout-free outputs (the same expectation, lower variance),
    and every dropout module is back in training mode afterwards."""
    cands = [DroppedLinear(5, seed) for seed in range(3)]
    edge = MixedOp("e0", cands, ["a", "b", "c"]).train()
    arch = ArchParams({"e0": edge.labels}, seed=3, init_std=0.5).double()
    x, lengths = torch.randn(2, 7, 5, dtype=torch.float64), torch.tensor([7, 5])
    plan = make_plan(arch, "st", "arch", step=5)["e0"]
    edge.plan = plan
    y, _ = edge(x, lengths)
    target = torch.randn_like(y)
    (grad,) = torch.autograd.grad(((y - target) ** 2).sum(), [arch.alphas["e0"]])
    assert all(c.drop.training for c in cands)

    with torch.no_grad():
        g = 2 * (y - target)
        edge.eval()
        outs = [y if k == plan.index else c(x, lengths)[0] for k, c in enumerate(cands)]
        p = torch.softmax(arch.alphas["e0"], -1)
        expected = (torch.diag(p) - torch.outer(p, p)) @ torch.stack([(g * o).sum() for o in outs])
    torch.testing.assert_close(grad, expected)
    assert not torch.equal(y, cands[plan.index](x, lengths)[0])  # the forward did drop


def test_gumbel_hard_runs_one_candidate_and_soft_mixes_all():
    edge, arch, x, lengths = make_edge()
    edge.plan = make_plan(arch, "gumbel", "arch", step=2, tau_start=0.5, hard=True)["e0"]
    y, _ = edge(x, lengths)
    assert sum(c.calls for c in edge.candidates) == 1
    (grad,) = torch.autograd.grad(y.sum(), [arch.alphas["e0"]])
    assert grad.abs().sum() > 0
    edge.plan = make_plan(arch, "gumbel", "arch", step=2, tau_start=0.5, hard=False)["e0"]
    edge(x, lengths)
    assert all(c.calls >= 1 for c in edge.candidates) and sum(c.calls for c in edge.candidates) == 5


def test_sampling_depends_on_seed_and_step_only():
    a = ArchParams({"e0": list("abcd"), "e1": list("abc")}, seed=7, init_std=1.0)
    b = ArchParams({"e0": list("abcd"), "e1": list("abc")}, seed=7, init_std=1.0)
    torch.randn(100)  # the global RNG must not matter
    assert [a.sample(s) for s in range(20)] == [b.sample(s) for s in range(20)]
    assert len({tuple(a.sample(s).values()) for s in range(20)}) > 1


def test_sampling_follows_the_probabilities():
    """Frequencies over 4000 steps match softmax(alpha) within 4 standard errors; a candidate of
    probability 0 is never drawn; uniform sampling reaches every candidate about equally."""
    arch = ArchParams({"e0": list("abcd"), "e1": list("abc")}, seed=3)
    with torch.no_grad():
        arch.alphas["e0"].copy_(torch.tensor([0.0, 1.0, 2.0, -1.0]))
    probs = {"e0": torch.softmax(arch.alphas["e0"].detach(), -1), "e1": torch.tensor([0.7, 0.0, 0.3])}
    n = 4000
    draws = [arch.sample(s, probs=probs) for s in range(n)]
    for name, p in probs.items():
        counts = torch.bincount(torch.tensor([d[name] for d in draws]), minlength=len(p)).double()
        err = (p.double() * (1 - p.double()) / n).sqrt()
        assert ((counts / n - p.double()).abs() <= 4 * err + 1e-12).all(), (name, counts / n, p)
    assert all(d["e1"] != 1 for d in draws)
    uniform = torch.tensor([arch.sample(s, uniform=True)["e0"] for s in range(n)])
    assert (torch.bincount(uniform, minlength=4).double() / n - 0.25).abs().max() < 0.03


@pytest.mark.parametrize("bad", [[float("nan"), 0.5, 0.5], [0.0, 0.0, 0.0], [-0.1, 0.6, 0.5]])
def test_sampling_from_probabilities_that_are_no_distribution_names_the_edge(bad):
    arch = ArchParams({"e0": list("abc")}, seed=0)
    with pytest.raises(ValueError, match="edge 'e0'"):
        arch.sample(0, probs={"e0": torch.tensor(bad)})


def test_prefetched_alphas_are_used_only_while_current():
    """host_probs after prefetch == a fresh read; an optimizer step after the prefetch makes the
    prefetched copy stale, and it must not be used (a stale path would silently differ per rank)."""
    arch = ArchParams({"e0": list("abcd"), "e1": list("abc")}, seed=1, init_std=1.0)
    opt = torch.optim.Adam(arch.parameters(), lr=0.5, foreach=True)

    def fresh():
        return {n: torch.softmax(a.detach(), -1) for n, a in arch.alphas.items()}

    arch.prefetch()
    for name, p in arch.host_probs().items():
        torch.testing.assert_close(p, fresh()[name])
    arch.prefetch()
    before = fresh()
    (arch.alphas["e0"][0] + arch.alphas["e1"][1]).backward()  # not a shift: the softmax changes
    opt.step()
    after = arch.host_probs()
    assert not torch.allclose(after["e0"], before["e0"])
    for name, p in after.items():
        torch.testing.assert_close(p, fresh()[name])
    assert arch.sample(3, probs=arch.host_probs()) == arch.sample(3)


def test_lagged_probs_are_the_alphas_before_the_latest_update_and_survive_a_checkpoint():
    """sample_ahead reads the alphas one update old: before any update, the alphas as they are;
    after update n, those after update n-1. The kept copies go through a checkpoint."""
    arch = ArchParams({"e0": list("abcd"), "e1": list("abc")}, seed=1, init_std=1.0)
    opt = torch.optim.Adam(arch.parameters(), lr=0.5)

    def now():
        return {n: torch.softmax(a.detach().clone(), -1) for n, a in arch.alphas.items()}

    def update(i):
        (arch.alphas["e0"][i % 4] + arch.alphas["e1"][i % 3]).backward()
        opt.step()
        opt.zero_grad()
        arch.prefetch()

    history = [now()]
    first = arch.lagged_host_probs()
    for i in range(4):
        update(i)
        history.append(now())
        lagged = arch.lagged_host_probs()
        for name in lagged:
            torch.testing.assert_close(lagged[name], history[-2][name])
            assert not torch.allclose(lagged[name], history[-1][name])
    for name in first:
        torch.testing.assert_close(first[name], history[0][name])

    saved = arch.host_copies()
    arch.forget_host_copies()  # what loading a state dict does
    arch.restore_host_copies(saved)
    update(5)
    for name, p in arch.lagged_host_probs().items():
        torch.testing.assert_close(p, history[-1][name])


def test_st_recompute_turns_off_attention_dropout_and_keeps_batchnorm_statistics():
    """The recomputed candidates run without attention dropout (fused into the attention call, not
    an nn.Dropout) and do not train their BatchNorm running statistics (they did not run)."""
    import ops
    from supernet.search.mixed_op import DROPOUTS

    torch.manual_seed(0)
    specs = ["skip", "transformer-f2-abs", "tdnn-k3-d1"]
    cands = [ops.build(s, 8, 8, dropout=0.5) for s in specs]
    edge = MixedOp("e0", cands, specs).double().train()
    arch = ArchParams({"e0": specs}, seed=0).double()
    with torch.no_grad():
        arch.alphas["e0"][:] = torch.tensor([0.5, 0.0, 0.0])
    step = next(s for s in range(100) if make_plan(arch, "st", "arch", step=s)["e0"].index == 0)
    edge.plan = make_plan(arch, "st", "arch", step=step)["e0"]  # skip runs; the others are recomputed
    x, lengths = torch.randn(2, 9, 8, dtype=torch.float64), torch.tensor([9, 6])
    bn = cands[2].norm.norm
    before = bn.running_mean.clone()
    y, _ = edge(x, lengths)
    target = torch.randn_like(y)
    (grad,) = torch.autograd.grad(((y - target) ** 2).sum(), [arch.alphas["e0"]])
    assert torch.equal(bn.running_mean, before)

    with torch.no_grad():
        for m in edge.modules():
            if isinstance(m, DROPOUTS):
                m.training = False
        bn.momentum = 0.0
        outs = [y] + [c(x, lengths)[0] for c in cands[1:]]
        g = 2 * (y - target)
        p = torch.softmax(arch.alphas["e0"], -1)
        expected = (torch.diag(p) - torch.outer(p, p)) @ torch.stack([(g * o).sum() for o in outs])
    torch.testing.assert_close(grad, expected)
    assert grad.abs().max() > 1e-3  # not a degenerate (one-hot) distribution


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the bf16 GEMM score runs on a GPU")
def test_bf16_scores_on_a_gpu_are_float32_accurate():
    from supernet.search.mixed_op import _score

    torch.manual_seed(0)
    base = torch.randn(8, 200, 64, device="cuda")
    g = (base + 0.01 * torch.randn_like(base)).bfloat16()
    outs = [(base + 0.02 * k * torch.randn_like(base)).bfloat16() for k in range(3)]
    exact = torch.stack([(g.double() * o.double()).sum() for o in outs])
    ours = torch.stack([_score(g, o) for o in outs]).double()
    assert ours.dtype == torch.float64 and _score(g, outs[0]).dtype == torch.float32
    torch.testing.assert_close(ours, exact, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(
        ours - ours[0], exact - exact[0], rtol=1e-3, atol=1e-2
    )  # the differences Eq. 10 uses
