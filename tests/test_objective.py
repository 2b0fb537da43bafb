"""HardwareObjective: the penalised loss of each kind, the hinge-only budget, the path within it,
and its state through a real Lightning checkpoint (extract needs no table)."""

from __future__ import annotations

import inspect
import math

import pytest
import pytorch_lightning as pl
import torch

from losses.latency import ResourcePenalty
from supernet.latency import HardwareObjective, LatencyTable, SpaceCosts, make_settings, space_slots
from supernet.latency.objective import BudgetError
from supernet.search.extract import extract
from supernet.search.module import SearchModule
from supernet.space import SearchSpace

# expected under PROBS: 1 + (0.5 * 1 + 0.5 * 3) + (0.25 * 0 + 0.75 * 2) = 4.5
LATENCY = SpaceCosts("ms", 1.0, {"a": [1.0, 3.0], "b": [0.0, 2.0]})
PARAMS = SpaceCosts("params", 100.0, {"a": [10.0, 30.0], "b": [0.0, 50.0]})
PROBS = {"a": torch.tensor([0.5, 0.5]), "b": torch.tensor([0.25, 0.75])}
CE = torch.tensor(2.0)


def objective(kind: str, **penalty) -> HardwareObjective:
    return HardwareObjective(ResourcePenalty(kind, **penalty), LATENCY, PARAMS, "latency")


@pytest.mark.parametrize(
    "kind, penalty, loss",
    [
        ("none", {}, 2.0),
        ("additive", {"lam": 0.5, "reference": 3.0}, 2.0 + 0.5 * 4.5 / 3.0),
        ("multiplicative", {"beta": 0.5, "reference": 3.0}, 2.0 * math.sqrt(math.log(4.5) / math.log(3.0))),
        ("hinge", {"lam": 1.0, "budget": 4.0}, 2.0 + 0.5 / 4.0),  # 0.5 ms over
        ("hinge", {"lam": 1.0, "budget": 5.0}, 2.0),  # inside the budget: no pressure
    ],
)
def test_loss_known_values_and_the_same_after_a_state_round_trip(kind, penalty, loss):
    made = objective(kind, **penalty)
    again = HardwareObjective.from_state_dict(made.state_dict())
    for obj in (made, again):
        assert obj.active == (kind != "none")
        assert float(obj.loss(CE, PROBS)) == pytest.approx(loss)
        logged, logs = obj.loss_and_logs(CE, PROBS, {"a": 1, "b": 0})
        assert float(logged) == pytest.approx(loss)
        assert float(logs["arch/expected_latency_ms"]) == pytest.approx(4.5)
        assert logs["arch/argmax_latency_ms"] == 4.0 and logs["arch/argmax_params"] == 130.0
        assert float(logs["arch/expected_params"]) == pytest.approx(100 + 20 + 37.5)
        assert float(logs["arch/ctc"]) == 2.0
    if kind == "none":
        assert made.loss(CE, PROBS) is CE  # unchanged when inactive


def test_params_target_and_no_table():
    obj = HardwareObjective(ResourcePenalty("additive", lam=1.0, reference=150.0), None, PARAMS, "params")
    assert obj.target_costs is PARAMS
    assert float(obj.loss(CE, PROBS)) == pytest.approx(2.0 + 157.5 / 150.0)
    _, logs = obj.loss_and_logs(CE, PROBS, {"a": 0, "b": 0})
    assert "arch/expected_latency_ms" not in logs and logs["arch/argmax_params"] == 110.0
    assert HardwareObjective.from_state_dict(obj.state_dict()).latency is None


def test_the_budget_binds_a_path_only_under_hinge():
    argmax_over = {"a": torch.tensor([0.0, 2.0]), "b": torch.tensor([0.0, 1.0])}  # costs 1 + 3 + 2 = 6
    hinge = objective("hinge", budget=4.0)
    assert hinge.path_budget == 4.0 and hinge.over_budget({"a": 1, "b": 1})
    assert hinge.choose_path(argmax_over) != {"a": 1, "b": 1}
    for other in (objective("additive", reference=3.0, budget=4.0), objective("none", budget=4.0)):
        assert other.path_budget is None and not other.over_budget({"a": 1, "b": 1})
        assert other.choose_path(argmax_over) == {"a": 1, "b": 1}  # the argmax, budget or not


