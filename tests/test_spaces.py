"""The shipped `budget` space: it loads, its scaled baselines are paths of it, its residual blocks
can be dropped (depth), a supernet over it takes an ST search step on the CPU, and its CPU
latency table covers every op of it."""

from __future__ import annotations

import pytest
import torch

import ops
from supernet.archspec import ArchSpec
from supernet.derived import DerivedNet
from supernet.latency import LatencyTable
from supernet.search.module import SearchModule
from supernet.space import SearchSpace
from tests.test_nonfinite import VOCAB, token_batch, trainer

BASELINES = {
    "budget": ["budget_tdnn_d", "budget_conformer_s"],
    "budget_open": ["budget_open_tdnn_d", "budget_open_conformer_s"],
}


@pytest.fixture(scope="module")
def budget() -> SearchSpace:
    return SearchSpace.load("budget")


def test_the_budget_space_loads(budget):
    assert budget.num_paths == 3**3 * 10**6 and budget.max_total_stride == 3
    assert 144 <= budget.fields["dim"] <= 256
    blocks = [c for c in budget.choices if c.name.startswith("block")]
    assert len(blocks) == 6
    for choice in blocks:  # depth: a block can be dropped; width and block type vary
        assert "skip" in choice.candidates
        assert all(c.startswith("res-") or c == "skip" or "former" in c for c in choice.candidates)
        assert any("-e" in c for c in choice.candidates)
        assert {c.split("-")[0] for c in choice.candidates} >= {"res", "conformer", "ebranchformer", "skip"}
        assert any(c.startswith("res-down2-") for c in choice.candidates)  # the frame rate varies too


@pytest.mark.parametrize(("space", "name"), [(s, n) for s, names in BASELINES.items() for n in names])
def test_each_scaled_baseline_is_a_path_of_its_space(space, name):
    space = SearchSpace.load(space)
    spec = ArchSpec.load(name)
    assert spec.name == name
    choices = space.index_of(spec)
    derived = space.derive(choices, name=name)
    assert derived.layers == spec.layers and derived.to_dict() == spec.to_dict()


def test_budget_open_is_budget_with_open_attention_blocks_and_a_normed_head(budget):
    """Only the interface differs: the full-rate attention blocks lose their final LayerNorm and
    the head gains one; every other candidate, and the open baselines' layers, are budget's."""
    opened = SearchSpace.load("budget_open")
    assert opened.fields["head"] == "norm-linear" and budget.fields["head"] == "linear"
    for mine, theirs in zip(opened.choices, budget.choices, strict=True):
        assert [c.removesuffix("-open") for c in mine.candidates] == list(theirs.candidates)
        unwrapped_attention = [c for c in theirs.candidates if c.startswith(("conformer", "ebranchformer"))]
        assert [c for c in mine.candidates if c.endswith("-open")] == [
            c + "-open" for c in unwrapped_attention
        ]
    for name in ("tdnn_d", "conformer_s"):
        closed, open_ = ArchSpec.load(f"budget_{name}"), ArchSpec.load(f"budget_open_{name}")
        assert [layer.removesuffix("-open") for layer in open_.layers] == closed.layers


def test_a_network_with_another_head_is_not_a_path(budget):
    """budget_tdnn_d's layers are a path of budget_open, its plain head is not: the supernet holds no
    weights for it, so it is refused (a study then leaves it out of the ranking)."""
    opened = SearchSpace.load("budget_open")
    with pytest.raises(ValueError, match="'budget_tdnn_d' has head 'linear', the space 'norm-linear'"):
        opened.index_of(ArchSpec.load("budget_tdnn_d"))
    assert budget.index_of(ArchSpec.load("budget_tdnn_d")) == opened.index_of(
        ArchSpec.load("budget_open_tdnn_d")
    )


def test_a_study_names_the_baselines_it_cannot_score(budget):
    """The supernet ranking leaves out a baseline that is not a path, and says which and why."""
    from supernet.study.rank import paths_in_space

    specs = {name: ArchSpec.load(name) for name in ("budget_open_tdnn_d", "budget_tdnn_d")}
    with pytest.warns(UserWarning, match=r"budget_tdnn_d \('budget_tdnn_d' has head 'linear'"):
        paths = paths_in_space(SearchSpace.load("budget_open"), specs)
    assert list(paths) == ["budget_open_tdnn_d"]


