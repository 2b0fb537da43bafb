"""Stride edges: a choice whose candidates subsample differently (where and how much the network
subsamples). The space accepts them and checks CTC at the largest total stride; each path runs at
its own frame rate; single-path methods train them and the others refuse them naming the edge;
latency tables hold every op at every frame count it can see, and the expected latency and the
budgeted path stay exact (checked against brute force over every path of tiny spaces)."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import pytorch_lightning as pl
import torch
import yaml

import ops
from supernet.archspec import ArchSpec
from supernet.derived import DerivedNet
from supernet.errors import UserError
from supernet.latency import (
    HardwareObjective,
    LatencyTable,
    SpaceCosts,
    arch_slots,
    covering_archs,
    make_settings,
    profile_space,
    space_slots,
)
from supernet.search.arch_params import ArchParams
from supernet.search.mixed_op import EdgePlan, MixedOp
from supernet.search.module import SearchModule
from supernet.search.network import Supernet
from supernet.search.relaxations import build, check_stride_edges
from supernet.shipped import shipped_path
from supernet.space import SearchSpace
from tests.test_nonfinite import VOCAB, loader, trainer
from tests.test_search_toy import toy_batch

BASE = {"name": "one", "features": "fbank", "feature_dim": 20, "dim": 16, "input": "linear", "head": "linear"}
# one stride edge (strides 2, 3, 1), a fixed stride 2 after it, an edge after that
ONE = {
    **BASE,
    "dropout": 0.0,
    "layers": [
        {"name": "a", "choice": ["tdnn-k3-d1", "skip"]},
        {"name": "stem", "choice": ["tdnn-k3-d1-s2", "tdnn-k3-d1-s3", "tdnn-k3-d1"]},
        "tdnn-k3-d1-s2",
        {"name": "b", "choice": ["tdnn-k3-d1", "tdnn-k5-d1", "skip"]},
    ],
}
# two stride edges whose products meet (2 x 3 = 3 x 2): the rates after them are not one per path
TWO = {
    **BASE,
    "name": "two",
    "layers": [
        {"name": "s1", "choice": ["tdnn-k3-d1-s2", "tdnn-k3-d1-s3"]},
        {"name": "mid", "choice": ["tdnn-k3-d1", "tdnn-k5-d1"]},
        "tdnn-k3-d1",
        {"name": "s2", "choice": ["tdnn-k3-d1-s3", "tdnn-k3-d1-s2", "skip"]},
        {"name": "tail", "choice": ["tdnn-k3-d1", "skip"]},
    ],
}


@functools.cache
def _space(name: str) -> SearchSpace:
    return SearchSpace({"one": ONE, "two": TWO}[name])


def space_of(spec: dict) -> SearchSpace:
    """The space of ``ONE`` or ``TWO``, built once (every op of a space is run when it is read)."""
    return _space(spec["name"])


@functools.cache
def _derived(name: str, path: tuple[int, ...]) -> ArchSpec:
    space = _space(name)
    return space.derive(dict(zip(space.edges, path)))


def derive(space: SearchSpace, path: dict[str, int]) -> ArchSpec:
    """``space.derive(path)``, built once per path."""
    return _derived(space.name, tuple(path.values()))


def paths(space: SearchSpace) -> list[dict[str, int]]:
    names = [c.name for c in space.choices]
    return [
        dict(zip(names, p)) for p in itertools.product(*(range(len(c.candidates)) for c in space.choices))
    ]


def settings(**kw):
    base = {"device": "cpu", "threads": 1, "batch": 1, "seconds": 0.37, "vocab": len(VOCAB)}
    return make_settings(**{**base, **kw})


def hand_table(space: SearchSpace, st: dict, calibration: dict | None = None) -> LatencyTable:
    """Every slot of the space costs a distinct known number (ms and params)."""
    entries = {}
    for i, slot in enumerate(s for position in space_slots(space, st)[0] for s in position):
        entries[slot.key] = {"spec": slot.spec, "ms": 1.0 + 0.37 * i, "params": 10 * (i + 1), "bytes": 0}
    table = LatencyTable(st, entries)
    if calibration:
        table.settings["calibration"] = calibration
    return table


# --- the space --------------------------------------------------------------------------------
def test_the_space_accepts_stride_choices_and_checks_ctc_at_the_largest_stride():
    one, two = space_of(ONE), space_of(TWO)
    assert one.stride_edges == {"stem": [2, 3, 1]} and two.stride_edges == {"s1": [2, 3], "s2": [3, 2, 1]}
    assert one.total_strides == [2, 4, 6] and one.max_total_stride == 6
    assert two.total_strides == [2, 3, 4, 6, 9] and two.max_total_stride == 9
    for space in (one, two):
        strides = {derive(space, p).total_stride for p in paths(space)}
        assert strides == set(space.total_strides) and max(strides) == space.max_total_stride
    assert [sorted(r) for r in two.rates()] == [[1], [2, 3], [2, 3], [2, 3], [2, 3, 4, 6, 9]]
    assert SearchSpace.load("st_nas").stride_edges == {}


def test_budget_rate_ships_with_its_baselines_as_paths_at_stride_3():
    narrow = {"dim": 32}  # every op is run once when a space is read: cheaper at a tiny width
    space = SearchSpace({**yaml.safe_load(shipped_path("space", "budget_rate").read_text()), **narrow})
    budget = yaml.safe_load(shipped_path("space", "budget").read_text())
    assert space.stride_edges == {"stem": [2, 3, 4]} and space.max_total_stride == 4
    assert space.total_strides == [2, 3, 4] and space.num_paths == 3**3 * 3 * 10**6
    stem = space.layers.index(space.choices[3])
    assert budget["layers"][stem] == "tdnn-k3-d1-s3"  # budget's fixed stride-3 TDNN, now a choice
    without = [layer for i, layer in enumerate(space.to_dict()["layers"]) if i != stem]
    assert without == [layer for i, layer in enumerate(budget["layers"]) if i != stem]  # the rest is budget's
    for name in ("budget_tdnn_d", "budget_conformer_s"):
        spec = ArchSpec.from_dict({**yaml.safe_load(shipped_path("arch", name).read_text()), **narrow})
        choices = space.index_of(spec)
        assert choices["stem"] == 1 and space.derive(choices).layers == spec.layers
        assert spec.total_stride == 3


# --- running paths ------------------------------------------------------------------------------
def test_each_path_runs_at_its_own_frame_rate():
    space = space_of(ONE)
    torch.manual_seed(0)
    net = Supernet(space, len(VOCAB)).eval()
    lengths = torch.tensor([37, 20, 7])
    features = torch.randn(3, 37, 20)
    seen = set()
    for path in paths(space):
        spec = derive(space, path)
        net.fix_path(path)
        log_probs, out = net(features, lengths)
        expected = [math.ceil(n / spec.total_stride) for n in lengths.tolist()]
        assert out.tolist() == expected and log_probs.shape[1] == max(expected), path
        assert net.total_stride == spec.total_stride
        assert net.host_out_lengths(lengths.tolist()).tolist() == expected
        derived = DerivedNet(spec, len(VOCAB)).eval()
        assert derived(features, lengths)[1].tolist() == expected
        seen.add(spec.total_stride)
    assert seen == {2, 4, 6}


class StrideCheckingData(pl.LightningDataModule):
    """The data module's CTC preflight, recorded: which stride the search checks it at."""

    def __init__(self):
        super().__init__()
        self.checked = []

    def check_ctc(self, stride, what):
        self.checked.append((stride, what))
        return {"stride": stride}

    def train_dataloader(self):
        return loader(4)


