"""CUDA graphs of ops (``supernet.accel.cuda_graphs``): the same numbers as eager, or eager where they
cannot run. The GPU tests compare a graphed network with an eager copy, step by step."""

import copy
import warnings

import pytest
import torch

import ops
from supernet.accel import cuda_graphs
from supernet.accel.cuda_graphs import MANY_SHAPES, OpGraphs, _Buffers, _ScoreEntry, use_cuda_graphs
from supernet.archspec import ArchSpec
from supernet.derived import DerivedNet
from supernet.runner import EAGER
from supernet.search.arch_params import ArchParams
from supernet.search.mixed_op import EdgePlan
from supernet.search.network import Supernet
from supernet.search.relaxations import make_plan
from supernet.space import SearchSpace

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
FIELDS = {"features": "fbank", "feature_dim": 12, "dim": 24, "input": "linear", "head": "linear"}
CHOICE = ["tdnn-k3-d1", "tdnn-k5-d1-ln", "tdnn-k3-d2", "septdnn-k5-d1"]


def space(dropout: float = 0.0, choice: list[str] = CHOICE) -> SearchSpace:
    layers = [{"name": "e1", "choice": choice}, "tdnn-k3-d1-s3", {"name": "e2", "choice": choice}]
    return SearchSpace({"name": "toy", **FIELDS, "layers": layers, "dropout": dropout})


def derived(dropout: float = 0.0) -> DerivedNet:
    layers = ["tdnn-k3-d1", "tdnn-k3-d1-s3", "tdnn-k5-d1-ln"]
    return DerivedNet(ArchSpec.from_dict({"name": "toy", **FIELDS, "layers": layers, "dropout": dropout}), 9)