def test_choose_path_is_the_most_probable_path_within_the_budget():
    costs = SpaceCosts("ms", 0.0, {"a": [1.0, 5.0], "b": [1.0, 4.0]})
    obj = HardwareObjective(ResourcePenalty("hinge", budget=6.0), costs, PARAMS, "latency")
    alphas = {"a": torch.tensor([0.0, 2.0]), "b": torch.tensor([0.0, 1.0])}
    # the argmax (a1, b1) costs 9; within 6: (a0, b0) 2, (a0, b1) 5, (a1, b0) 6. log p: a1 -0.13,
    # a0 -2.13, b1 -0.31, b0 -1.31: (a1, b0) -1.44 beats (a0, b1) -2.44 and (a0, b0) -3.44
    assert obj.over_budget({"a": 1, "b": 1})
    assert obj.choose_path(alphas) == {"a": 1, "b": 0}
    assert not obj.over_budget({"a": 1, "b": 0})
    tight = HardwareObjective(ResourcePenalty("hinge", budget=1.5), costs, PARAMS, "latency")
    with pytest.warns(UserWarning, match="no path of the space costs at most the budget 1.5"):
        assert tight.choose_path(alphas) == {"a": 1, "b": 1}  # nothing fits: the argmax


# two edges, each with a parameter-free candidate
EDGES = [{"name": "a", "choice": ["tdnn-k3-d1", "skip"]}, {"name": "b", "choice": ["tdnn-k3-d2", "skip"]}]
SPACE = {"name": "two", "features": "fbank", "feature_dim": 8, "dim": 16, "input": "linear", "layers": EDGES}
VOCAB = ["<blank>", "<unk>", "a", "b", "c"]


def write_table(space: SearchSpace, path) -> None:
    """Every slot a distinct number of ms."""
    settings = make_settings(device="cpu", threads=1, seconds=0.2, vocab=len(VOCAB))
    slots = [s for position in space_slots(space, settings)[0] for s in position]
    LatencyTable(
        settings, {s.key: {"ms": 1.0 + i, "params": 0, "bytes": 0} for i, s in enumerate(slots)}
    ).save(path)


def test_options_errors():
    space = SearchSpace(SPACE)
    with pytest.raises(ValueError, match="penalty_target: unknown 'flops'"):
        HardwareObjective.from_options(space, 5, penalty_target="flops")
    with pytest.raises(ValueError, match="penalty 'hinge' on latency needs a latency_table"):
        HardwareObjective.from_options(space, 5, penalty="hinge", budget=1.0)
    with pytest.raises(TypeError, match="unknown option.*penalty_gamma"):
        HardwareObjective.from_options(space, 5, penalty_gamma=1.0)


def test_a_budget_no_path_meets_is_refused_before_training(tmp_path):
    space = SearchSpace(SPACE)
    write_table(space, tmp_path / "lut.json")
    lut = str(tmp_path / "lut.json")
    cheapest = HardwareObjective.from_options(space, len(VOCAB), latency_table=lut).latency.cheapest()
    with pytest.raises(
        BudgetError, match=f"the cheapest path of space 'two' costs {cheapest:g} ms in .*lut.json"
    ):
        HardwareObjective.from_options(
            space, len(VOCAB), latency_table=lut, penalty="hinge", budget=cheapest * 0.9
        )
    exact = HardwareObjective.from_options(
        space, len(VOCAB), latency_table=lut, penalty="hinge", budget=cheapest
    )
    assert exact.path_budget == cheapest  # a budget at the cheapest path's own cost admits it
    with pytest.raises(BudgetError, match="model.budget 1 params: the cheapest path .* params; give"):
        HardwareObjective.from_options(
            space, len(VOCAB), penalty="hinge", penalty_target="params", budget=1.0
        )
    # other penalties take the budget as no limit on the pick, so it is not checked there
    assert (
        HardwareObjective.from_options(space, len(VOCAB), latency_table=lut, budget=0.1).path_budget is None
    )
    # the options and their defaults are declared once: SearchModule's signature reads them
    from supernet.search.module import SearchModule

    module = inspect.signature(SearchModule).parameters
    assert {k: module[k].default for k in HardwareObjective.OPTIONS} == HardwareObjective.DEFAULTS


