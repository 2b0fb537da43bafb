"""The stages of a study, in order; every file under its folder DIR.

corpus -> ``space.yaml`` (at the study's width) and baselines -> latency table (``latency.json``
when measured here) and budgets -> searches (``search/METHOD-sSEED-BUDGET``, method x seed x
budget; a method that picks nothing, ``uniform``, once per seed) -> ``select/`` (a strategy's
pick per budget from the supernets of ``select.methods``) -> the picks (``arch/``) -> random
paths within each budget and the baselines that fit it -> the supernets' scores of every
architecture (``supernet_scores.json``) -> each one's latency measured under the table's settings
(``latency_measured.json``) -> every architecture retrained with each seed
(``retrain/NAME/seedK``) -> ``study.json``, ``study.md``, ``plots/``. ``study.yaml`` (the config
with its defaults) marks DIR as this study's.

Scoring and measuring come before the retrains: scoring needs the supernets' checkpoints,
measuring a GPU that nothing else shares, and a study stopped during its long retrain stage keeps
both (``--partial`` reports them). A study folder copied back without its checkpoints still resumes
(at the same paths: its runs' arguments name them): the picks are read from ``arch/``, kept scores
and latencies stand, and what a search without a checkpoint could not score is named in a note; on
a machine that does not match the table the retrains go on and latency waits for a resume on one
that does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from supernet import run_folder
from supernet.archspec import ArchSpec
from supernet.errors import UserError
from supernet.latency import CHECKED_KEYS, LatencyTable, LatencyTableError
from supernet.outputs import atomic_write_json
from supernet.select.score import METRICS
from supernet.study import costs as run_costs
from supernet.study import plan, rank, report, verdict
from supernet.study.config import StudyConfigError, load_config, picks_architecture
from supernet.study.execute import execute
from supernet.study.plan import Arch, Run

MARKER = "study.yaml"
STUDY_FILES = (
    MARKER, "study.json", "study.md", "space.yaml", "latency.json", "supernet_scores.json", "latency_measured.json",
    "partial.json", "partial.md", "sharing.json"
)  # fmt: skip
STUDY_FOLDERS = ("arch", "search", "select", "retrain", "alone", "alone_route", "plots", "plots_partial")
STAGES = ("search", "select", "retrain")


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if a == b else where or "<top>"


def _kept_study(out: Path) -> Any:
    """``out``'s kept ``study.yaml`` with the defaults of fields added since it was written
    (``controls``), so that a study begun before them still resumes and reports; as it is where it
    no longer loads."""
    previous = yaml.safe_load((out / MARKER).read_text())
    try:
        return load_config(previous, str(out / MARKER))
    except (StudyConfigError, TypeError, AttributeError):
        return previous


def _with_grown_seeds(previous: Any, study: dict) -> Any:
    """``previous`` with ``study``'s retrain seeds where those only add seeds after its own: a study
    run with fewer seeds (when device time is short) is grown, its finished retrains kept. Its seeds
    stay first, in their order: the first seed is the one the alone timings retrain."""
    try:
        old, new = list(previous["retrain"]["seeds"]), list(study["retrain"]["seeds"])
    except (KeyError, TypeError):
        return previous
    grown = new[: len(old)] == old
    return {**previous, "retrain": {**previous["retrain"], "seeds": new}} if grown else previous


def claim(out: Path, study: dict, overwrite: bool) -> None:
    """Make ``out`` this study's folder: new, or holding this very study (a resume, which may add
    retrain seeds); another study with results is refused unless ``overwrite`` (its files go,
    nothing else); files that are not a study's are refused."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    ours = [out / name for name in (*STUDY_FILES, *STUDY_FOLDERS) if (out / name).exists()]
    if ours == [out / MARKER]:  # a study that stopped before its first result: nothing to keep
        overwrite = True
    if (out / MARKER).is_file():
        previous = _kept_study(out)
        differs = _first_difference(_with_grown_seeds(previous, study), study)
        if differs and not overwrite:
            raise UserError(
                f"{out} holds another study ({previous.get('name')!r}; field {differs!r} differs): "
                "replace it with --overwrite, or choose another --out"
            )
    elif ours:
        names = ", ".join(p.name for p in ours[:4])
        raise UserError(
            f"{out} holds files that are not a study's ({names}; no {MARKER}): choose another --out"
        )
    if overwrite:
        for path in ours:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(yaml.safe_dump(study, sort_keys=False))


