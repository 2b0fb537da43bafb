"""The supernet: the layer loop of ``DerivedNet`` with a ``MixedOp`` at every choice of a space."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

import ops
from supernet.derived import Encoder
from supernet.search.mixed_op import EdgePlan, MixedOp
from supernet.space import SearchSpace


class Supernet(Encoder):
    """All candidates of a ``SearchSpace`` in one network; each step runs the plan it is given."""

    def __init__(self, space: SearchSpace, vocab_size: int):
        f = space.fields
        dim, dropout = f["dim"], f["dropout"]
        layers: list[nn.Module] = []
        for layer in space.layers:
            if isinstance(layer, str):
                layers.append(ops.build(layer, dim, dim, dropout=dropout))
            else:
                cands = [ops.build(c, dim, dim, dropout=dropout) for c in layer.candidates]
                layers.append(MixedOp(layer.name, cands, list(layer.candidates)))
        super().__init__(
            input_op=ops.build(f["input"], f["feature_dim"], dim, dropout=dropout),
            layers=layers,
            head=ops.build(f["head"], dim, vocab_size, dropout=dropout),
        )
        self.space = space
        self.edges: dict[str, MixedOp] = {m.name: m for m in self.layers if isinstance(m, MixedOp)}

    def apply_plan(self, plans: dict[str, EdgePlan]) -> None:
        """Tell every edge how to run in the next forward pass."""
        missing = set(self.edges) - set(plans)
        if missing:
            raise ValueError(f"no plan for edge(s) {sorted(missing)}")
        for name, edge in self.edges.items():
            edge.plan = plans[name]

    def fix_path(self, choices: dict[str, int]) -> None:
        """Run one path (e.g. the argmax) with plain weights, for evaluation."""
        self.apply_plan({name: EdgePlan("single", index=int(i)) for name, i in choices.items()})

    def path_parameters(self, choices: dict[str, int]) -> Iterator[tuple[str, nn.Parameter]]:
        """The named parameters that path ``choices`` runs with: every fixed layer's, the input
        op's and the head's, and on each edge the chosen candidate's alone."""
        chosen = {f"layers.{i}.candidates.{int(choices[m.name])}." for i, m in enumerate(self.layers)
                  if isinstance(m, MixedOp)}  # fmt: skip
        edges = tuple(f"layers.{i}." for i, m in enumerate(self.layers) if isinstance(m, MixedOp))
        for name, param in self.named_parameters():
            if not name.startswith(edges) or name.startswith(tuple(chosen)):
                yield name, param


def initial_matrices(net: Supernet) -> dict[str, torch.Tensor]:
    """A copy, on the CPU, of the network's weight matrices (tensors of two or more dimensions) as
    they are now: before training, what ABS's angle (``supernet.select.angle``) starts from."""
    return {name: p.detach().to("cpu", copy=True) for name, p in net.named_parameters() if p.dim() >= 2}