def batches(steps: int) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    batch = {
        "features": torch.randn(2, 40, 8, generator=g),
        "feature_lengths": torch.tensor([40, 32]),
        "targets": torch.tensor([[2, 3, 4], [3, 2, 0]]),
        "target_lengths": torch.tensor([3, 2]),
        "texts": ["abc", "ba"],
    }
    return torch.utils.data.DataLoader([{"train": batch, "arch": batch}] * steps, batch_size=None)


def test_extract_from_a_lightning_checkpoint_without_the_table(tmp_path):
    """A hinge search whose argmax is over the budget, trained two steps (the penalty on the
    device, then with the logs) and saved by the Trainer; the table is then removed: extract
    rebuilds the objective from the checkpoint and picks the module's path, not the argmax."""
    space = SearchSpace(SPACE)
    lut = tmp_path / "lut.json"
    write_table(space, lut)
    costs = LatencyTable.load(lut).costs(space)
    dearest = {n: max(range(len(c)), key=c.__getitem__) for n, c in costs.edges.items()}
    cheapest = {n: min(range(len(c)), key=c.__getitem__) for n, c in costs.edges.items()}
    budget = (costs.at(dearest) + costs.at(cheapest)) / 2
    torch.manual_seed(0)
    module = SearchModule(
        SPACE,
        vocab=VOCAB,
        method="darts",
        warmup_steps=1,
        arch_lr=0.0,  # the alphas stay where they are put
        latency_table=str(lut),
        penalty="hinge",
        budget=budget,
        warmup_epochs=0,
    )
    with torch.no_grad():
        for name, alpha in module.arch.alphas.items():
            alpha.zero_()
            alpha[dearest[name]] = 1.0  # the argmax is the dearest path: over the budget
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        log_every_n_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=batches(2))
    assert int(module.search_step) == 2
    chosen = module.chosen_path()
    assert chosen != module.arch.argmax() and costs.at(chosen) <= budget
    ckpt = tmp_path / "search.ckpt"
    trainer.save_checkpoint(ckpt)
    lut.unlink()
    spec, _, _ = extract(ckpt)
    assert space.index_of(spec) == chosen
    state = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain data: loads without pickles
    assert state["objective"] == module.objective.state_dict() and "target_costs" not in state
    # a checkpoint of before the objective kept the target's costs alone: still no table needed
    state["target_costs"] = state.pop("objective")["costs"]["latency"]
    torch.save(state, tmp_path / "old.ckpt")
    spec, _, _ = extract(tmp_path / "old.ckpt")
    assert space.index_of(spec) == chosen


def test_a_logged_arch_step_reports_the_alphas_gradient_norm():
    """``arch/grad_norm`` (beside ``arch/entropy``) says how strong the alphas' signal is: the norm
    of the gradient the step applied (known answer: plain SGD at lr 1 moves the alphas by it)."""
    torch.manual_seed(0)
    module = SearchModule(SPACE, vocab=VOCAB, method="darts", warmup_epochs=0, warmup_steps=1)
    before = module.arch.flat().detach().clone()
    sgd = torch.optim.SGD(module.arch.parameters(), lr=1.0)
    batch = next(iter(batches(1)))["arch"]
    _, logs = module.search.arch_step(batch, 0, sgd, None, log=True)
    moved = (module.arch.flat().detach() - before).norm()
    assert float(logs["arch/grad_norm"]) == pytest.approx(float(moved), rel=1e-5) and float(moved) > 0
    _, quiet = module.search.arch_step(batch, 1, sgd, None, log=False)
    assert "arch/grad_norm" not in quiet