def check_test_sets(data: Path, wanted: list[str] | None) -> list[str]:
    from supernet.data.datamodule import resolve_splits

    have = list(resolve_splits(data, 0.0)["test"])
    missing = [name for name in wanted or [] if name not in have]
    if missing:
        raise StudyConfigError(
            f"field 'test_sets': {missing[0]!r} is not a test set of {data} ({', '.join(have)})"
        )
    return have if wanted is None else wanted


def _archs(
    study, out, searches, selects, space, baselines, table, costs, budgets, stored: bool = False
) -> tuple[list[Arch], list[str], list[str]]:
    """The searched picks (a search's own, or a strategy's from its supernet), the random paths and
    the baselines of every budget, notes, and the names of picks not made yet. ``stored``: the
    picks are the ones ``out/arch/`` holds (a partial report, which needs no checkpoint), as they
    are for a search whose checkpoint is gone; a pick not there is left out and named."""
    from supernet.search.extract import extract

    def pick(run: Run, name: str, label=None, ms=None) -> ArchSpec | None:
        if stored or (label is None and not run.checkpoint.is_file()):  # written to arch/ when it was picked
            path = plan.arch_path(out, name)
            return ArchSpec.load(path) if path.is_file() else None
        if label is None:
            return extract(run.checkpoint, name=name)[0]
        return plan.selected_arch(run, label, ms)

    archs, notes, unpicked = [], [], []
    for (method, seed, budget), run in searches.items():
        if budget is not None:  # a method that picks (uniform searches are picked from by select)
            spec = pick(run, run.out.name)
            if spec is None:
                unpicked.append(run.out.name)
            else:
                archs.append(Arch(spec.name, "searched", spec, *budget, method, seed, run.out))
    strategy = (study["select"] or {}).get("strategy")
    for (method, seed, _), (run, picked_for) in selects.items():
        for label, ms in picked_for:
            spec = pick(run, f"{run.out.name}-{label}", label, ms)
            if spec is None:
                unpicked.append(f"{run.out.name}-{label}")
            else:
                archs.append(
                    Arch(spec.name, "searched", spec, label, ms, f"{method}+{strategy}", seed, run.out)
                )
    for label, ms in budgets:
        paths, note = plan.random_paths(space, costs, ms, study["random"]["n"], study["random"]["seed"])
        archs += [
            Arch(f"random-{label}-{i}", "random", space.derive(p, f"random-{label}-{i}"), label, ms)
            for i, p in enumerate(paths)
        ]
        notes += [f"budget {label}: {note}"] if note else []
    for spec in baselines:
        fits = [(label, ms) for label, ms in budgets if table.predict(spec) <= ms] or [(None, None)]
        archs += [Arch(spec.name, "baseline", spec, label, ms) for label, ms in fits]
    # last, so that a network the study has under another name too is owned (and scored) by it
    for label, ms in budgets if study["controls"]["params_max"] else []:
        name = f"params-max-{label}"
        kept = plan.arch_path(out, name)
        if kept.is_file():  # drawn when this study was first planned: not again
            archs.append(Arch(name, "control", ArchSpec.load(kept), label, ms))
            continue
        floor = (study["select"] or {}).get("floor")  # the select's band, where one selects
        path, note = plan.most_parameters_path(
            space, costs, ms, floor, study["controls"]["draws"], study["random"]["seed"]
        )
        if path is not None:
            archs.append(Arch(name, "control", space.derive(path, name), label, ms))
        notes += [f"budget {label}: {note}"] if note else []
    return archs, notes, unpicked


def _kept(path: Path, archs: dict[str, str]) -> tuple[dict, set[str]]:
    """A kept file (``supernet_scores.json``, ``latency_measured.json``) and the names in it that
    still name the same network (``archs``: name -> network key; a pick may have changed on a
    resume, and its old figures are not its)."""
    kept = json.loads(path.read_text()) if path.is_file() else {}
    return kept, {name for name, key in kept.get("archs", {}).items() if archs.get(name) == key}


