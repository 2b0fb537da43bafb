"""What a study runs: the space and baselines at the study's width, the latency table and its
budgets, random paths within each budget, and the argument lists of every search and retrain.

Random architectures: paths drawn uniformly (each edge's candidate uniformly, seeded), kept when
the table predicts them within the budget, without repeats: a uniform sample of the paths that
fit. When fewer than ``n`` fit (every path seen), all of them are taken and the study says so.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from supernet.archspec import ArchSpec
from supernet.errors import UserError
from supernet.latency import LatencyTable, LatencyTableError, SpaceCosts, make_settings, profile_space
from supernet.space import SearchSpace, resolve_space_path
from supernet.study.config import baseline_budget

# more paths than this: percentiles come from a seeded sample of SAMPLE paths
ENUMERATE, SAMPLE = 100_000, 20_000
SLACK = 1e-9  # relative: a budget taken from a cost admits that cost (see resolve_budgets)


@dataclass
class Arch:
    """One architecture of the study and why it is there."""

    name: str
    kind: str  # searched | random | baseline | control
    spec: ArchSpec
    budget: str | None  # the budget's label (2.5ms, p50); None: a baseline over every budget
    budget_ms: float | None
    method: str | None = None
    search_seed: int | None = None
    search: Path | None = None  # the search run that picked it


@dataclass
class Run:
    """One `supernet search` or `supernet retrain` run: its folder and its arguments (no --out)."""

    command: str
    out: Path
    argv: list[str]

    @property
    def checkpoint(self) -> Path:
        """Where the run keeps its last epoch (a search's supernet; what a resume continues)."""
        return self.out / "checkpoints" / "last.ckpt"


@dataclass
class RouteAlone:
    """The route ``supernet study --alone-route`` times again in one go, each run with the machine to
    itself: the study's search ``search`` (of ``budget``'s label; None: a supernet that picks nothing)
    trained again (``supernet``), its select again (None for a search that picks by itself) for
    ``budgets``, and the retrain of its first pick (``retrain``)."""

    search: str
    budget: str | None
    supernet: Run
    select: Run | None
    budgets: list
    retrain: Run


def prepare_corpus(study: dict) -> Path:
    """The corpus folder; the built-in corpus is built first when ``corpus.build`` asks for it."""
    corpus = study["corpus"]
    if corpus["build"] is None:
        return Path(corpus["path"]).resolve()
    from supernet.data.corpus import build_corpus

    build = corpus["build"]
    return build_corpus(corpus["path"], tuple(build["langs"]), build["minutes"], build["seed"]).resolve()


def _with_dim(data: dict, dim: int | None) -> dict:
    return data if dim is None else {**data, "dim": dim}


def space(study: dict) -> SearchSpace:
    """The space at the study's width."""
    path = resolve_space_path(study["space"])
    return SearchSpace(_with_dim(yaml.safe_load(path.read_text()), study["dim"]), source=str(path))


def write_space(space: SearchSpace, out: Path) -> Path:
    """``out/space.yaml``: what every search of the study reads."""
    path = out / "space.yaml"
    path.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    return path


def arch_path(out: Path, name: str) -> Path:
    return out / "arch" / f"{name}.yaml"


def write_arch(out: Path, spec: ArchSpec) -> Path:
    path = arch_path(out, spec.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec.to_yaml(path)
    return path


def baselines(study: dict) -> list[ArchSpec]:
    """The hand-designed baselines at the study's width."""
    specs = [ArchSpec.load(name) for name in study["baselines"]]
    return [ArchSpec.from_dict(_with_dim(s.to_dict(), study["dim"]), s.source) for s in specs]


def latency_table(
    study: dict, out: Path, space: SearchSpace, extra: list[ArchSpec]
) -> tuple[LatencyTable, Path]:
    """The study's table: the configured one, or (``latency.profile``) this space's, measured here
    under the configured table's settings into ``out/latency.json`` (once: a resume reads it)."""
    latency = study["latency"]
    table = LatencyTable.load(latency["table"])
    if not latency["profile"]:
        return table, table.source
    path = out / "latency.json"
    if path.is_file():
        return LatencyTable.load(path), path
    keys = ("device", "dtype", "threads", "batch", "seconds", "chunk_ms", "vocab", "clock", "cuda_graph")
    settings = make_settings(**{k: table.settings[k] for k in keys})
    print(f"[study] measuring the latency table of {space.name} (dim {space.fields['dim']}) -> {path}")
    measured = profile_space(
        space, settings, latency["warmup"], latency["repeats"], latency["rounds"], extra, progress=False
    )
    measured.save(path)
    return LatencyTable.load(path), path


def space_costs(table: LatencyTable, space: SearchSpace, extra: list[ArchSpec]) -> SpaceCosts:
    """The table's costs of the space (checked, with the baselines', before anything runs)."""
    try:
        for spec in extra:
            table.predict(spec)
        return table.costs(space)
    except LatencyTableError as err:
        raise LatencyTableError(f"{err}; or let the study measure its own: latency.profile: true") from err


def path_costs(space: SearchSpace, costs: SpaceCosts, seed: int = 0) -> list[float]:
    """Predicted latency of every path (or of ``SAMPLE`` seeded draws in a larger space)."""
    sizes = [range(len(c.candidates)) for c in space.choices]
    if space.num_paths <= ENUMERATE:
        paths = itertools.product(*sizes)
    else:
        rng = random.Random(seed)
        paths = (tuple(space.sample_path(rng).values()) for _ in range(SAMPLE))
    names = [c.name for c in space.choices]
    return [costs.at(dict(zip(names, p))) for p in paths]


def resolve_budgets(
    budgets: list, costs: list[float], baseline_ms: dict[str, float] | None = None
) -> list[tuple[str, float]]:
    """``(label, ms)`` of each budget; ``pNN`` is the NNth percentile (nearest rank) of ``costs``,
    ``0.5xNAME`` half of ``baseline_ms[NAME]`` (the table's prediction of that baseline). A budget
    taken from a cost gets ``SLACK`` so that the path or baseline at it fits whichever way its sum
    is rounded (a table's prediction and the search's costs add the same terms in other orders)."""
    ordered = sorted(costs)
    out = []
    for budget in budgets:
        named = baseline_budget(budget)
        if named:
            factor, name = named
            out.append((budget, factor * (baseline_ms or {})[name] * (1 + SLACK)))
        elif isinstance(budget, str):
            rank = math.ceil(float(budget[1:]) / 100 * len(ordered))
            out.append((budget, ordered[max(rank, 1) - 1] * (1 + SLACK)))
        else:
            out.append((f"{budget:g}ms", float(budget)))
    return out


def random_paths(
    space: SearchSpace, costs: SpaceCosts, budget_ms: float, n: int, seed: int, max_draws: int = 200_000
) -> tuple[list[dict[str, int]], str | None]:
    """``n`` distinct uniform paths predicted within ``budget_ms``, and a note when fewer exist."""
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    kept, draws = [], 0
    while len(kept) < n and len(seen) < space.num_paths and draws < max_draws:
        draws += 1
        path = space.sample_path(rng)
        if tuple(path.values()) not in seen:
            seen.add(tuple(path.values()))
            if costs.at(path) <= budget_ms:
                kept.append(path)
    if len(kept) == n:
        return kept, None
    if len(seen) == space.num_paths:
        return (
            kept,
            f"only {len(kept)} of the space's {space.num_paths} paths fit {budget_ms:.3f} ms (asked for {n})",
        )
    return kept, f"{len(kept)} of {n} random paths within {budget_ms:.3f} ms found in {draws} draws"


def most_parameters_path(
    space: SearchSpace, costs: SpaceCosts, budget_ms: float, floor: float | None, draws: int, seed: int
) -> tuple[dict[str, int] | None, str | None]:
    """The path with the most parameters (then the least predicted latency) among ``draws``
    uniform draws within [``floor`` x ``budget_ms``, ``budget_ms``] (``floor`` None: any cost up to
    the budget), and a note when none fits. Why: over a study's networks the parameter count
    often ranks stand-alone CER better than the supernet, so its extreme is the free pick a search
    must beat (``controls.params_max``)."""
    from supernet.latency.costs import param_costs
    from supernet.select.feasible import FeasibleSampler

    params = param_costs(space, 2)  # the head is every path's: the vocabulary changes no pick
    sampler = FeasibleSampler(costs, budget_ms, floor=None if floor is None else floor * budget_ms)
    rng, best = random.Random(seed), None
    for _ in range(draws):
        path = sampler(rng)
        if path is None:  # its tries found none within the band
            break
        candidate = (params.at(path), -costs.at(path), tuple(int(path[name]) for name in space.edges))
        best = candidate if best is None else max(best, candidate)
    if best is None:
        band = f"{budget_ms:.3f} ms" if floor is None else f"{floor * budget_ms:.3f}-{budget_ms:.3f} ms"
        return None, f"no path of the space within {band}: no most-parameters control"
    return dict(zip(space.edges, best[2])), None


def option_argv(options: dict[str, Any]) -> list[str]:
    """``{trainer.max_epochs: 3}`` -> ``["--trainer.max_epochs", "3"]`` (lists, dicts as JSON)."""

    def text(value):
        if isinstance(value, bool) or value is None or isinstance(value, list | dict):
            return json.dumps(value)
        return str(value)

    return [arg for key, value in options.items() for arg in (f"--{key}", text(value))]


def search_run(
    study: dict, out: Path, data: Path, space: Path, table: Path, method: str, seed: int, budget
) -> Run:
    """A search under ``budget`` (hinge penalty); ``budget`` None: a method that picks nothing
    (``uniform``), one supernet for every budget (folder ``METHOD-sSEED-any``)."""
    label, ms = budget or ("any", None)
    penalty = [] if budget is None else ["--model.penalty", "hinge", "--model.budget", repr(ms)]
    argv = [
        "--data", str(data), "--model.space", str(space.resolve()), "--model.method", method,
        "--seed_everything", str(seed), "--model.latency_table", str(Path(table).resolve()),
        *penalty, "--logger", "csv", *option_argv(study["search"]["options"]),
    ]  # fmt: skip
    return Run("search", out / "search" / f"{method}-s{seed}-{label}", argv)


def select_run(study: dict, out: Path, data: Path, search: Run, table: Path, budgets: list) -> Run:
    """One ``supernet select`` on ``search``'s supernet for all of ``budgets`` (train once, pick for
    every budget: the budgets share its scores): the best path within each by the study's strategy
    (scored on the arch split, never a test set), in ``select/SEARCH-STRATEGY``."""
    select = study["select"]
    options = [
        arg for key, value in select["options"].items() for arg in ("--option", f"{key}={json.dumps(value)}")
    ]
    argv = [
        str(search.checkpoint), "--data", str(data), "--strategy", select["strategy"],
        "--budgets", *(repr(ms) for _, ms in budgets), "--lut", str(Path(table).resolve()),
        "--evaluations", str(select["evaluations"]), "--seed", str(select["seed"]),
        "--batches", str(select["batches"]), "--metric", select["metric"], *options,
    ]  # fmt: skip
    if select["finalists"] > 1:  # only then: a study begun before finalists existed still resumes
        argv += ["--finalists", str(select["finalists"]), "--finetune-steps", str(select["finetune_steps"])]
        argv += ["--halving"] if select["halving"] else []
    if select["floor"] is not None:  # likewise
        argv += ["--floor", repr(select["floor"])]
    return Run("select", out / "select" / f"{search.out.name}-{select['strategy']}", argv)


def selected_arch(run: Run, label: str, ms: float) -> ArchSpec:
    """The path a finished ``select_run`` picked within budget ``ms`` (its ``select.json``'s best),
    named ``RUN-LABEL``."""
    found = [b for b in json.loads((run.out / "select.json").read_text())["best"] if b["budget"] == ms]
    if not found or found[0].get("path") is None:
        note = found[0].get("note") if found else f"no pick for budget {ms!r}"
        raise UserError(f"{run.out}: budget {label}: {note or 'no path was picked'}")
    spec = ArchSpec.load(run.out / found[0]["arch"])
    return ArchSpec.from_dict({**spec.to_dict(), "name": f"{run.out.name}-{label}"}, spec.source)


def retrain_run(study: dict, out: Path, data: Path, arch: Path, name: str, seed: int) -> Run:
    argv = [
        "--arch", str(arch.resolve()), "--data", str(data), "--seed_everything", str(seed),
        "--logger", "csv", *option_argv(study["retrain"]["options"]),
    ]  # fmt: skip
    return Run("retrain", out / "retrain" / name / f"seed{seed}", argv)


def arch_key(spec: ArchSpec) -> str:
    """Equal for the same network under two names (a random draw that is a baseline): one retrain."""
    return json.dumps({k: v for k, v in spec.to_dict().items() if k != "name"}, sort_keys=True)
