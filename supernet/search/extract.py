"""`supernet extract CKPT -o ARCH.yaml`: the top-1 candidate of every edge, as an ArchSpec.

Reads only the space and the alphas from the checkpoint (no network is built), and reports what
a DARTS-style search is known to go wrong on: how many parameter-free candidates (skip, zero)
the chosen architecture holds. Alphas that hold NaN or inf are refused (their argmax means
nothing); alphas that never left their start are extracted with a warning: that path is a
tie-break, not a search result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from supernet.archspec import ArchSpec
from supernet.errors import NonFiniteError, UserError
from supernet.latency import PENALTY_ARGS, SpaceCosts, choose_path, search_costs
from supernet.search.arch_params import ArchParams
from supernet.search.space import SearchSpace


def load_search_checkpoint(ckpt: str | Path) -> tuple[SearchSpace, ArchParams, dict]:
    """The space, the alphas and the hyper-parameters of a ``supernet search`` checkpoint."""
    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=False)
    # the search's costs of the budget's metric travel with the checkpoint (SearchModule.on_save_checkpoint)
    hparams = {**state.get("hyper_parameters", {}), "target_costs": state.get("target_costs")}
    if "space" not in hparams:
        raise ValueError(f"{path}: not a search checkpoint (no 'space' in its hyper-parameters)")
    space = SearchSpace(hparams["space"], source=f"{path}:space")
    arch = ArchParams(space.edges, seed=int(hparams.get("seed", 0)))
    prefix = "arch."
    arch.load_state_dict(
        {k[len(prefix) :]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    )
    bad = arch.nonfinite_edges()
    if bad:
        values = [round(v, 4) for v in arch.alphas[bad[0]].detach().tolist()]
        raise NonFiniteError(
            f"{path}: alpha {bad[0]!r} holds NaN/inf ({values}"
            f"{f', and {len(bad) - 1} more edge(s)' if len(bad) > 1 else ''}): the search diverged, "
            "this checkpoint has no architecture to extract"
        )
    return space, arch, hparams


def extract(ckpt: str | Path, name: str | None = None) -> tuple[ArchSpec, ArchParams, dict]:
    """The searched architecture: every edge's argmax or, when the search had a hinge budget, the
    most probable path within it (as ``SearchModule.chosen_path``; needs the search's table)."""
    space, arch, hparams = load_search_checkpoint(ckpt)
    method = hparams.get("method", "search")
    if method == "uniform":
        raise UserError(f"{ckpt}: {UNIFORM_PICKS_NOTHING}")
    budget = hparams.get("budget") if hparams.get("penalty") == "hinge" else None
    costs = hparams.get("target_costs")  # saved with the checkpoint: the table need not be at hand
    costs = SpaceCosts(costs["metric"], costs["fixed"], costs["edges"]) if costs else None
    if budget is not None and costs is None:
        penalty = {k: hparams[k] for k in PENALTY_ARGS if k in hparams}
        costs = search_costs(space, len(hparams.get("vocab", [])) or 2, **penalty).target_costs
    choices = choose_path(dict(arch.alphas), costs, budget)
    return space.derive(choices, name=name or f"{space.name}-{method}"), arch, hparams


UNIFORM_PICKS_NOTHING = (
    "method uniform trains the supernet's weights on uniformly sampled paths (single-path one-shot); "
    "its alphas never learn, so it picks no architecture. Search with --model.method st, darts or "
    "gumbel; discrete strategies that pick from a uniform supernet are not built yet"
)

NOT_MOVED_WARNING = (
    "warning: the alphas never moved from their start (arch_lr 0, method uniform, or no search epoch "
    "ran): this architecture is a tie-break, not a search result"
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ckpt", help="a checkpoint written by `supernet search` (e.g. RUN/checkpoints/last.ckpt)"
    )
    parser.add_argument("-o", "--output", required=True, help="where to write the ArchSpec YAML")
    parser.add_argument("--name", default=None, help="the architecture's name (default SPACE-METHOD)")


def run(args: argparse.Namespace) -> int:
    """Writes the YAML and prints the choices; a tie-break (``arch.moved()`` False) is warned about."""
    spec, arch, hparams = extract(args.ckpt, args.name)
    moved = arch.moved()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    spec.to_yaml(args.output)
    probs = arch.probs()
    argmax = arch.argmax()
    for edge, index in SearchSpace(hparams["space"]).index_of(spec).items():
        note = "" if index == argmax[edge] else ", not the argmax: the argmax path is over the budget"
        print(f"{edge}: {arch.labels[edge][index]}  (p={float(probs[edge].detach()[index]):.2f}{note})")
    vocab = len(hparams.get("vocab", [])) or 2
    print(f"parameter-free layers chosen: {spec.parameter_free_count} of {len(spec.layers)}")
    print(
        f"params: {spec.params(vocab):,}  total stride: {spec.total_stride}  look-ahead: {spec.total_lookahead} frames"
    )
    print(f"written: {args.output}")
    if not moved:
        print(NOT_MOVED_WARNING, file=sys.stderr)
    return 0