def _kept_scores(out: Path, archs: dict[str, str]) -> dict[str, dict]:
    """``supernet_scores.json``'s scores, by search, of the networks that still hold their names."""
    kept, same = _kept(out / "supernet_scores.json", archs)
    return {s: {n: v for n, v in by.items() if n in same} for s, by in kept.get("scores", {}).items()}


def _kept_latencies(out: Path, archs: dict[str, str]) -> tuple[dict | None, dict[str, float]]:
    """``latency_measured.json``'s device and the latencies of the networks that still hold their
    names (no device when none does)."""
    kept, same = _kept(out / "latency_measured.json", archs)
    ms = {n: v for n, v in kept.get("ms", {}).items() if n in same}
    return (kept.get("device") if ms else None), ms


def _supernet_scores(
    out: Path, searches: dict, data: Path, specs: dict, batches: int, notes: list[str]
) -> dict[str, dict]:
    """Each search's scores of the architectures (dev CER and CTC loss, inherited weights), kept in
    ``supernet_scores.json``: a resumed study scores only the networks not scored yet. A search
    whose checkpoint is gone keeps what it scored, and ``notes`` names what it could not score."""
    archs = {name: plan.arch_key(spec) for name, spec in specs.items()}
    scores = _kept_scores(out, archs)
    for run in searches.values():
        ckpt, have = run.checkpoint, scores.get(run.out.name, {})
        missing = {name: spec for name, spec in specs.items() if name not in have}
        if not missing:
            continue
        if not ckpt.is_file():
            notes.append(
                f"{run.out.name}: {len(missing)} network(s) not scored (its checkpoint {ckpt} is gone)"
            )
            continue
        print(f"[study] scoring {len(missing)} architectures with the supernet of {run.out}")
        scores[run.out.name] = {**have, **rank.supernet_scores(ckpt, data, missing, batches)}
        atomic_write_json(out / "supernet_scores.json", {"archs": archs, "scores": scores})
    return {search: by for search, by in scores.items() if by}


def _latencies(out: Path, table, latency: dict, specs: dict, notes: list[str]) -> tuple[dict | None, dict]:
    """The device and each network's measured latency (ms) by name, kept in
    ``latency_measured.json``: a resumed study measures only the networks not measured yet. On a
    machine that does not match the table (a resume on another card) nothing is measured, and
    ``notes`` says so: a later resume on a matching machine measures them."""
    archs = {name: plan.arch_key(spec) for name, spec in specs.items()}
    device, ms = _kept_latencies(out, archs)
    missing = {name: spec for name, spec in specs.items() if name not in ms}
    if not missing:
        return device, ms
    try:
        settings, measured = _measure(table, latency, list(missing.values()))
    except LatencyTableError as err:
        notes.append(f"{len(missing)} network(s) not measured on this machine: {err}")
        return device, ms
    device, ms = {key: settings[key] for key in CHECKED_KEYS}, {**ms, **dict(zip(missing, measured))}
    atomic_write_json(out / "latency_measured.json", {"archs": archs, "device": device, "ms": ms})
    return device, ms


def _release_gpu() -> None:
    """Give back the memory the scoring and measuring held before the retrains share the GPU."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _measure(table, latency: dict, specs: list) -> tuple[dict, list[float]]:
    """The table's settings (checked against this machine unless ``latency.force``) and each
    network's measured latency under them (ms, median)."""
    import torch

    from supernet.commands.latency_check import run_settings
    from supernet.latency import default_settle, measure_networks

    settings = run_settings(table, argparse.Namespace(), latency["force"])
    print(f"[study] measuring {len(specs)} networks on {settings['device_name']}")
    threads = torch.get_num_threads()  # the table's thread count is set while measuring
    settle_s = table.settings.get("settle_s", default_settle(settings))
    try:
        return settings, measure_networks(
            specs, settings, latency["warmup"], latency["repeats"], latency["rounds"], settle_s
        )
    finally:
        torch.set_num_threads(threads)


