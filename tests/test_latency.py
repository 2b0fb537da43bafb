"""Latency tables, predictions, penalties and the profile / latency-check / pareto commands."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from losses.latency import ResourcePenalty, additive, hinge, multiplicative
from supernet import latency
from supernet.commands.cli import main
from supernet.commands.pareto import pareto_front
from supernet.latency import (
    HardwareObjective,
    LatencyTable,
    LatencyTableError,
    NetworkRunner,
    covering_archs,
    make_settings,
    measure_networks,
    param_costs,
    profile_space,
    settle,
    space_slots,
)
from supernet.space import SearchSpace

TINY = {
    "name": "tiny",
    "features": "fbank",
    "feature_dim": 8,
    "dim": 16,
    "input": "linear",
    "layers": [
        {"name": "a", "choice": ["tdnn-k3-d1", "skip"]},
        "tdnn-k3-d1-s2",
        {"name": "b", "choice": ["tdnn-k5-d1", "tdnn-k3-d2", "skip"]},
    ],
    "head": "linear",
}


def settings(**kw):
    base = {"device": "cpu", "threads": 1, "batch": 1, "seconds": 0.2, "vocab": 5}
    return make_settings(**{**base, **kw})


def hand_table(space: SearchSpace, st: dict) -> tuple[LatencyTable, dict[str, float]]:
    """A table whose every slot costs a distinct known number of ms (and params)."""
    entries, cost = {}, {}
    for i, slot in enumerate(s for position in space_slots(space, st)[0] for s in position):
        cost[slot.key] = 1.0 + i
        entries[slot.key] = {"spec": slot.spec, "ms": 1.0 + i, "params": 10 * (i + 1), "bytes": 0}
    return LatencyTable(st, entries), cost


def test_slots_follow_the_strides():
    space = SearchSpace(TINY)
    slots, names = space_slots(space, settings())
    assert names == [None, "a", None, "b", None]
    frames = [[s.frames for s in position] for position in slots]
    # 0.2 s = 20 frames; the s2 layer halves what follows it (ceil)
    assert frames == [[20], [20, 20], [20], [10, 10, 10], [10]]
    assert slots[-1][0].head and slots[-1][0].out_dim == 5 and slots[0][0].in_dim == 8


def test_save_load_round_trip(tmp_path):
    space = SearchSpace(TINY)
    table, _ = hand_table(space, settings())
    table.save(tmp_path / "lut.json")
    again = LatencyTable.load(tmp_path / "lut.json")
    assert again.settings == table.settings and again.entries == table.entries


def test_settings_mismatch_names_the_key_and_force_works(tmp_path):
    table, _ = hand_table(SearchSpace(TINY), settings())
    table.save(tmp_path / "lut.json")
    with pytest.raises(LatencyTableError, match="'threads'"):
        LatencyTable.load(tmp_path / "lut.json", expect={"threads": 2})
    with pytest.raises(LatencyTableError, match="'device_name'"):
        LatencyTable.load(tmp_path / "lut.json", expect={"device_name": "NVIDIA H100 80GB HBM3", "batch": 1})
    forced = LatencyTable.load(tmp_path / "lut.json", expect={"threads": 2, "batch": 1}, force=True)
    assert forced.check({"threads": 2, "batch": 1}, force=True) == ["threads"]


def test_predict_is_the_sum_of_its_parts():
    space = SearchSpace(TINY)
    st = settings()
    table, cost = hand_table(space, st)
    spec = space.derive({"a": "skip", "b": "tdnn-k3-d2"})
    keys = [
        "linear|8>16|T20",
        "skip|16>16|T20",
        "tdnn-k3-d1-s2|16>16|T20",
        "tdnn-k3-d2|16>16|T10",
        "linear+log_softmax|16>5|T10",
    ]
    assert table.predict(spec) == pytest.approx(sum(cost[k] for k in keys))
    with pytest.raises(LatencyTableError, match="no entry"):
        table.predict(SearchSpace({**TINY, "dim": 32}).derive({"a": 0, "b": 0}))


def test_expected_is_the_probability_weighted_sum_and_differentiable():
    space = SearchSpace(TINY)
    table, _ = hand_table(space, settings())
    costs = table.costs(space)
    alphas = {
        "a": torch.tensor([0.3, -0.2], requires_grad=True),
        "b": torch.tensor([0.1, 0.5, -1.0], requires_grad=True),
    }
    probs = {k: torch.softmax(v, 0) for k, v in alphas.items()}
    expected = table.expected(space, probs)
    by_hand = costs.fixed + sum(float((probs[k] * torch.tensor(costs.edges[k])).sum()) for k in probs)
    assert float(expected) == pytest.approx(by_hand)
    # at a one-hot distribution it is the prediction of that architecture
    onehot = {"a": torch.tensor([0.0, 1.0]), "b": torch.tensor([0.0, 0.0, 1.0])}
    assert float(table.expected(space, onehot)) == pytest.approx(
        table.predict(space.derive({"a": 1, "b": 2}))
    )
    expected.backward()
    p = probs["b"].detach()
    c = torch.tensor(costs.edges["b"])
    assert torch.allclose(alphas["b"].grad, p * (c - (p * c).sum()))  # softmax Jacobian times costs


def test_params_expected_from_table_and_from_ops_agree_with_the_network():
    space = SearchSpace(TINY)
    ops_costs = param_costs(space, vocab=5)
    spec = space.derive({"a": 0, "b": 1})
    assert ops_costs.at({"a": 0, "b": 1}) == spec.params(5)


def test_penalties_known_values():
    ce = torch.tensor(2.0)
    assert float(additive(ce, torch.tensor(30.0), reference=10.0, lam=0.5)) == pytest.approx(3.5)
    # ProxylessNAS: CE * (log E / log ref) ** beta = 2 * (log 1000 / log 10) ** 0.5 = 2 * sqrt(3)
    right = float(multiplicative(ce, torch.tensor(1000.0), reference=10.0, beta=0.5))
    assert right == pytest.approx(2 * math.sqrt(3))
    wrong = 2 * math.log(1000.0**0.5) / math.log(10.0)  # the log(lat ** beta) bug gives 3.0
    assert abs(right - wrong) > 0.4
    assert float(hinge(ce, torch.tensor(12.0), budget=10.0, lam=1.0)) == pytest.approx(2.2)
    inside = torch.tensor(8.0, requires_grad=True)
    loss = hinge(ce, inside, budget=10.0, lam=1.0)
    loss.backward()
    assert float(loss) == 2.0 and float(inside.grad) == 0.0
    assert float(ResourcePenalty("none")(ce, torch.tensor(99.0))) == 2.0
    with pytest.raises(ValueError, match="budget"):
        ResourcePenalty("hinge")
    with pytest.raises(ValueError, match="reference"):
        ResourcePenalty("multiplicative", reference=0.5)


def test_hinge_search_costs_push_towards_the_budget(tmp_path):
    space = SearchSpace(TINY)
    table, _ = hand_table(space, settings())
    table.save(tmp_path / "lut.json")
    budget = table.costs(space).cheapest()  # the least a budget may be; uniform alphas expect more
    objective = HardwareObjective.from_options(
        space, 5, latency_table=tmp_path / "lut.json", penalty="hinge", penalty_lambda=1.0, budget=budget
    )
    assert objective.penalty.reference == pytest.approx(
        float(table.expected(space, {"a": torch.ones(2) / 2, "b": torch.ones(3) / 3}))
    )
    alphas = {"a": torch.zeros(2, requires_grad=True), "b": torch.zeros(3, requires_grad=True)}
    probs = {k: torch.softmax(v, 0) for k, v in alphas.items()}
    loss, logs = objective.loss_and_logs(torch.tensor(1.0), probs, {"a": 0, "b": 0})
    assert {"arch/expected_latency_ms", "arch/expected_params", "arch/argmax_latency_ms"} <= set(logs)
    loss.backward()
    cheapest = min(range(3), key=lambda k: table.costs(space).edges["b"][k])
    assert int(alphas["b"].grad.argmin()) == cheapest  # gradient descent raises the cheapest candidate


def test_streaming_marks_blstm_and_full_attention():
    data = {
        **TINY,
        "layers": [{"name": "a", "choice": ["tdnn-k3-d1", "blstm", "transformer-f4-abs", "mhsa-local-w2"]}],
    }
    space = SearchSpace(data)
    st = settings(chunk_ms=80)  # 8 frames a chunk
    slots, _ = space_slots(space, st)
    frames = {s.spec: s.frames for s in slots[1]}
    assert frames == {"tdnn-k3-d1": 8 + 1, "blstm": None, "transformer-f4-abs": None, "mhsa-local-w2": 8 + 2}
    assert "stream-excluded" in [s for s in slots[1] if s.spec == "blstm"][0].key
    picked = {arch.layers[0] for arch in covering_archs(space, st)}
    assert picked == {"tdnn-k3-d1", "mhsa-local-w2"}
    entries = {
        s.key: {"ms": None if s.frames is None else 1.0, "params": 1, "bytes": 4} for p in slots for s in p
    }
    with pytest.raises(LatencyTableError, match="'blstm'.*cannot stream"):
        LatencyTable(st, entries).costs(space)


def test_profile_and_check_commands_on_a_tiny_space(tmp_path, capsys):
    space_path = tmp_path / "tiny.yaml"
    space_path.write_text(yaml.safe_dump(TINY))
    lut = tmp_path / "lut.json"
    args = ["--threads", "1", "--seconds", "0.2", "--vocab", "5", "--warmup", "0", "--repeats", "1"]
    assert main(["profile", "--space", str(space_path), *args, "--rounds", "1", "-o", str(lut)]) == 0
    data = json.loads(lut.read_text())
    assert data["settings"]["threads"] == 1 and data["settings"]["device"] == "cpu"
    assert {"device_name", "torch", "dtype", "batch", "seconds", "chunk_ms"} <= set(data["settings"])
    table = LatencyTable.load(lut)
    space = SearchSpace(TINY)
    for position in space_slots(space, table.settings)[0]:
        for slot in position:
            assert table.entries[slot.key]["ms"] >= 0  # never below nothing, offset or not
    assert table.predict(space.derive({"a": 0, "b": 0})) > 0
    capsys.readouterr()
    check = ["latency-check", "--lut", str(lut), "--space", str(space_path), "--n", "3", "--repeats", "1"]
    assert main([*check, "--plot", str(tmp_path / "check.png")]) == 0
    out = dict(
        line.split(": ", 1)
        for line in capsys.readouterr().out.splitlines()
        if ": " in line and line[0] != " "
    )
    assert 0.0 <= float(out["within_10pct"]) <= 1.0 and float(out["mape"]) >= 0.0
    assert (tmp_path / "check.png").stat().st_size > 0
    # a table of other settings is a user error: one line on stderr, exit status 2
    assert main([*check, "--threads", "2"]) == 2
    assert (
        "supernet latency-check: error: " in (err := capsys.readouterr().err) and "'threads' differs" in err
    )
    with pytest.raises(LatencyTableError, match="'threads'"):  # --debug: the error itself
        main([*check, "--threads", "2", "--debug"])


def test_pareto_front_and_command(tmp_path, capsys):
    assert pareto_front([(1, 0.5), (2, 0.4), (3, 0.45), (1, 0.6)]) == [True, True, False, False]
    space = SearchSpace(TINY)
    table, _ = hand_table(space, settings())
    table.save(tmp_path / "lut.json")
    for i, (choices, wer) in enumerate(
        [({"a": 0, "b": 0}, 0.3), ({"a": 1, "b": 2}, 0.5), ({"a": 0, "b": 2}, 0.6)]
    ):
        run = tmp_path / f"run{i}"
        run.mkdir()
        spec = space.derive(choices, name=f"arch{i}")
        spec.to_yaml(run / "arch.yaml")
        (run / "metrics.json").write_text(json.dumps({"wer": {"test": wer}, "params": spec.params(5)}))
    runs = [str(tmp_path / f"run{i}") for i in range(3)]
    assert main(["pareto", *runs, "--lut", str(tmp_path / "lut.json"), "-o", str(tmp_path / "p.png")]) == 0
    lines = {line.split()[0].split("/")[-1]: line for line in capsys.readouterr().out.splitlines()}
    # hand table: run0 20 ms, run1 23 ms, run2 22 ms; run1 has the fewest params, run0 the best WER
    assert lines["run0"].endswith("latency, params") and lines["run1"].endswith(" params")
    assert lines["run2"].endswith("-")  # slower, bigger and worse than run0
    assert (tmp_path / "p.png").stat().st_size > 0


def test_cuda_graph_is_a_checked_setting_and_old_tables_default_to_none(tmp_path):
    with pytest.raises(ValueError, match="cuda_graph"):
        settings(cuda_graph=True)  # device cpu
    table, _ = hand_table(SearchSpace(TINY), settings())
    assert table.settings["cuda_graph"] is False
    with pytest.raises(LatencyTableError, match="'cuda_graph'"):
        table.check({"cuda_graph": True})
    old = {k: v for k, v in table.settings.items() if k != "cuda_graph"}  # written before graphs
    assert LatencyTable(old, table.entries).settings["cuda_graph"] is False


def fake_op_ms(slot) -> float:
    """A distinct known time per slot key (what a perfectly steady machine would measure)."""
    return len(slot.spec) + slot.frames / 100 + (2.0 if slot.head else 0.0)


def test_profile_entries_add_up_to_each_network_with_the_measured_offset(monkeypatch):
    """Marks that cost 0.3 ms each: the offset takes them out, so that a network's entries sum
    to its unmarked end-to-end time, and an entry is the op's median less that cost."""
    mark_ms = 0.3

    def op_times(self, warmup, repeats):
        return [[fake_op_ms(s) + mark_ms + jitter for jitter in (-0.05, 0.0, 0.05)] for s in self.slots]

    def total_times(self, warmup, repeats):
        return [sum(fake_op_ms(s) for s in self.slots)] * repeats

    monkeypatch.setattr(NetworkRunner, "op_times", op_times)
    monkeypatch.setattr(NetworkRunner, "total_times", total_times)
    space = SearchSpace(TINY)
    st = settings()
    table = profile_space(space, st, warmup=0, repeats=1, rounds=2, progress=False)
    assert table.settings["op_offset_ms"] == pytest.approx(-mark_ms)
    assert table.settings["rounds"] == 2 and table.settings["settle_s"] == pytest.approx(0.0, abs=0.01)
    covers = [latency.arch_slots(arch, st) for arch in covering_archs(space, st)]
    for position in space_slots(space, st)[0]:
        for slot in position:
            entry = table.entries[slot.key]
            assert entry["ms"] == pytest.approx(fake_op_ms(slot))
            assert entry["ms_marked"] == pytest.approx(fake_op_ms(slot) + mark_ms)
            occurrences = sum(s.key == slot.key for slots in covers for s in slots)
            assert entry["samples"] == 3 * 2 * occurrences  # 3 timings, 2 rounds, every occurrence
    for arch in covering_archs(space, st):
        assert table.predict(arch) == pytest.approx(total_times(NetworkRunner(arch, st), 0, 1)[0])


