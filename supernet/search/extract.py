"""The architecture of a search checkpoint: the top-1 candidate of every edge, as an ArchSpec
(``supernet extract``, whose command line is ``supernet.commands.extract``).

Reads only the space and the alphas from the checkpoint (no network is built), and reports what
a DARTS-style search is known to go wrong on: how many parameter-free candidates (skip, zero)
the chosen architecture holds. Alphas that hold NaN or inf are refused (their argmax means
nothing); alphas that never left their start are extracted with a warning: that path is a
tie-break, not a search result.
"""

from __future__ import annotations

from pathlib import Path

import torch

from supernet.archspec import ArchSpec
from supernet.errors import NonFiniteError, UserError
from supernet.latency import HardwareObjective, SpaceCosts
from supernet.latency.costs import PICK_RULES
from supernet.search.arch_params import ArchParams
from supernet.space import SearchSpace


def load_search_checkpoint(ckpt: str | Path) -> tuple[SearchSpace, ArchParams, dict]:
    """The space, the alphas and the hyper-parameters of a ``supernet search`` checkpoint."""
    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    # mmap: only the alphas and the hyper-parameters are read off the disk, not every weight (a
    # select or a scoring script that checks a checkpoint before loading it whole pays little)
    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    # the search's objective travels with the checkpoint (SearchModule.on_save_checkpoint); older
    # checkpoints kept the target's costs alone
    saved = {k: state.get(k) for k in ("objective", "target_costs")}
    hparams = {
        **state.get("hyper_parameters", {}),
        **saved,
        "kept_initial_weights": "initial_weights" in state,
    }
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


def search_objective(space: SearchSpace, hparams: dict) -> HardwareObjective:
    """The search's ``HardwareObjective``, as the checkpoint saved it: the table need not be at hand.
    A checkpoint older than that is rebuilt from its options, with the target's costs it saved
    (``target_costs``) or else from its table."""
    if hparams.get("objective"):
        return HardwareObjective.from_state_dict(hparams["objective"])
    options = {k: hparams[k] for k in HardwareObjective.OPTIONS if k in hparams}
    saved = hparams.get("target_costs")
    target_costs = SpaceCosts.from_dict(saved) if saved else None
    return HardwareObjective.from_options(space, vocab_size(hparams), **options, target_costs=target_costs)


def vocab_size(hparams: dict) -> int:
    return len(hparams.get("vocab", [])) or 2


def extract(
    ckpt: str | Path, name: str | None = None, pick: str | None = None
) -> tuple[ArchSpec, ArchParams, dict]:
    """The searched architecture: every edge's argmax (or depth first: ``pick``, by default the
    search's own) or, when it is over the search's budget, the most probable path within it
    (``pick_path``, as ``SearchModule.chosen_path``)."""
    space, arch, hparams = load_search_checkpoint(ckpt)
    method = hparams.get("method", "search")
    if method == "uniform":
        raise UserError(f"{ckpt}: {UNIFORM_PICKS_NOTHING}")
    choices = pick_path(space, search_objective(space, hparams), dict(arch.alphas), pick_rule(hparams, pick))
    return space.derive(choices, name=name or f"{space.name}-{method}"), arch, hparams


def check_pick(rule: str, where: str) -> None:
    if rule not in PICK_RULES:
        raise UserError(f"{where}: unknown pick rule {rule!r}; choose one of {', '.join(PICK_RULES)}")


def pick_rule(hparams: dict, pick: str | None = None) -> str:
    """``pick`` (``extract --pick``), else the search's ``model.pick``; ``argmax`` for a checkpoint
    searched before that setting."""
    rule = pick or hparams.get("pick", "argmax")
    check_pick(rule, "--pick" if pick else "the checkpoint's model.pick")
    return rule


def drop_for(space: SearchSpace, rule: str) -> dict[str, int] | None:
    """What ``choose_path`` needs for ``rule``: the droppable edges for ``depth``, else None."""
    return space.droppable() if rule == "depth" else None


def pick_path(space: SearchSpace, objective: HardwareObjective, alphas: dict, rule: str) -> dict[str, int]:
    """The path the alphas pick under ``rule`` (``PICK_RULES``): ``depth`` decides each droppable
    layer's depth before its op (``costs.depth_first_path``)."""
    return objective.choose_path(alphas, drop_for(space, rule))


UNIFORM_PICKS_NOTHING = (
    "method uniform trains the supernet's weights on uniformly sampled paths (single-path one-shot); "
    "its alphas never learn, so it picks no architecture itself: pick paths from it for each budget "
    "with `supernet select CKPT --data CORPUS --budget B`, or search with --model.method st, darts or gumbel"
)

NOT_MOVED_WARNING = (
    "warning: the alphas never moved from their start (arch_lr 0, method uniform, or no search epoch "
    "ran): this architecture is a tie-break, not a search result"
)