@dataclass
class Planned:
    """What a study runs, as its config and folder fix it (the picks once the searches are done)."""

    table: Any
    costs: Any  # the table's costs of the space
    budgets: list
    searches: dict
    selects: dict = field(default_factory=dict)
    archs: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    unpicked: list = field(default_factory=list)  # picks not made yet (a partial report)
    owners: dict = field(default_factory=dict)  # one retrain per network, under the first name it has
    retrains: dict = field(default_factory=dict)
    table_path: Any = None  # where the table is (a path the runs' arguments name)
    route: Any = None  # plan.RouteAlone: the route --alone-route times (None before the retrains are planned)


def _plan_searches(
    study: dict, out: Path, data: Path, space, baselines, table_path=None, write: bool = True
) -> Planned:
    table, table_path = (
        plan.latency_table(study, out, space, baselines)
        if table_path is None
        else (LatencyTable.load(table_path), table_path)
    )
    costs = plan.space_costs(table, space, baselines)
    space_path = plan.write_space(space, out) if write else out / "space.yaml"
    baseline_ms = {Path(name).stem: table.predict(spec) for name, spec in zip(study["baselines"], baselines)}
    budgets = plan.resolve_budgets(study["latency"]["budgets"], plan.path_costs(space, costs), baseline_ms)
    search = study["search"]
    searches = {
        (method, seed, budget): plan.search_run(study, out, data, space_path, table_path, method, seed, budget)
        for method in search["methods"] for seed in search["seeds"]
        for budget in (budgets if picks_architecture(method) else [None])
    }  # fmt: skip
    return Planned(table, costs, budgets, searches, table_path=table_path)


def _plan_selects(study: dict, out: Path, data: Path, planned: Planned) -> None:
    select = study["select"] or {"methods": []}
    planned.selects = {  # one select per supernet, for every budget it serves (one for a per-budget search)
        key: (plan.select_run(study, out, data, run, planned.table_path, these), these)
        for key, run in planned.searches.items() if key[0] in select["methods"]
        for these in [planned.budgets if key[2] is None else [key[2]]]
    }  # fmt: skip


def _plan_retrains(study, out, data, space, baselines, planned: Planned, stored: bool = False) -> None:
    planned.archs, planned.notes, planned.unpicked = _archs(
        study, out, planned.searches, planned.selects, space, baselines, planned.table, planned.costs,
        planned.budgets, stored,
    )  # fmt: skip
    for arch in planned.archs:
        if not stored:
            plan.write_arch(out, arch.spec)
        planned.owners.setdefault(plan.arch_key(arch.spec), arch)
    planned.retrains = {
        key: [
            plan.retrain_run(study, out, data, plan.arch_path(out, a.name), a.name, s)
            for s in study["retrain"]["seeds"]
        ]
        for key, a in planned.owners.items()
    }


def _record_sharing(out: Path, stage: str, parallel: int, todo: int, runs: int) -> None:
    """Keep how many runs ran side by side in each stage, over every resume (``sharing.json``),
    written as a call starts them (a call stopped midway is on record): the ``--parallel`` of each
    call, and under ``at_once`` how many ran together at most (fewer runs than ``--parallel``: a
    stage of one run had the machine to itself). The stages' seconds compare like for like only
    when it was one value throughout. A stage with finished runs but no ``at_once`` (calls before
    it was kept) ran at most its ``runs`` at once, and at most its recorded ``--parallel``."""
    kept = _read_sharing(out)
    at_once = kept.setdefault("at_once", {})
    if stage not in at_once and (stage in kept or runs > todo):  # earlier calls, not on record
        at_once[stage] = [min(max(kept.get(stage, [runs])), runs)]
    kept[stage] = sorted({*kept.get(stage, []), parallel})
    at_once[stage] = sorted({*at_once.get(stage, []), min(parallel, todo)})
    atomic_write_json(out / "sharing.json", kept)


def _sharing_of(out: Path, stage: str, parallel: int):
    """``execute``'s ``starting``: the stage's record, kept before its runs start."""
    return lambda todo, runs: _record_sharing(out, stage, parallel, todo, runs)