class RecordPaths(pl.Callback):
    def __init__(self):
        self.strides = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.strides.append(pl_module.net.edges["stem"].stride)


def test_a_uniform_supernet_trains_on_stride_edges_and_checks_ctc_at_the_largest_stride():
    torch.manual_seed(0)
    module = SearchModule(ONE, vocab=VOCAB, method="uniform", warmup_steps=1, seed=3)
    stem = module.net.edges["stem"]
    before = [c.conv.weight.detach().clone() for c in stem.candidates]
    data, seen = StrideCheckingData(), RecordPaths()
    trainer(epochs=1, callbacks=[seen]).fit(module, datamodule=data)
    assert data.checked == [(6, "space 'one'")]  # the largest total stride of any path
    assert len(set(seen.strides)) >= 2, seen.strides  # the stem's stride varied between steps
    trained = {
        stem.strides[k] for k, c in enumerate(stem.candidates) if not torch.equal(c.conv.weight, before[k])
    }
    assert trained == set(seen.strides)  # each sampled stride's candidate trained, and only those


@pytest.mark.parametrize(("method", "options"), [("gumbel", {"hard": True}), ("st", None)])
def test_gdas_and_st_search_a_stride_edge_and_its_alphas_learn(method, options, tmp_path):
    torch.manual_seed(0)
    module = SearchModule(ONE, vocab=VOCAB, method=method, method_options=options,
                          warmup_epochs=1, warmup_steps=1, arch_lr=0.05)  # fmt: skip
    start = {n: a.detach().clone() for n, a in module.arch.alphas.items()}
    run = trainer(epochs=2)
    run.fit(module, train_dataloaders=loader(3, search=True))
    assert all(not torch.equal(a.detach(), start[n]) for n, a in module.arch.alphas.items())
    if method == "st":  # the stride edge's score-function baseline comes back with the checkpoint
        assert module.relaxation.stride_edges == ["stem"] and module.relaxation.baseline is not None
        run.save_checkpoint(tmp_path / "search.ckpt")
        loaded = SearchModule.load_from_checkpoint(tmp_path / "search.ckpt", map_location="cpu")
        assert torch.equal(loaded.relaxation.baseline, module.relaxation.baseline)


