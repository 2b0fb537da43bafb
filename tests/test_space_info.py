"""`supernet space info --lut`: the range a latency budget can take, checked against every path."""

import itertools

import yaml

from supernet.commands.cli import main
from supernet.latency import LatencyTable, make_settings, space_slots
from supernet.space import SearchSpace

EDGES = [
    {"name": "a", "choice": ["tdnn-k3-d1", "tdnn-k5-d1"]},
    {"name": "b", "choice": ["tdnn-k3-d2", "skip"]},
]
SPACE = {"name": "two", "features": "fbank", "feature_dim": 8, "dim": 16, "input": "linear", "layers": EDGES}


def test_space_info_prints_the_cheapest_and_dearest_path_latency(tmp_path, capsys):
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(SPACE))
    space = SearchSpace(SPACE)
    settings = make_settings(device="cpu", threads=1, seconds=0.2, vocab=64)
    slots = [s for position in space_slots(space, settings)[0] for s in position]
    table = LatencyTable(
        settings, {s.key: {"ms": 1.0 + 2**i, "params": 0, "bytes": 0} for i, s in enumerate(slots)}
    )
    table.save(tmp_path / "lut.json")
    costs = table.costs(space)
    every_path = [
        costs.at(dict(zip(space.edges, p))) for p in itertools.product(*map(range, costs.sizes.values()))
    ]
    assert main(["space", "info", str(tmp_path / "two.yaml"), "--lut", str(tmp_path / "lut.json")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("latency:"))
    assert line.startswith(f"latency: {min(every_path):g} .. {max(every_path):g} ms")
    assert min(every_path) < max(every_path)