def test_budget_baselines_scale_the_shipped_ones():
    tdnn, conformer = ArchSpec.load("budget_tdnn_d"), ArchSpec.load("budget_conformer_s")
    original = ArchSpec.load("tdnn_d")
    kept = [layer for layer in tdnn.layers if layer != "skip"]
    assert [layer.removeprefix("res-") for layer in kept] == original.layers
    assert [layer for layer in conformer.layers if layer.startswith("conformer")] == ArchSpec.load(
        "conformer_s"
    ).layers
    assert tdnn.parameter_free_count == 3 and conformer.parameter_free_count == 5
    assert tdnn.streamable and not conformer.streamable


def test_a_searched_budget_arch_retrains_with_no_supernet_code(budget):
    """An ArchSpec with residual, narrow and E-Branchformer layers is a plain DerivedNet."""
    pick = {c.name: len(c.candidates) - 2 - i % 3 for i, c in enumerate(budget.choices)}
    spec = budget.derive(pick, name="mixed_pick")
    assert any(layer.startswith("ebranchformer") for layer in spec.layers)
    again = ArchSpec.from_dict(spec.to_dict())
    net = DerivedNet(again, vocab_size=len(VOCAB)).eval()
    assert all(type(m).__module__.startswith(("ops", "torch")) for m in net.modules() if m is not net)
    batch = token_batch(dim=80)
    log_probs, lengths = net(batch["features"], batch["feature_lengths"])
    assert log_probs.shape[:2] == (4, 14) and lengths.tolist() == [14, 7, 10, 4]


def test_one_st_search_step_over_the_budget_space_on_the_cpu():
    torch.manual_seed(0)
    module = SearchModule("budget", vocab=VOCAB, method="st", warmup_epochs=0, warmup_steps=1)
    assert set(module.arch.alphas) == {c.name for c in module.space.choices}
    before = {k: v.detach().clone() for k, v in module.arch.alphas.items()}
    batch = token_batch(dim=80)
    loader = torch.utils.data.DataLoader([{"train": batch, "arch": batch}] * 2, batch_size=None)
    trainer(epochs=1).fit(module, train_dataloaders=loader)
    moved = [k for k, v in module.arch.alphas.items() if not torch.equal(v, before[k])]
    assert moved, "an ST arch step moves the alphas"
    assert all(torch.isfinite(v).all() for v in module.arch.alphas.values())


@pytest.mark.parametrize(
    ("name", "table_name"), [("budget", "budget_cpu"), ("budget_open", "budget_open_cpu")]
)
def test_the_budget_cpu_tables_cover_their_space(name, table_name):
    table = LatencyTable.load(table_name)
    settings = table.settings
    assert (settings["device"], settings["threads"], settings["batch"], settings["seconds"]) == (
        "cpu",
        1,
        1,
        4.0,
    )
    specs = {entry["spec"] for entry in table.entries.values()}
    space = SearchSpace.load(name)
    assert {c for choice in space.choices for c in choice.candidates} <= specs
    assert space.fields["head"] in specs
    ms = {entry["spec"]: entry["ms"] for entry in table.entries.values() if not entry["head"]}
    conformer = next(c for c in space.choices[-1].candidates if c.startswith("conformer"))
    assert ms["skip"] < ms["res-tdnn-k3-d1"] < ms["res-tdnn-k3-d2-e384"] < ms[conformer]
    assert ops.build("ebranchformer-k15-f4-rel", 192).lookahead == ops.UNBOUNDED


def test_the_budget_rate_cpu_table_prices_every_path_at_every_rate():
    """Every op after the stride edge is in the table at 20, 30 and 40 ms frames: costs build, a
    stride-2 path costs more than the same path at stride 4, and the baselines are priced."""
    table = LatencyTable.load("budget_rate_cpu")
    assert (table.settings["device"], table.settings["threads"], table.settings["batch"]) == ("cpu", 1, 1)
    space = SearchSpace.load("budget_rate")
    costs = table.costs(space)
    assert 0 < costs.cheapest() < costs.dearest()
    stem = space.choices[[c.name for c in space.choices].index("stem")]
    path = {c.name: 0 for c in space.choices}  # TDNNs everywhere
    at = {
        s: table.predict(space.derive({**path, "stem": stem.candidates.index(f"tdnn-k3-d1-s{s}")}, "p"))
        for s in (2, 4)
    }
    assert at[2] > 1.3 * at[4]
    for name in ("budget_tdnn_d", "budget_conformer_s"):
        assert table.predict(ArchSpec.load(name)) > 0
