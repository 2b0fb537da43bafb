"""Search methods are registered objects: a new one is a class in a test file, and the module,
the step and the checkpoint use it without a line changed elsewhere."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from supernet.errors import UserError
from supernet.search.mixed_op import EdgePlan
from supernet.search.module import SearchModule
from supernet.search.relaxations import RELAXATIONS, Relaxation, build, register
from tests.test_nonfinite import TINY_SPACE, VOCAB, loader, trainer


@register
class FirstThenDarts(Relaxation):
    """Weights train candidate 0 only; the alphas learn from the DARTS mixture. It counts its
    calls, keeps a counter in checkpoints, and logs a schedule value."""

    name = "test_first_then_darts"

    def __init__(self, scale: float = 1.0):
        self.scale, self.calls, self.progress = scale, {"weight": 0, "arch": 0}, []

    def options(self):
        return {"scale": self.scale}

    def schedule(self, progress):
        self.progress.append(progress)
        return {"search/test_progress": progress}

    def plan(self, arch, phase, step, host_probs=None):
        self.calls[phase] += 1
        if phase == "weight":
            return {name: EdgePlan("single", index=0) for name in arch.names}
        return {name: EdgePlan("sum", weights=self.scale * p) for name, p in arch.probs().items()}

    def state_dict(self, arch):
        return {"calls": dict(self.calls)}

    def load_state_dict(self, state):
        self.calls = dict(state.get("calls", self.calls))


def test_a_relaxation_registered_in_a_test_file_runs_the_search(tmp_path):
    module = SearchModule(TINY_SPACE, vocab=VOCAB, method=FirstThenDarts.name, method_options={"scale": 2.0},
                          warmup_epochs=1, warmup_steps=1, arch_lr=0.05)  # fmt: skip
    run = trainer(epochs=3)
    run.fit(module, train_dataloaders=loader(4, search=True))
    method = module.relaxation
    assert isinstance(method, FirstThenDarts) and method.scale == 2.0
    assert method.calls == {"weight": 8, "arch": 8}  # 2 search epochs x 4 steps; warm-up is uniform's
    assert method.progress == [0.0, 1.0]  # the schedule runs over the search epochs only
    assert module.alphas_moved()
    assert module.hparams.method_options == {"scale": 2.0}
    path = tmp_path / "search.ckpt"
    run.save_checkpoint(path)
    loaded = SearchModule.load_from_checkpoint(path, map_location="cpu")  # its state comes back
    assert isinstance(loaded.relaxation, FirstThenDarts) and loaded.relaxation.calls == method.calls
    assert loaded.relaxation.scale == 2.0
    assert loaded.chosen_path() == module.chosen_path()


def test_unknown_methods_and_options_are_user_errors_that_name_what_is_accepted():
    with pytest.raises(UserError, match="unknown 'nope'.*darts.*gumbel.*st.*uniform"):
        build("nope")
    with pytest.raises(UserError, match="'st' does not take hard .*sample_ahead"):
        build("st", {"hard": True})
    with pytest.raises(UserError, match="method_options"):
        SearchModule(TINY_SPACE, vocab=VOCAB, method="gumbel", method_options={"tau": 1.0})
    with pytest.raises(ValueError, match="registered twice"):

        @register
        class Again(Relaxation):  # noqa: F811
            name = "darts"


def test_the_shipped_methods_are_registered_with_their_options():
    assert {"darts", "gumbel", "st", "uniform"} <= set(RELAXATIONS)
    assert build("gumbel", {"hard": True}).options() == {"hard": True, "tau_start": 5.0, "tau_end": 0.5}
    assert build("st").options() == {"sample_ahead": False, "baseline_decay": 0.9}
    assert not build("uniform").picks_architecture and build("st").picks_architecture


def test_gumbel_owns_its_temperature_schedule_over_the_search_epochs():
    logged = []

    class Tau(pl.Callback):
        def on_train_epoch_end(self, run, pl_module):
            logged.append(pl_module.relaxation.tau)

    module = SearchModule(TINY_SPACE, vocab=VOCAB, method="gumbel", warmup_epochs=1, warmup_steps=1,
                          method_options={"tau_start": 4.0, "tau_end": 1.0})  # fmt: skip
    trainer(epochs=4, callbacks=[Tau()]).fit(module, train_dataloaders=loader(2, search=True))
    # warm-up leaves tau at its start; then 4 -> 2 -> 1 over the three search epochs
    assert logged == pytest.approx([4.0, 4.0, 2.0, 1.0])
    assert math.isclose(module.relaxation.tau, 1.0)


def test_uniform_is_single_path_one_shot_training_and_never_returns_the_first_candidate_alone():
    module = SearchModule(TINY_SPACE, vocab=VOCAB, method="uniform", warmup_epochs=0, warmup_steps=1)
    ran = []

    class Paths(pl.Callback):
        def on_train_batch_end(self, run, pl_module, outputs, batch, batch_idx):
            ran.append(tuple(edge.plan.index for edge in pl_module.net.edges.values()))

    trainer(epochs=2, callbacks=[Paths()]).fit(module, train_dataloaders=loader(8, search=True))
    assert not module.picks_architecture and not module.alphas_moved()  # no alpha ever learns
    assert len(set(ran)) > 1 and any(index != 0 for path in ran for index in path)
    with torch.no_grad():
        assert all(torch.equal(a, torch.zeros_like(a)) for a in module.arch.alphas.values())


def test_fair_uniform_trains_every_candidate_of_an_edge_once_a_round():
    from supernet.search.arch_params import ArchParams

    arch = ArchParams({"a": ["x", "y", "z", "w"], "b": ["p", "q"]}, seed=3)
    method = build("uniform", {"fair": True})
    assert method.options() == {"fair": True, "draw_weights": {}, "stage_depth": False}
    assert build("uniform").options() == {"fair": False, "draw_weights": {}, "stage_depth": False}
    rounds = []
    for r in range(3):
        plans = [method.plan(arch, "weight", 2 * (4 * r + i)) for i in range(4)]  # SearchStep's streams
        picks = {edge: [p[edge].index for p in plans] for edge in ("a", "b")}
        assert sorted(picks["a"]) == [0, 1, 2, 3]  # each of the four once in a round of four
        assert sorted(picks["b"]) == [0, 0, 1, 1]  # a narrower edge repeats its own permutation
        rounds.append(picks["a"])
    assert len({tuple(r) for r in rounds}) > 1  # a new permutation each round
    again = ArchParams({"a": ["x", "y", "z", "w"], "b": ["p", "q"]}, seed=3)
    assert [again.fair_sample(s)["a"] for s in range(4)] == rounds[0]  # (seed, step) only: every rank


def test_uniform_draw_weights_draw_matching_candidates_as_often_as_weighted():
    from supernet.search.arch_params import ArchParams

    arch = ArchParams({"a": ["tdnn", "conformer", "down2-conformer"], "b": ["p", "q"]}, seed=0)
    method = build("uniform", {"draw_weights": {"former": 4, "down": 0.25}})
    # a: tdnn 1, conformer 4, down2-conformer 4 * 0.25 = 1 -> 1/6, 4/6, 1/6; b: no pattern, even
    picks = [method.plan(arch, "weight", step) for step in range(6000)]
    share = [sum(p["a"].index == i for p in picks) / len(picks) for i in range(3)]
    assert share == pytest.approx([1 / 6, 4 / 6, 1 / 6], abs=0.02)
    assert sum(p["b"].index for p in picks) / len(picks) == pytest.approx(0.5, abs=0.02)
    again = build("uniform", {"draw_weights": {"former": 4, "down": 0.25}})
    assert [again.plan(arch, "weight", s)["a"].index for s in range(50)] == [p["a"].index for p in picks[:50]]


def test_uniform_describes_which_candidates_its_draw_weights_reach():
    """A pattern matches by substring: ``former`` reaches the narrow e96 block too, and the line
    shown before training says so, with each reweighted candidate's weight (products included)."""
    from supernet.search.arch_params import ArchParams

    arch = ArchParams(
        {"a": ["res-tdnn-k3-d1", "conformer-k15", "res-conformer-k15-e96", "res-down2-conformer-k15"],
         "b": ["res-tdnn-k3-d1", "skip"]},
        seed=0,
    )  # fmt: skip
    line = build("uniform", {"draw_weights": {"former": 3, "down": 0.5}}).describe(arch)
    assert "conformer-k15 x3, res-conformer-k15-e96 x3, res-down2-conformer-k15 x1.5 (the rest x1)" in line
    assert "tdnn" not in line and "skip" not in line
    assert build("uniform", {}).describe(arch) is None
    assert (
        build("uniform", {"draw_weights": {"former": 1}}).describe(arch).endswith("no candidate reweighted")
    )