def _read_sharing(out: Path) -> dict:
    path = out / "sharing.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _sharing(out: Path) -> int | None:
    """The one ``--parallel`` every stage ran with, or None (not recorded, or it varied)."""
    kept = _read_sharing(out)
    values = {v for stage in STAGES for v in kept.get(stage, [])}
    return values.pop() if len(values) == 1 else None


def _alone_stages(out: Path, planned: Planned) -> list[str]:
    """The stages whose runs each had the machine to themselves: every call ran one at a time, or
    the stage holds one run (stages run one after another)."""
    kept = _read_sharing(out)
    at_once = {stage: kept.get("at_once", {}).get(stage, kept.get(stage)) for stage in STAGES}
    single = {"search": len(planned.searches) == 1, "select": len(planned.selects) == 1}
    return [stage for stage in STAGES if at_once[stage] == [1] or single.get(stage)]


RETRAIN_ORDER = {
    "searched": 0,
    "baseline": 1,
    "control": 2,
    "random": 3,
}  # a stopped study has the comparisons first


def _retrain_queue(planned: Planned) -> list[tuple[str, Arch]]:
    """The networks in the order the retrain stage runs them (``RETRAIN_ORDER``)."""
    return sorted(planned.owners.items(), key=lambda item: RETRAIN_ORDER[item[1].kind])


def _retrain_alone(
    out: Path, planned: Planned, folder: str = "alone", picked_by: Path | None = None
) -> Run | None:
    """The retrain ``--alone-retrain`` times with the machine to itself: the retrain stage's first
    network (the first that ``picked_by``, a search's or select's folder, picked, where there is
    one: ``--alone-route``'s retrain), its first seed again, in ``folder`` (the study's own run stays
    as it ran)."""
    if not planned.owners:
        return None
    key, arch = _retrain_queue(planned)[0]
    pick = next((a for a in planned.archs if picked_by is not None and a.search == picked_by), None)
    if pick is not None:  # retrained under the first name its network has (a pick that equals another)
        key = plan.arch_key(pick.spec)
        arch = planned.owners[key]
    first = planned.retrains[key][0]
    return Run("retrain", out / folder / arch.name / first.out.name, first.argv)


def _plan_route_alone(study: dict, out: Path, data: Path, planned: Planned) -> None:
    """``--alone-route``'s runs, in ``alone_route/``: the first supernet that picks nothing itself
    but has a select (else the first search that picks) trained again, that select again, and the
    retrain of the study's own first pick of it (``_retrain_alone``). Why again, and not the study's
    own runs: a study resumed on another machine (``--alone-retrain`` after its searches) compares
    machines, whose speeds differ by more than the 2x target's margin (the same route's retrain
    took 83-88 s on two H100s and 101 s on a third, docs/results.md)."""
    if not planned.owners or not planned.searches:
        return
    routes = [k for k in planned.searches if k[2] is None and k in planned.selects]
    picking = [k for k in planned.searches if k[2] is not None]  # a search that picks by itself
    if not routes and not picking:
        return  # no search picks a network: no route
    key = routes[0] if routes else picking[0]
    root, search = out / "alone_route", planned.searches[key]
    supernet = Run("search", root / "search" / search.out.name, search.argv)
    select, budgets, picked_by = None, [], search.out
    if routes:
        select_run, budgets = planned.selects[key]
        select = plan.select_run(study, root, data, supernet, planned.table_path, budgets)
        picked_by = select_run.out
    retrain = _retrain_alone(root, planned, "retrain", picked_by)
    label = None if key[2] is None else key[2][0]
    planned.route = plan.RouteAlone(search.out.name, label, supernet, select, budgets, retrain)