def test_check_cycles_the_networks_and_takes_the_median(monkeypatch):
    calls = []

    def total_times(self, warmup, repeats):
        calls.append(self.name)
        return [10.0 * len(calls)] * repeats  # every call slower than the last: a drifting machine

    monkeypatch.setattr(NetworkRunner, "total_times", total_times)
    space = SearchSpace(TINY)
    archs = [space.derive({"a": 0, "b": 0}, "x"), space.derive({"a": 1, "b": 2}, "y")]
    measured = measure_networks(archs, settings(), warmup=0, repeats=2, rounds=3)
    assert calls == ["x", "y"] * 3  # interleaved, not x x x y y y
    assert measured == [30.0, 40.0]  # medians of (10, 30, 50) and (20, 40, 60)


def test_settle_runs_the_networks_for_the_given_time(monkeypatch):
    runner = NetworkRunner(SearchSpace(TINY).derive({"a": 0, "b": 0}), settings())
    passes = []
    monkeypatch.setattr(latency.NetworkRunner, "total_times", lambda self, w, r: passes.append(1) or [0.0])
    assert settle([runner], 0.0) < 0.01 and not passes
    assert settle([runner], 0.05) >= 0.05 and passes


def test_most_probable_path_within_budget_is_exact_and_within():
    """Brute force over every path of a small space: the knapsack finds the most probable path whose
    cost is within the budget; the argmax path is over it here (the case it exists for)."""
    import itertools

    from supernet.latency import SpaceCosts, choose_path

    costs = SpaceCosts("latency", 1.0, {"a": [0.5, 2.0, 3.1], "b": [0.2, 1.7], "c": [0.0, 0.9, 2.5, 1.3]})
    torch.manual_seed(0)
    alphas = {"a": torch.tensor([0.1, 1.0, 2.0]), "b": torch.tensor([0.0, 1.5]), "c": torch.randn(4)}
    log_probs = {n: torch.log_softmax(a.double(), -1).tolist() for n, a in alphas.items()}
    paths = [dict(zip(costs.edges, ks)) for ks in itertools.product(range(3), range(2), range(4))]
    exact = [costs.at(p) for p in paths[::5]]  # budgets that some path meets exactly
    for budget in (1.75, 2.5, 3.3, 4.05, 5.0, 8.0, *exact):
        within = [p for p in paths if costs.at(p) <= budget]
        best = max(within, key=lambda p: sum(log_probs[n][k] for n, k in p.items()))
        found = costs.most_probable_within(log_probs, budget)
        assert found == best, budget
        assert costs.at(found) <= budget
        chosen = choose_path(alphas, costs, budget)
        argmax = {n: int(a.argmax()) for n, a in alphas.items()}
        assert chosen == (argmax if costs.at(argmax) <= budget else best)
    assert costs.at({n: int(a.argmax()) for n, a in alphas.items()}) > 5.0  # the argmax is over most budgets
    assert costs.most_probable_within(log_probs, 1.65) is None  # even the cheapest path (1.7) is over
    thirds = SpaceCosts("latency", 0.0, {e: [1 / 3, 1.0] for e in "xyz"})
    uniform = {e: [math.log(0.4), math.log(0.6)] for e in "xyz"}
    assert thirds.most_probable_within(uniform, 1.0) == {"x": 0, "y": 0, "z": 0}  # costs exactly 1.0
    assert choose_path(alphas, costs, None) == {n: int(a.argmax()) for n, a in alphas.items()}