def uniform_paths_of_edge_a(options: dict) -> list[int]:
    """The candidate edge ``a`` ran in each of 16 training steps of a uniform ``SearchModule``."""
    module = SearchModule(TINY_SPACE, vocab=VOCAB, method="uniform", warmup_epochs=1, warmup_steps=1,
                          method_options=options)  # fmt: skip
    ran = []

    class Paths(pl.Callback):
        def on_train_batch_end(self, run, pl_module, outputs, batch, batch_idx):
            ran.append(pl_module.net.edges["a"].plan.index)

    trainer(epochs=2, callbacks=[Paths()]).fit(module, train_dataloaders=loader(8, search=True))
    assert len(ran) == 16
    return ran


def test_uniform_trains_with_its_own_options_in_and_after_the_warm_up(capsys):
    """The module runs uniform's own plans, not the plain warm-up's: its options used to be dropped
    on the way, so every uniform supernet drew evenly. It shows the weights before training."""
    # a: tdnn-k3-d1 weight 1, skip 1000 -> skip about 999 times in 1000; evenly, 8 of 16 would be
    assert uniform_paths_of_edge_a({"draw_weights": {"skip": 1000}}).count(1) >= 15
    assert "uniform draw_weights {'skip': 1000}: skip x1000 (the rest x1)" in capsys.readouterr().out
    # fair: a round of two steps trains both of a's candidates (independent draws repeat one)
    ran = uniform_paths_of_edge_a({"fair": True})
    assert all(sorted(ran[i : i + 2]) == [0, 1] for i in range(0, 16, 2))