def this_machine() -> dict:
    """What tells two machines apart for timing: the host's name and its GPU's (None: no GPU)."""
    import platform

    import torch

    return {
        "host": platform.node(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _run_route_alone(study: dict, out: Path, route: plan.RouteAlone) -> None:
    """``--alone-route``: its runs one after another, each alone, on one machine. A route an
    earlier call left unfinished resumes on the machine it began on (``alone_route/machine.json``)
    and starts over on any other, so that its seconds never mix machines."""
    if run_costs.route_alone(route, study) is not None:
        return
    folder, machine = out / "alone_route", this_machine()
    began_on = run_costs.read_json(folder / "machine.json")
    if folder.exists() and began_on != machine:
        print(
            f"[study] {folder}: begun on {began_on or 'a machine not recorded'}, not this one: run again from its start"
        )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "machine.json", machine)
    for run, what in ((route.supernet, "search"), (route.select, "select"), (route.retrain, "retrain")):
        if run is not None:
            execute([run], 1, f"{what} alone (route)")


def _rows(
    planned: Planned, test_sets: list[str], scores: dict, measured: dict, keys
) -> tuple[list, dict, dict]:
    """One row per architecture whose network is in ``keys`` (every retrain seed finished), with its
    network's measured latency (``measured``, by the name that network was retrained under), and
    each network's stand-alone dev CER (what the supernets' scores are ranked against) and the
    budgets it was retrained for (a baseline that fits none has none)."""
    rows, standalone, budgets = [], {}, {}
    for arch in planned.archs:
        key = plan.arch_key(arch.spec)
        if key not in keys:
            continue
        metrics = [report.read_metrics(run.out) for run in planned.retrains[key]]
        owner = planned.owners[key].name
        curves = [report.dev_cer_by_epoch(run.out) for run in planned.retrains[key]]
        late = report.late_drop([(c, m.get("epochs")) for c, m in zip(curves, metrics)])
        row = report.make_row(
            arch, metrics, test_sets, planned.table.predict(arch.spec), measured.get(owner), late
        )
        own = [s[owner] for s in scores.values() if owner in s]
        for measure in METRICS:  # init_cosine only where the search kept its initial weights
            values = [m[measure] for m in own if measure in m]
            row[f"supernet_{measure}"] = statistics.fmean(values) if values else None
        row["runs"] = [str(run.out) for run in planned.retrains[key]]
        row["dev_cer_by_epoch"] = [report.in_epoch_order(c) for c in curves]
        rows.append(row)
        standalone[owner] = row["cer"]["dev"]
        budgets.setdefault(owner, [])
        if row["budget"] is not None:
            budgets[owner].append(row["budget"])
    report.rank_among_random(rows)
    return rows, standalone, budgets


# the free reference rankings: each one's row field, more expected to train to a lower CER
FREE_MEASURES = {"params": "params", "latency": "predicted_ms"}


def _ranked_networks(standalone: dict, scores: dict) -> dict:
    """The networks the supernets scored (every retrained one when no supernet scored any), with
    their stand-alone dev CER: what the taus rank, and so what the free measures rank beside them."""
    scored = set().union(*scores.values()) if scores else set()
    return {n: c for n, c in standalone.items() if n in scored} if scored else standalone


def _free_rankings(rows: list[dict], standalone: dict, budgets: dict, scores: dict) -> dict:
    """The parameter count's and the predicted latency's rankings of the networks the supernets
    scored. Both cost nothing; on h200_route each ranked better than the supernet (docs/results.md)."""
    ranked = _ranked_networks(standalone, scores)
    return {
        measure: rank.more_is_better_ranking({r["name"]: r.get(key) for r in rows}, ranked, budgets)
        for measure, key in FREE_MEASURES.items()
    }


def _top_choices(rows: list[dict], standalone: dict, budgets: dict, scores: dict, metric: str) -> dict:
    """What each ranking puts first among a budget's random paths and baselines, and how that
    network trained (``rank.top_choice``). The searched picks (a random path equal to one among
    them) and the controls are left out: a pick is its supernet's own choice, which would make the
    supernet's measure circular."""
    kinds = {row["name"]: row["kind"] for row in rows}
    ranked = _ranked_networks(standalone, scores)
    others = {n: cer for n, cer in ranked.items() if kinds.get(n) in ("random", "baseline")}
    return {
        "networks": "random and baseline",
        "supernet": {
            search: rank.top_choice({n: m.get(metric) for n, m in score.items()}, others, budgets)
            for search, score in scores.items()
        },
        **{
            measure: rank.more_is_better_top_choice({r["name"]: r.get(key) for r in rows}, others, budgets)
            for measure, key in FREE_MEASURES.items()
        },
    }


def _summary(
    study, planned: Planned, rows, standalone: dict, budgets: dict, scores: dict, device, data, out: Path
) -> dict:
    ranking, tau, taus = rank.ranking_quality(scores, standalone, study["ranking"]["metric"], budgets)
    summary = {
        "config": study,
        "device": device,
        "corpus": str(data),
        "budgets": [{"budget": label, "ms": ms} for label, ms in planned.budgets],
        "notes": planned.notes,
        "kendall_tau": tau,
        "kendall_tau_by_metric": taus,
        "kendall_tau_within_budget": rank.defined_mean([r.get("kendall_tau_within_budget") for r in ranking]),
        "ranking": ranking,
        "reference_ranking": _free_rankings(rows, standalone, budgets, scores),
        "top_choice": _top_choices(rows, standalone, budgets, scores, study["ranking"]["metric"]),
        "rank_by_epoch": rank.rank_by_epoch(rank.complete_curves(rows)),
        "rows": rows,
        "costs": {
            **run_costs.collect(
                study,
                planned.searches,
                planned.selects,
                planned.retrains,
                _alone_stages(out, planned),
                _retrain_alone(out, planned),
                planned.route,
            ),
            "parallel": _sharing(out),  # runs side by side in every stage (None: not known, or it varied)
        },
    }
    summary["verdicts"] = verdict.judge(summary)
    return summary


def run_study(
    config: str | Path | dict,
    out: str | Path,
    parallel: int = 1,
    overwrite: bool = False,
    alone_retrain=False,
    alone_route=False,
    before_retrains=False,
) -> dict:
    """Run (or resume) the study of ``config`` in ``out``; returns what ``study.json`` holds.
    ``alone_retrain``: then time one retrain alone (``costs.retrain_alone``); ``alone_route``: then
    time a supernet's whole route again on this machine, one run after another (``costs.route_alone``).
    ``before_retrains``: stop once the scores and latencies are kept (they need the supernets'
    checkpoints and a matching GPU; the retrains need neither) and return what is kept so far."""
    start, study, out = time.perf_counter(), load_config(config), Path(out)
    data = plan.prepare_corpus(study)
    test_sets = check_test_sets(data, study["test_sets"])
    space, baselines = plan.space(study), plan.baselines(study)  # names and files checked first
    claim(out, study, overwrite)
    planned = _plan_searches(study, out, data, space, baselines)
    print("[study] budgets: " + ", ".join(f"{label} = {ms:.3f} ms" for label, ms in planned.budgets))
    execute(list(planned.searches.values()), parallel, "search", _sharing_of(out, "search", parallel))
    _plan_selects(study, out, data, planned)
    execute(
        [run for run, _ in planned.selects.values()], parallel, "select", _sharing_of(out, "select", parallel)
    )
    _plan_retrains(study, out, data, space, baselines, planned)
    if planned.unpicked:
        raise UserError(
            f"{out}: no pick for {', '.join(planned.unpicked)}: the search finished but its checkpoint and "
            "arch/ file are gone; put the arch/ file back, or run the study with --overwrite"
        )
    specs = {a.name: a.spec for a in planned.owners.values()}
    # the supernets score the study's networks but not a control (``_archs`` lists controls last: a
    # network owned by one is nothing else), so that turning one on leaves the taus comparable;
    # every network's latency is measured, a control's too
    scored = {a.name: a.spec for a in planned.owners.values() if a.kind != "control"}
    # a network outside the space (a baseline of another space) has no supernet score: named once
    # here, not counted as missing on every resume
    scored = {name: scored[name] for name in rank.paths_in_space(space, scored)}
    scores = _supernet_scores(out, planned.searches, data, scored, study["ranking"]["batches"], planned.notes)
    device, measured = _latencies(out, planned.table, study["latency"], specs, planned.notes)
    _release_gpu()
    if before_retrains:
        print(
            f"[study] stopped before the retrains (--before-retrains): {len(planned.owners)} networks, "
            f"{len({name for by in scores.values() for name in by})} scored by the supernets, {len(measured)} "
            "measured; run the study again to retrain"
        )
        for note in planned.notes:
            print(f"[study] note: {note}")
        return {
            "before_retrains": True, "networks": sorted(specs), "scores": scores, "device": device,
            "latency_ms": measured, "notes": planned.notes,
        }  # fmt: skip
    retrains = [run for key, _ in _retrain_queue(planned) for run in planned.retrains[key]]
    execute(retrains, parallel, "retrain", _sharing_of(out, "retrain", parallel))
    if alone_retrain and planned.owners:
        execute([_retrain_alone(out, planned)], 1, "retrain alone")
    _plan_route_alone(study, out, data, planned)
    if alone_route and planned.route:
        _run_route_alone(study, out, planned.route)

    rows, standalone, budgets = _rows(planned, test_sets, scores, measured, planned.owners)
    summary = {
        **_summary(study, planned, rows, standalone, budgets, scores, device, data, out),
        "seconds": round(time.perf_counter() - start, 1),
    }
    report.write_json(out, summary)
    report.write_markdown(out, summary)
    print(f"[study] written: {out / 'study.json'}, {out / 'study.md'}")
    return summary


def _finished(run: Run) -> bool:
    """A run whose ``run.json`` says done and whose ``metrics.json`` is there (wherever it ran:
    the arguments name that machine's paths, so they are not compared as a resume does)."""
    record = run_folder.read_marker(run.out) or {}
    return record.get("status") == "done" and (run.out / "metrics.json").is_file()


def _names(planned: Planned) -> dict[str, str]:
    """Each retrained network's name and key."""
    return {a.name: plan.arch_key(a.spec) for a in planned.owners.values()}


def report_partial(config: str | Path | dict, out: str | Path) -> dict:
    """What a stopped study has so far, running nothing and on any machine: a row for every network
    whose retrain seeds all finished, the verdicts those rows decide, in ``partial.json`` and
    ``partial.md``. Nothing is measured: the supernets' scores and latencies are the ones the study
    kept (``latency_ms`` is null where it stopped before measuring), and the picks are the ones it
    wrote to ``arch/`` (no checkpoint is needed)."""
    study, out = load_config(config), Path(out)
    if not (out / MARKER).is_file():
        raise UserError(f"{out}: no {MARKER}, so no study to report on")
    differs = _first_difference(_with_grown_seeds(_kept_study(out), study), study)
    if differs:
        raise UserError(f"{out} holds another study (field {differs!r} differs)")
    table_path = out / "latency.json" if study["latency"]["profile"] else None
    if table_path is not None and not table_path.is_file():
        raise UserError(f"{table_path}: missing; the study stopped before it measured its latency table")
    space, baselines = plan.space(study), plan.baselines(study)
    data = Path(study["corpus"]["path"]).resolve()
    planned = _plan_searches(
        study, out, data, space, baselines, table_path or study["latency"]["table"], write=False
    )
    _plan_selects(study, out, data, planned)
    _plan_retrains(study, out, data, space, baselines, planned, stored=True)
    _plan_route_alone(study, out, data, planned)
    done = {key for key, runs in planned.retrains.items() if all(_finished(run) for run in runs)}
    first = next((report.read_metrics(planned.retrains[k][0].out) for k in done), {"cer": {}})
    test_sets = study["test_sets"] or [s for s in first["cer"] if s != "dev"]
    names = _names(planned)
    scores = {search: by for search, by in _kept_scores(out, names).items() if by}
    device, measured = _kept_latencies(out, names)
    rows, standalone, budgets = _rows(planned, test_sets, scores, measured, done)
    summary = _summary(study, planned, rows, standalone, budgets, scores, device, data, out)
    missing = sorted({planned.owners[k].name for k in planned.owners if k not in done})
    missing += [f"{name} (not picked yet)" for name in planned.unpicked]
    summary = {"partial": True, "missing": missing, **summary}
    atomic_write_json(out / "partial.json", summary)
    report.write_markdown(out, summary, "partial", "plots_partial")
    print(f"[study] {len(done)} of {len(planned.owners)} networks finished; written: {out / 'partial.md'}")
    return summary