def test_search_and_extract_keep_the_budget_without_the_table(tmp_path):
    """A hinge-budget search whose argmax is over the budget: the module's path, search.json's flag
    and `extract` all give the most probable path within it, and `extract` needs only the checkpoint
    (the costs travel with it; the table is gone)."""
    from supernet.commands.search import search_summary
    from supernet.search.extract import extract
    from supernet.search.module import SearchModule

    space = SearchSpace(TINY)
    table, _ = hand_table(space, settings())
    table.save(tmp_path / "lut.json")
    costs = HardwareObjective.from_options(space, 5, latency_table=tmp_path / "lut.json").target_costs
    dearest = {n: max(range(len(c)), key=c.__getitem__) for n, c in costs.edges.items()}
    cheapest = {n: min(range(len(c)), key=c.__getitem__) for n, c in costs.edges.items()}
    budget = (costs.at(dearest) + costs.at(cheapest)) / 2
    vocab = ["<blank>", "<unk>", "a", "b", "c"]
    lut = str(tmp_path / "lut.json")
    module = SearchModule(TINY, vocab=vocab, latency_table=lut, penalty="hinge", budget=budget)
    with torch.no_grad():
        for name, alpha in module.arch.alphas.items():
            alpha.zero_()
            alpha[dearest[name]] = 1.0  # the argmax is the dearest path: over the budget
    chosen = module.chosen_path()
    assert chosen != dearest and costs.at(chosen) <= budget
    assert search_summary(module, 1.0, 1)["argmax_over_budget"] is True
    checkpoint = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "search.ckpt")
    (tmp_path / "lut.json").unlink()
    spec, _, _ = extract(tmp_path / "search.ckpt")
    assert space.index_of(spec) == chosen