DEPTH_SPACE = {  # budget's shape in small: three droppable front layers, a stride, then a stage of two
    **TINY_SPACE,
    "layers": [
        {"name": "f1", "choice": ["tdnn-k3-d1", "tdnn-k3-d2", "skip"]},
        {"name": "f2", "choice": ["tdnn-k3-d1", "tdnn-k3-d2", "skip"]},
        {"name": "f3", "choice": ["tdnn-k3-d1", "tdnn-k3-d2", "skip"]},
        "tdnn-k3-d1-s2",
        {"name": "b1", "choice": ["skip", "tdnn-k3-d1", "tdnn-k5-d2"]},
        {"name": "b2", "choice": ["tdnn-k3-d1", "tdnn-k5-d2", "skip"]},
        {"name": "c", "choice": ["tdnn-k3-d1", "tdnn-k3-d2"]},  # no skip: drawn on its own
    ],
}


def test_uniform_stage_depth_draws_each_stages_depth_uniformly():
    from supernet.search.arch_params import ArchParams
    from supernet.space import SearchSpace

    space = SearchSpace(DEPTH_SPACE)
    arch = ArchParams(space.edges, seed=1)
    method = build("uniform", {"stage_depth": True})
    method.use_space(space)
    paths = [{e: p.index for e, p in method.plan(arch, "weight", 2 * s).items()} for s in range(8000)]
    skip = {e: cands.index("skip") for e, cands in space.edges.items() if "skip" in cands}
    front = [sum(p[e] != skip[e] for e in ("f1", "f2", "f3")) for p in paths]
    block = [sum(p[e] != skip[e] for e in ("b1", "b2")) for p in paths]
    # depth uniform per stage: 1/4 each for the front (per-edge draws: all dropped 1/27), 1/3 for b
    assert [front.count(k) / len(paths) for k in range(4)] == pytest.approx([0.25] * 4, abs=0.02)
    assert [block.count(k) / len(paths) for k in range(3)] == pytest.approx([1 / 3] * 3, abs=0.02)
    # which layers: a front of depth one keeps each layer as often; a kept layer's op is even
    ones = [p for p, k in zip(paths, front) if k == 1]
    assert [sum(p[e] != skip[e] for p in ones) / len(ones) for e in ("f1", "f2", "f3")] == pytest.approx(
        [1 / 3] * 3, abs=0.03
    )
    kept_b1 = [p["b1"] for p in paths if p["b1"] != skip["b1"]]
    assert kept_b1.count(1) / len(kept_b1) == pytest.approx(0.5, abs=0.03)
    assert sum(p["c"] for p in paths) / len(paths) == pytest.approx(0.5, abs=0.02)
    again = build("uniform", {"stage_depth": True})
    again.use_space(space)
    assert [again.plan(arch, "weight", 2 * s)["f1"].index for s in range(50)] == [p["f1"] for p in paths[:50]]


def test_uniform_stage_depth_needs_a_space_with_depth():
    from supernet.search.arch_params import ArchParams
    from supernet.space import SearchSpace

    method = build("uniform", {"stage_depth": True})
    with pytest.raises(ValueError, match="use_space"):
        method.plan(ArchParams(SearchSpace(DEPTH_SPACE).edges, seed=0), "weight", 0)
    no_skip = {**TINY_SPACE, "layers": [{"name": "b", "choice": ["tdnn-k3-d1", "tdnn-k3-d2"]}]}
    with pytest.raises(UserError, match="flat.yaml.*no edge has a skip"):
        method.use_space(SearchSpace(no_skip, source="flat.yaml"))
    # through the module too: a uniform supernet trains with it
    ran = uniform_paths_of_edge_a({"stage_depth": True})
    assert set(ran) == {0, 1}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stage_depth": True, "fair": True}, "exclude"),
        ({"stage_depth": True, "draw_weights": {"former": 2}}, "exclude"),
        ({"draw_weights": {"former": 0}}, "positive"),
        ({"draw_weights": {"former": "x"}}, "positive"),
        ({"draw_weights": {"former": 2}, "fair": True}, "exclude"),
    ],
)
def test_uniform_draw_weights_refuses_bad_weights(options, message):
    with pytest.raises(UserError, match=message):
        build("uniform", options)


def test_uniform_draw_weights_refuses_a_pattern_no_candidate_has():
    from supernet.search.arch_params import ArchParams

    method = build("uniform", {"draw_weights": {"lstm": 2}})
    with pytest.raises(UserError, match="lstm.*match no candidate"):
        method.plan(ArchParams({"a": ["tdnn", "conformer"]}, seed=0), "weight", 0)