def batch(b: int, frames: int, device, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, frames, 12, generator=gen).to(device)
    lengths = torch.randint(frames // 2, frames + 1, (b,), generator=gen)
    lengths[0] = frames
    weights = torch.randn(b, -(-frames // 3), 9, generator=gen).to(device)
    return x, lengths.to(device), weights


def loss_of(net, x, lengths, weights, bf16=False):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        log_probs, out_lengths = net(x, lengths.clone())  # a new lengths tensor, as every batch brings
    valid = torch.arange(log_probs.shape[1], device=x.device) < out_lengths[:, None]
    return (log_probs * weights * valid[..., None]).sum() / x.shape[0]


def test_buffers_view_any_shape_and_grow_with_a_new_generation():
    buffers = _Buffers(torch.device("cpu"))
    a = buffers.view("x", torch.Size([2, 3]), torch.float32)
    generation = buffers.generation
    b = buffers.view("x", torch.Size([3, 2]), torch.float32)
    assert b.data_ptr() == a.data_ptr() and b.is_contiguous() and buffers.generation == generation
    buffers.view("x", torch.Size([4, 4]), torch.float32)  # larger: a new tensor, stale graphs
    assert buffers.generation == generation + 1
    assert buffers.flat["x", torch.float32].numel() >= 16
    buffers.view("x", torch.Size([17]), torch.float32)
    assert buffers.flat["x", torch.float32].numel() == 24  # grows by half at least: few regrowths


def test_output_buffers_are_registered_where_they_start_so_inputs_can_be_read_in_place():
    outputs = set()
    buffers = _Buffers(torch.device("cpu"), outputs)
    y = buffers.view("y", torch.Size([2, 3]), torch.float32)
    buffers.view("x", torch.Size([2, 3]), torch.float32)
    assert outputs == {y.data_ptr()}
    moved = buffers.view("y", torch.Size([5, 3]), torch.float32)
    assert outputs == {moved.data_ptr()} != {y.data_ptr()}


def test_many_shapes_of_one_op_warn_once_to_pad_the_batches():
    graphs, op = OpGraphs(), torch.nn.Linear(2, 2)
    for _ in range(MANY_SHAPES - 1):
        graphs._count_shape(op)
    with pytest.warns(UserWarning, match="data.pad_frames"):
        graphs._count_shape(op)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graphs._count_shape(op)


def test_on_the_cpu_everything_runs_eagerly_with_the_same_numbers():
    torch.manual_seed(0)
    net = derived()
    twin = copy.deepcopy(net)
    graphs = use_cuda_graphs(net)
    x, lengths, weights = batch(3, 20, "cpu", 0)
    torch.testing.assert_close(loss_of(net, x, lengths, weights), loss_of(twin, x, lengths, weights))
    assert graphs.stats.captures == 0 and graphs.stats.eager == 5  # input, three layers, head
    assert use_cuda_graphs(net, False) is None
    assert all(m.runner is EAGER for m in net.modules() if hasattr(m, "runner"))


class _Rerun:
    """A stand-in for a captured score graph on the CPU: a replay reruns what was captured."""

    def __init__(self, run, score):
        self.run, self.score = run, score

    def replay(self):
        self.score.copy_(self.run())


@pytest.fixture
def score_graphs_on_the_cpu(monkeypatch):
    """``OpGraphs``' ST score paths on the CPU: graph-safe candidates count as scorable (training
    passes stay eager), and a capture keeps the function that its replays rerun."""
    monkeypatch.setattr(cuda_graphs, "graphable", lambda op, x: False)
    monkeypatch.setattr(cuda_graphs, "scorable", lambda op, x: getattr(op, "graph_safe", False))

    def capture(self, module, run, params, reads=()):
        score = run()
        self.stats.captures += 1
        pointers = tuple(p.data_ptr() for p in params)
        return _ScoreEntry(self.score_buffers.generation, pointers, score, _Rerun(run, score), reads)

    monkeypatch.setattr(OpGraphs, "_capture_scores", capture)


@pytest.mark.parametrize("in_place", [True, False], ids=["read-in-place", "copied"])
@pytest.mark.parametrize("with_skip", [True, False], ids=["skip-candidate", "graph-safe-candidates"])
def test_st_scores_through_the_graphs_match_eager_on_the_cpu(
    score_graphs_on_the_cpu, monkeypatch, in_place, with_skip
):
    """What the score graphs run, run eagerly: the whole edge in one graph where every candidate is
    graph-safe and the edge's input and output are read in place, else one graph per graph-safe
    candidate and the others eager; the alphas' gradients are eager's (dropout 0.3: the
    recomputations must run without it)."""
    monkeypatch.setattr(OpGraphs, "_in_place", lambda self, t: in_place)
    choice = [*CHOICE, "skip"] if with_skip else CHOICE
    torch.manual_seed(0)
    eager = Supernet(space(dropout=0.3, choice=choice), 9).train()
    graphed = copy.deepcopy(eager)
    graphs = use_cuda_graphs(graphed)
    alphas = [torch.randn(len(choice), requires_grad=True) for _ in range(2)]
    for step, index in enumerate([0, 2, 0]):  # the third replays the first's graphs
        x, lengths, weights = batch(3, 24, "cpu", step)
        grads = []
        for net in (eager, graphed):
            net.apply_plan(
                {
                    name: EdgePlan("st", index=index, probs=a.softmax(-1))
                    for name, a in zip(("e1", "e2"), alphas)
                }
            )
            torch.manual_seed(step)
            grads.append(torch.autograd.grad(loss_of(net, x, lengths, weights), alphas))
        torch.testing.assert_close(grads[1], grads[0])
    whole = [key for key in graphs.scores if key[0] == "edge"]
    assert bool(whole) == (in_place and not with_skip)
    if not whole:  # one graph per edge and graph-safe candidate (a skip has none), 3 replays a step
        assert len(graphs.scores) == 2 * 4 and graphs.stats.replays == 3 * 2 * 3


def _steps(eager, graphed, run_step, shapes, device):
    """Run the same steps on both networks; compare losses and every gradient."""
    for i, (b, frames) in enumerate(shapes):
        x, lengths, weights = batch(b, frames, device, i)
        results = [run_step(net, i, x, lengths, weights) for net in (eager, graphed)]
        torch.testing.assert_close(results[1], results[0], rtol=2e-4, atol=2e-5)


def _assert_same_parameters(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=2e-4, atol=2e-5, msg=name)
    for (name, p), q in zip(a.named_buffers(), b.buffers()):
        torch.testing.assert_close(q, p, rtol=2e-4, atol=2e-5, msg=name)


@pytest.fixture
def exact_gpu():
    """fp32 without TF32, so that eager and graphed runs of the same kernels agree closely."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


SHAPES = [(3, 40), (2, 56), (3, 40), (3, 40), (2, 56), (4, 24)]


@gpu
def test_derived_training_steps_match_eager(exact_gpu):
    torch.manual_seed(0)
    eager = derived().to(exact_gpu).train()
    graphed = copy.deepcopy(eager)
    graphs = use_cuda_graphs(graphed)
    optimizers = {id(n): torch.optim.AdamW(n.parameters(), lr=1e-2) for n in (eager, graphed)}

    def step(net, i, x, lengths, weights):
        opt = optimizers[id(net)]
        opt.zero_grad(set_to_none=True)
        loss = loss_of(net, x, lengths, weights)
        loss.backward()
        grads = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
        opt.step()
        return torch.cat([loss.detach().reshape(1), grads])

    _steps(eager, graphed, step, SHAPES, exact_gpu)
    _assert_same_parameters(eager, graphed)  # BatchNorm statistics too: warm-ups train nothing
    assert graphs.stats.captures == 3 * 5 and graphs.stats.replays == len(SHAPES) * 5
    assert graphs.stats.recaptures == []
    # the last batch (4 utterances) regrew the lengths buffers: only its graphs are kept
    bound = [entry.bound for entry in graphs.train.values()]
    assert len(bound) == 5 and sum(bound) == 4, (
        "every layer after the input reads its producer's output in place"
    )
    for entry in graphs.train.values():  # autograd copied the gradients out of the graphs' buffers
        owned = {b.data_ptr() for b in entry.param_grads if b is not None}
        assert not owned & {p.grad.data_ptr() for p in entry.params}


@gpu
def test_accumulated_gradients_over_two_batches_match_eager(exact_gpu):
    torch.manual_seed(1)
    eager = derived().to(exact_gpu).train()
    graphed = copy.deepcopy(eager)
    use_cuda_graphs(graphed)

    def step(net, i, x, lengths, weights):
        net.zero_grad(set_to_none=True)
        for half in (slice(0, 2), slice(2, 4)):
            loss_of(net, x[half], lengths[half], weights[half]).backward()
        return torch.cat([p.grad.reshape(-1) for p in net.parameters()])

    _steps(eager, graphed, step, [(4, 40), (4, 40)], exact_gpu)


@gpu
@pytest.mark.parametrize("with_skip", [True, False], ids=["skip-candidate", "graph-safe-candidates"])
def test_st_arch_and_weight_steps_match_eager(exact_gpu, with_skip):
    """With a skip candidate: the layer after an edge reads another producer's output in place
    when the skip is drawn, and the scores are replayed candidate by candidate (the skip has no
    graph). Without it: each edge's scores are one replay (``OpGraphs.edge_scores``). The arch
    step replays input-only backward graphs."""
    torch.manual_seed(0)
    skip_space = space(choice=[*CHOICE, "skip"] if with_skip else CHOICE)
    eager = Supernet(skip_space, 9).to(exact_gpu).train()
    graphed = copy.deepcopy(eager)
    graphs = use_cuda_graphs(graphed)
    arch = ArchParams(skip_space.edges, seed=0).to(exact_gpu)
    alphas = list(arch.alphas.values())
    drawn = set()

    def step(net, i, x, lengths, weights):
        net.apply_plan(make_plan(arch, "st", "arch", 2 * i + 1))
        with net.input_grads_only():  # as SearchModule.arch_step
            arch_loss = loss_of(net, x, lengths, weights)
        arch_grads = torch.autograd.grad(arch_loss, alphas)
        plan = make_plan(arch, "st", "weight", 2 * i)
        drawn.update(p.index for p in plan.values())
        net.apply_plan(plan)
        net.zero_grad(set_to_none=True)
        loss = loss_of(net, x, lengths, weights)
        loss.backward()
        grads = [p.grad.reshape(-1) for p in net.parameters() if p.grad is not None]
        with torch.no_grad():
            for p in net.parameters():
                if p.grad is not None:
                    p -= 0.05 * p.grad
        return torch.cat([loss.detach().reshape(1), *arch_grads, *grads])

    _steps(eager, graphed, step, SHAPES, exact_gpu)
    _assert_same_parameters(eager, graphed)
    whole_edges = [key for key in graphs.scores if key[0] == "edge"]
    assert graphs.scores, "the unsampled candidates' scores were not replayed"
    assert bool(whole_edges) != with_skip, "edge scores as one replay exactly when every candidate has graphs"
    assert graphs.stats.input_only_backwards > 0
    if with_skip:
        assert CHOICE.__len__() in drawn, "the skip candidate was never drawn for a weight step"
    assert graphs.stats.recaptures == []


@gpu
def test_batches_that_grow_and_come_back_recapture_and_drop_stale_graphs(exact_gpu):
    """A larger batch regrows the buffers: the graphs of the smaller shape are dropped (they held
    the old buffers) and captured again when it comes back, with the same numbers as eager."""
    torch.manual_seed(0)
    eager = derived().to(exact_gpu).train()
    graphed = copy.deepcopy(eager)
    graphs = use_cuda_graphs(graphed)

    def step(net, i, x, lengths, weights):
        net.zero_grad(set_to_none=True)
        loss = loss_of(net, x, lengths, weights)
        loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.05 * p.grad
        return torch.cat([loss.detach().reshape(1), *(p.grad.reshape(-1) for p in net.parameters())])

    _steps(eager, graphed, step, [(2, 24), (4, 64), (2, 24), (4, 64), (2, 24)], exact_gpu)
    _assert_same_parameters(eager, graphed)
    # the input layer's small shape, when it came back (the layers after it read its new output
    # buffer in place: for them it is a new key)
    assert len(graphs.stats.recaptures) == 1
    assert len(graphs.train) == 2 * 5, "stale graphs were kept"
    for entry in graphs.train.values():
        assert entry.generation == entry.group.buffers.generation


@gpu
def test_bf16_autocast_casts_the_current_weights_at_every_replay():
    torch.manual_seed(0)
    device = torch.device("cuda")
    eager = derived().to(device).train()
    graphed = copy.deepcopy(eager)
    use_cuda_graphs(graphed)
    optimizers = [torch.optim.SGD(n.parameters(), lr=0.5) for n in (eager, graphed)]
    x, lengths, weights = batch(3, 40, device, 0)
    for _ in range(3):  # the weights change: a graph that kept a cast from its capture would drift
        losses = []
        for net, opt in zip((eager, graphed), optimizers):
            opt.zero_grad()
            loss = loss_of(net, x, lengths, weights, bf16=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=2e-2, atol=1e-3)


@gpu
def test_dropout_draws_new_masks_at_every_replay():
    torch.manual_seed(0)
    net = derived(dropout=0.5).cuda().train()
    use_cuda_graphs(net)
    x, lengths, weights = batch(3, 40, "cuda", 0)
    first = loss_of(net, x, lengths, weights)
    first.backward()
    second = loss_of(net, x, lengths, weights)
    second.backward()
    assert not torch.equal(first, second)


@gpu
def test_a_second_forward_before_the_backward_is_an_error():
    net = derived().cuda().train()
    use_cuda_graphs(net)
    x, lengths, weights = batch(3, 40, "cuda", 0)
    first = loss_of(net, x, lengths, weights)
    loss_of(net, x, lengths, weights).backward()
    with pytest.raises(RuntimeError, match="ran forward again before the backward"):
        first.backward()


@gpu
def test_darts_and_evaluation_run_eagerly_and_captures_ignore_older_graphs():
    net = Supernet(space(), 9).cuda()
    graphs = use_cuda_graphs(net)
    arch = ArchParams(space().edges, seed=0).cuda()
    x, lengths, weights = batch(3, 40, "cuda", 0)
    net.apply_plan(make_plan(arch, "darts", "arch", 0))
    darts_loss = loss_of(net, x, lengths, weights)  # every candidate of an edge in one pass
    darts_loss.backward()
    assert graphs.stats.captures == 3  # the fixed layers only: input, strided TDNN, head
    net.eval()
    with torch.no_grad():
        net(x, lengths)
    assert graphs.stats.captures == 3
    # the darts graph, still alive through its loss, holds every parameter's gradient accumulator
    # (made on the default stream); capturing the candidates must not feed those
    net.train()
    net.apply_plan(make_plan(arch, "st", "weight", 0))
    loss_of(net, x, lengths, weights).backward()
    # two candidates, and the strided TDNN and head again: their inputs are now graph outputs,
    # read in place (a new capture each); the input layer replays
    assert graphs.stats.captures == 7 and darts_loss.grad_fn is not None


# every op family that declares ``graph_safe``, and the variants that take other code paths
GRAPH_SAFE_SPECS = [
    "linear",
    "tdnn-k3-d2",
    "tdnn-k3-d1-s3",
    "tdnn-k4-d1-bn-s2",
    "septdnn-k5-d1-ln",
    "conv2d4x",
    "mhsa-h2-chunk-c4",
    "transformer-f4-rel",
    "transformer-f2-local-w3",
    "conformer-k15-f4-abs",
    "conformer-k5-f2-local-w4-l1-ln",
    "ebranchformer-k15-f4-rel",
    "res-tdnn-k3-d2-e32",
    "res-down2-conformer-k15-f4-h4-rel",
    "res-down2-ebranchformer-k15-f4-rel",
]


@gpu
@pytest.mark.parametrize("spec", GRAPH_SAFE_SPECS)
def test_every_graph_safe_op_family_matches_eager(spec, exact_gpu):
    torch.manual_seed(0)
    eager = ops.build(spec, 16, 16, dropout=0.0).to(exact_gpu).train()
    graphed = copy.deepcopy(eager)
    assert graphed.graph_safe
    graphs = OpGraphs()
    for i, (b, frames) in enumerate([(3, 40), (2, 24), (3, 40)]):
        gen = torch.Generator().manual_seed(i)
        x = torch.randn(b, frames, 16, generator=gen).to(exact_gpu)
        lengths = torch.tensor([frames] + [frames // 2 + 1] * (b - 1), device=exact_gpu)
        results = []
        for op in (eager, graphed):
            xi = x.clone().requires_grad_()
            if op is graphed:
                y, out_lengths = graphs(op, xi, lengths, group=op)
            else:
                y, out_lengths = op(xi, lengths)
            g = torch.randn(y.shape, generator=torch.Generator().manual_seed(10 + i)).to(exact_gpu)
            grads = torch.autograd.grad(y, [xi, *op.parameters()], g, allow_unused=True)
            results.append([y, out_lengths, *[torch.zeros(0) if gr is None else gr for gr in grads]])
        for got, want in zip(*results[::-1]):
            torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-5, msg=spec)
    _assert_same_parameters(eager, graphed)  # BatchNorm statistics
    assert graphs.stats.captures == 2 and graphs.stats.replays == 3