TOY = ["tdnn-k3-d1-s2", "tdnn-k5-d2", "tdnn-k3-d1"]  # strides 2, 1, 1; only k5-d2 sees t-4 and t+4


def test_st_finds_the_known_answer_of_a_stride_edge_by_its_score_function_gradient():
    """The task of tests/test_search_toy.py (predict x[t-4] + x[t+4]) on an edge whose candidates
    subsample differently: Eq. 10 cannot score them, the score-function estimate must find k5-d2."""
    torch.manual_seed(0)
    dim = 8
    edge = MixedOp("e", [ops.build(c, dim, 32, dropout=0.0) for c in TOY], TOY)
    readout = torch.nn.Linear(32, 1)
    arch = ArchParams({"e": TOY}, seed=0)
    st, warmup = build("st"), build("uniform")
    check_stride_edges(st, [edge])
    with pytest.raises(UserError, match="edge 'e' subsamples differently"):
        check_stride_edges(build("darts"), [edge])
    weight_opt = torch.optim.Adam([*edge.parameters(), *readout.parameters()], lr=1e-2)
    arch_opt = torch.optim.Adam(arch.parameters(), lr=0.05, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(1)

    def loss_on(batch):
        x, lengths, y = batch
        h, _ = edge(x, lengths)
        target = y[:, :: edge.stride][:, : h.shape[1]]  # the target at each output frame
        return ((readout(h) - target) ** 2).mean()

    for step in range(80):  # p(k5-d2) ends at 0.92-0.95 for seeds 0-3 (20 warm-up steps)
        probs = st.host_probs(arch) if step >= 20 else None
        edge.plan = (warmup if step < 20 else st).plan(arch, "weight", 2 * step, probs)["e"]
        weight_opt.zero_grad()
        loss_on(toy_batch(gen, batch=8)).backward()
        weight_opt.step()
        if step >= 20:
            edge.plan = st.plan(arch, "arch", 2 * step + 1, probs)["e"]
            assert edge.plan.mode == "single"
            loss = loss_on(toy_batch(gen, batch=8))
            arch_loss = st.arch_loss(arch, loss)
            assert float(arch_loss) == float(loss)  # the added term is zero: the logged loss is CTC's
            (grad,) = torch.autograd.grad(arch_loss, [arch.alphas["e"]])
            arch.alphas["e"].grad = grad
            arch_opt.step()
    probs = arch.probs()["e"].detach()
    assert TOY[int(probs.argmax())] == "tdnn-k5-d2" and float(probs.max()) > 0.8, dict(
        zip(TOY, probs.tolist())
    )


def test_sample_ahead_weights_the_score_function_term_by_now_over_then():
    """With sample_ahead the stride edge's candidate comes from the alphas one update old; its
    term is weighted by p_now(k) / p_then(k), so it estimates the gradient at the current alphas."""
    edge = MixedOp("e", [ops.build(c, 4, 4, dropout=0.0) for c in TOY], TOY)
    arch = ArchParams({"e": TOY}, seed=0)
    st = build("st", {"sample_ahead": True, "baseline_decay": 0.5})
    check_stride_edges(st, [edge])
    then = st.host_probs(arch)  # the alphas before the update below: what the step samples from
    with torch.no_grad():
        arch.alphas["e"].add_(torch.tensor([0.7, -0.3, 0.1]))
    k = st.plan(arch, "arch", 1, then)["e"].index
    st.baseline = torch.tensor(1.0)
    loss = torch.tensor(3.0)
    (grad,) = torch.autograd.grad(st.arch_loss(arch, loss), [arch.alphas["e"]])
    now = torch.softmax(arch.alphas["e"].detach(), -1)
    score = torch.nn.functional.one_hot(torch.tensor(k), 3).float() - now  # d ln p_now(k) / d alpha
    expected = (now[k] / then["e"][k]) * (3.0 - 1.0) * score
    assert float(now[k] / then["e"][k]) != pytest.approx(1.0, abs=1e-3)  # so the weight is tested
    assert torch.allclose(grad, expected, atol=1e-6), (grad, expected)


@pytest.mark.parametrize(("method", "options"), [("darts", None), ("gumbel", None)])
def test_methods_that_sum_candidates_refuse_a_stride_edge_naming_it(method, options):
    with pytest.raises(UserError) as err:
        SearchModule(ONE, vocab=VOCAB, method=method, method_options=options)
    message = str(err.value)
    assert "edge 'stem' subsamples differently" in message
    assert "tdnn-k3-d1-s3 (stride 3)" in message and f"method {method!r}" in message
    assert "uniform" in message and "hard: true" in message and "or st" in message
    no_stride_edge = {**ONE, "layers": [ONE["layers"][0], "tdnn-k3-d1-s2"]}
    SearchModule(no_stride_edge, vocab=VOCAB, method=method, method_options=options)


def test_a_plan_that_combines_a_stride_edge_fails_naming_the_edge():
    net = Supernet(space_of(ONE), len(VOCAB))
    stem = net.edges["stem"]
    x, lengths = torch.randn(1, 12, 16), torch.tensor([12])
    stem.plan = EdgePlan("sum", weights=torch.full((3,), 1 / 3))
    with pytest.raises(
        RuntimeError, match=r"edge 'stem': a 'sum' plan combines .* strides \[2, 3, 1\] differ"
    ):
        stem(x, lengths)
    with pytest.raises(RuntimeError, match="edge 'stem'.*its stride is the planned candidate's"):
        _ = stem.stride
    stem.plan = EdgePlan("single", index=1)
    assert stem.stride == 3 and stem(x, lengths)[1].tolist() == [4]


# --- latency ------------------------------------------------------------------------------------
def test_space_slots_hold_every_op_at_every_frame_count_it_can_see():
    space, st = space_of(ONE), settings()
    slots, names = space_slots(space, st)
    assert names == [None, "a", "stem", None, "b", None]
    frames = [sorted({s.frames for s in position}) for position in slots]
    # 0.37 s = 37 frames; after the stem 19, 13 or 37, after the fixed s2 10, 7 or 19
    assert frames == [[37], [37], [37], [13, 19, 37], [7, 10, 19], [7, 10, 19]]
    assert len(slots[4]) == 3 * 3  # b: 3 candidates x 3 frame counts
    every = {s.key for position in slots for s in position}
    used = {s.key for p in paths(space) for s in arch_slots(derive(space, p), st)}
    assert used == every  # every reachable slot, and only those
    covered = {s.key for arch in covering_archs(space, st) for s in arch_slots(arch, st)}
    assert covered == every


@pytest.mark.parametrize("spec", [ONE, TWO])
def test_a_path_is_predicted_from_entries_at_its_own_frames_and_the_costs_agree(spec):
    space, st = space_of(spec), settings()
    table = hand_table(space, st, calibration={"kind": "line", "scale": 1.3, "offset_ms": 0.25})
    costs = table.costs(space)
    for path in paths(space):
        arch = derive(space, path)
        stride, by_hand = 1, 0.0
        for slot, info in zip(arch_slots(arch, st), arch.op_infos):
            assert slot.frames == math.ceil(37 / stride)
            by_hand += table.entries[slot.key]["ms"]
            stride *= info.stride
        assert table.predict(arch) == pytest.approx(1.3 * by_hand + 0.25)
        assert costs.at(path) == pytest.approx(table.predict(arch))
    predictions = [table.predict(derive(space, p)) for p in paths(space)]
    assert costs.cheapest() == pytest.approx(min(predictions)) and costs.dearest() == pytest.approx(
        max(predictions)
    )
    params = table.costs(space, "params")
    assert all(params.at(p) == pytest.approx(table.predict(derive(space, p), "params")) for p in paths(space))


@pytest.mark.parametrize("spec", [ONE, TWO])
def test_expected_latency_is_the_average_over_every_path_and_its_gradient_too(spec):
    space = space_of(spec)
    table = hand_table(space, settings(), calibration={"kind": "ratio", "scale": 0.8, "offset_ms": 0.0})
    gen = torch.Generator().manual_seed(1)
    logits = {c.name: torch.randn(len(c.candidates), generator=gen, dtype=torch.float64, requires_grad=True)
              for c in space.choices}  # fmt: skip
    probs = {n: torch.softmax(a, -1) for n, a in logits.items()}
    expected = table.expected(space, probs)
    brute = sum(
        math.prod(probs[n][k] for n, k in path.items()) * table.predict(derive(space, path))
        for path in paths(space)
    )
    assert float(expected) == pytest.approx(float(brute), rel=1e-12)
    got = torch.autograd.grad(expected, list(logits.values()), retain_graph=True)
    want = torch.autograd.grad(brute, list(logits.values()))
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-10, atol=1e-12)
    # the uniform reference of a penalty is the plain average over the paths
    objective = HardwareObjective.from_options(space, len(VOCAB), target_costs=table.costs(space))
    mean = sum(table.predict(derive(space, p)) for p in paths(space)) / len(paths(space))
    assert objective.penalty.reference == pytest.approx(mean)


@pytest.mark.parametrize("spec", [ONE, TWO])
def test_the_budgeted_path_is_the_most_probable_within_the_budget(spec):
    space = space_of(spec)
    costs = hand_table(space, settings()).costs(space)
    gen = torch.Generator().manual_seed(2)
    alphas = {
        c.name: torch.randn(len(c.candidates), generator=gen, dtype=torch.float64) for c in space.choices
    }
    log_probs = {n: torch.log_softmax(a, -1).tolist() for n, a in alphas.items()}
    every = sorted(costs.at(p) for p in paths(space))
    for budget in (every[0], every[len(every) // 3], every[len(every) // 2], every[-1]):
        fits = [p for p in paths(space) if costs.at(p) <= budget]
        best = max(fits, key=lambda p: sum(log_probs[n][k] for n, k in p.items()))
        assert costs.most_probable_within(log_probs, budget) == best
    assert costs.most_probable_within(log_probs, every[0] - 1e-6) is None
    again = SpaceCosts.from_dict(costs.to_dict())  # as a checkpoint keeps them
    assert again.strides == costs.strides and all(again.at(p) == costs.at(p) for p in paths(space))


def test_profile_measures_a_stride_space_and_predicts_every_path():
    space, st = space_of(ONE), settings()
    table = profile_space(space, st, warmup=0, repeats=1, rounds=1, progress=False, calibrate=0)
    wanted = {s.key for position in space_slots(space, st)[0] for s in position}
    assert wanted <= set(table.entries)
    for path in paths(space):
        assert table.predict(derive(space, path)) > 0
