"""What a study's runs cost, and the two comparisons the search issues ask of it.

- warm-up + search against one retrain (issue 16: a search is worth it at <= 2x one retrain);
- one supernet, picked for every budget (training + every ``select``), against a search per
  budget by a method that picks (issue 17: <= 0.5x their total).

Seconds are each run's own wall time (``search.json``'s ``search_seconds``, ``metrics.json``'s
``train_seconds``, ``select.json``'s ``seconds``), including the segments before a resume where
Lightning's Timer kept them. Runs of one stage share the machine with the others of that stage, so
a ratio compares like with like only within a stage: searches with searches, retrains with
retrains, side by side as the study ran them. Where the retrains ran side by side, one more
retrain timed alone (``supernet study --alone-retrain``) is the reference for a search that also
ran alone in its stage: a supernet that picks nothing counts with its selects (the route a user
runs; every budget's select, so it is never flattered). ``--alone-retrain`` may run on another
machine than the searches did (a resume); ``--alone-route`` times a supernet, its select and a
retrain again, one after another on one machine, and the 2x target is then judged on those.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def read_json(path: Path) -> dict[str, Any]:
    """A run's JSON file, or {} where it is missing or unreadable (a run not finished)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_numbers(path: Path, *keys: str) -> list[float | None]:
    """``keys`` of a run's JSON file, read once (None where the file or the key is missing)."""
    found = read_json(path)
    return [None if found.get(key) is None else float(found[key]) for key in keys]


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _capped(epochs: float | None, options: dict) -> bool | None:
    """Whether a run stopped before its ``trainer.max_epochs`` (at ``trainer.max_time``): its
    seconds then say what the cap allowed, not what the recipe needs."""
    wanted = options.get("trainer.max_epochs")
    return None if epochs is None or wanted is None else epochs < int(wanted)


def retrain_alone(run, options: dict) -> dict[str, Any] | None:
    """The retrain timed alone (the planned ``alone/NAME/seedS`` run), or None (not run)."""
    if run is None:
        return None
    seconds, epochs = read_numbers(run.out / "metrics.json", "train_seconds", "epochs")
    if seconds is None:
        return None
    return {"run": f"{run.out.parent.name}/{run.out.name}", "seconds": seconds,
            "capped": bool(_capped(epochs, options))}  # fmt: skip


def _select_row(run, supernet: str, budgets: list[tuple[str, float]]) -> dict[str, Any]:
    """A select's seconds, and of them each budget's own (``select.json``'s ``budget_seconds``, keyed
    there by the budget in ms) under the study's label, and the start every select pays."""
    found = read_json(run.out / "select.json")
    own = found.get("budget_seconds") or {}
    by_label = {label: own.get(f"{ms:g}") for label, ms in budgets}
    seconds = found.get("seconds")
    known = seconds is not None and all(v is not None for v in by_label.values())
    return {
        "run": run.out.name, "supernet": supernet, "budgets": [label for label, _ in budgets],
        "seconds": None if seconds is None else float(seconds),
        "budget_seconds": by_label if known else None,
        "start_seconds": round(seconds - sum(by_label.values()), 2) if known else None,
    }  # fmt: skip


def _route(
    search: dict, selects: list[dict], mean_retrain: float | None, alone: dict | None, alone_stages: list[str]
) -> dict:
    """A search's seconds as a user pays them (a supernet that picks nothing: with its selects),
    against the retrain timed alone, and whether those seconds were alone on the machine too.
    ``one_budget``: a supernet's route for one budget alone (the supernet, a select's start and that
    budget's own seconds), what a user who wants one network pays; None where not known."""
    own = [s for s in selects if s["supernet"] == search["run"]] if search["budget"] is None else []
    parts = [search["seconds"], *(s["seconds"] for s in own)]
    seconds = None if any(p is None for p in parts) else sum(parts)
    stages = ["search", *(["select"] if own else [])]
    one_budget = None
    if own and search["seconds"] is not None and all(s["budget_seconds"] is not None for s in own):
        one_budget = {}
        for select in own:
            for label, its_own in select["budget_seconds"].items():
                total = round(search["seconds"] + select["start_seconds"] + its_own, 2)
                one_budget[label] = {
                    "seconds": total,
                    "vs_retrain_alone": _ratio(total, alone["seconds"]) if alone else None,
                }
    return {
        "route_seconds": seconds,
        "with_selects": bool(own),
        "route_vs_retrain": _ratio(seconds, mean_retrain),
        "ran_alone": all(stage in alone_stages for stage in stages),
        "vs_retrain_alone": _ratio(seconds, alone["seconds"]) if alone else None,
        "one_budget": one_budget,
    }


def route_alone(route, study: dict) -> dict[str, Any] | None:
    """``--alone-route``'s figures (``route``: a ``plan.RouteAlone``): the supernet's, its select's
    and the retrain's own seconds, and the route against the retrain (every budget's select, and
    ``one_budget``), or None where a run is not finished."""
    if route is None:
        return None
    seconds, epochs = read_numbers(route.supernet.out / "search.json", "search_seconds", "epochs")
    retrain = retrain_alone(route.retrain, study["retrain"]["options"])
    selects = (
        [] if route.select is None else [_select_row(route.select, route.supernet.out.name, route.budgets)]
    )
    if seconds is None or retrain is None or any(s["seconds"] is None for s in selects):
        return None
    supernet = {"run": route.supernet.out.name, "budget": route.budget, "seconds": seconds}
    found = _route(supernet, selects, None, retrain, [])  # every run alone: ran_alone is not asked
    return {
        "search": route.search, "supernet_seconds": seconds, "select": selects[0] if selects else None,
        "retrain": retrain, "capped": bool(_capped(epochs, study["search"]["options"])) or retrain["capped"],
        **{k: found[k] for k in ("route_seconds", "vs_retrain_alone", "one_budget")},
    }  # fmt: skip


def collect(
    study: dict, searches: dict, selects: dict, retrains: dict, alone_stages: list[str] = (), alone_run=None,
    route=None,
) -> dict[str, Any]:  # fmt: skip
    """``searches``: {(method, seed, budget or None): Run}; ``selects``: {search key: (Run, its
    budgets)}; ``retrains``: {key: [Run]} as the study planned them; ``alone_stages``: the stages
    whose runs had the machine to themselves; ``alone_run``: the retrain ``--alone-retrain`` times;
    ``route``: the runs ``--alone-route`` times (``route_alone``)."""
    read = [
        read_numbers(run.out / "metrics.json", "train_seconds", "epochs")
        for runs in retrains.values()
        for run in runs
    ]
    retrain = [seconds for seconds, _ in read if seconds is not None]
    capped = sum(bool(_capped(epochs, study["retrain"]["options"])) for _, epochs in read)
    mean_retrain = statistics.fmean(retrain) if retrain else None
    search_rows = []
    for (method, seed, budget), run in searches.items():
        seconds, epochs = read_numbers(run.out / "search.json", "search_seconds", "epochs")
        search_rows.append({
            "run": run.out.name, "method": method, "seed": seed, "budget": budget[0] if budget else None,
            "seconds": seconds, "epochs": epochs, "capped": _capped(epochs, study["search"]["options"]),
            "vs_retrain": _ratio(seconds, mean_retrain),
        })  # fmt: skip
    select_rows = [
        _select_row(run, searches[key].out.name, budgets) for key, (run, budgets) in selects.items()
    ]
    alone = retrain_alone(alone_run, study["retrain"]["options"])
    for row in search_rows:
        row.update(_route(row, select_rows, mean_retrain, alone, list(alone_stages)))
    return {
        "retrain_seconds": {"mean": mean_retrain, "runs": len(retrain), "capped": capped},
        "retrain_alone": alone,
        "route_alone": route_alone(route, study),
        "searches": search_rows,
        "selects": select_rows,
        "one_supernet_vs_per_budget": _one_vs_many(search_rows, select_rows),
    }


def _one_vs_many(searches: list[dict], selects: list[dict]) -> list[dict]:
    """Each supernet that picks nothing itself (with its selects) against the per-budget searches
    of every picking method and the same seed."""
    rows = []
    for supernet in (s for s in searches if s["budget"] is None):
        if not supernet["with_selects"] or supernet["route_seconds"] is None:  # ``_route``'s total
            continue
        own = [s for s in selects if s["supernet"] == supernet["run"]]
        total = supernet["route_seconds"]
        for method in sorted({s["method"] for s in searches if s["budget"] is not None}):
            many = [
                s for s in searches if s["method"] == method and s["seed"] == supernet["seed"] and s["budget"]
            ]
            if not many or any(s["seconds"] is None for s in many):
                continue
            per_budget = sum(s["seconds"] for s in many)
            rows.append({
                "supernet": supernet["run"], "budgets": sum(len(s["budgets"]) for s in own), "seconds": round(total, 2),
                "method": method, "searches": len(many), "searches_seconds": round(per_budget, 2),
                "ratio": _ratio(total, per_budget),
            })  # fmt: skip
    return rows


def _split(select: dict) -> str:
    """A select's seconds split into its start and each budget's own (``budget_seconds``), where
    it kept them."""
    own = select.get("budget_seconds")
    if not own:
        return ""
    each = ", ".join(f"{label} {_fmt(seconds, ' s')}" for label, seconds in own.items())
    return f" (its start {_fmt(select['start_seconds'], ' s')}; each budget's own: {each})"


def _fmt(value, unit: str = "") -> str:
    """Seconds (with ``unit``) to the second, ratios to the hundredth; "-" where not known."""
    return "-" if value is None else f"{value:.0f}{unit}" if unit else f"{value:.2f}"


def one_budget_words(one_budget: dict | None) -> str:
    """A route's ``one_budget`` ratios as a clause ("" where there are none)."""
    each = ", ".join(
        f"{label} {_fmt(b['vs_retrain_alone'])}x"
        for label, b in (one_budget or {}).items()
        if b["vs_retrain_alone"]
    )
    return (
        f"; for one budget alone (the supernet, the select's start and that budget's own seconds): {each}"
        if each
        else ""
    )


def route_sentence(route: dict) -> str:
    """``route_alone`` in words (the cost section and the 2x verdict's detail)."""
    select = route["select"]
    what = f" and its select for every budget {_fmt(select['seconds'], ' s')}" if select else ""
    return (
        f"Timed again in one go on one machine, each run alone (`--alone-route`, in `alone_route/`): "
        f"`{route['search']}`'s supernet {_fmt(route['supernet_seconds'], ' s')}{what}, together "
        f"{_fmt(route['route_seconds'], ' s')}, against one retrain (`{route['retrain']['run']}`) "
        f"{_fmt(route['retrain']['seconds'], ' s')}: {_fmt(route['vs_retrain_alone'])}x"
        + one_budget_words(route["one_budget"])
        + (" (time cap reached: the ratio measures the cap)" if route["capped"] else "")
        + "."
    )


def markdown(costs: dict[str, Any]) -> list[str]:
    """The cost section of ``study.md``."""
    mean = costs["retrain_seconds"]["mean"]
    lines = [
        "## What the runs cost",
        "",
        f"One retrain: {_fmt(mean, ' s')} (mean of {costs['retrain_seconds']['runs']} runs, "
        f"{costs['retrain_seconds'].get('capped', 0)} of them stopped by trainer.max_time before their last epoch). "
        "Seconds are wall time of runs that shared the machine with the others of their stage; a run stopped "
        "by its time cap measures the cap, not the work its recipe asks.",
        "",
        "| search | method | budget | epochs | seconds | / one retrain |",
        "|---|---|---|---|---|---|",
        *(
            f"| `{s['run']}` | {s['method']} | {s['budget'] or 'any'} | {_fmt(s.get('epochs'), ' ')}"
            f"{'(time cap)' if s.get('capped') else ''} | {_fmt(s['seconds'], ' s')} | {_fmt(s['vs_retrain'])} |"
            for s in costs["searches"]
        ),
    ]
    alone = costs.get("retrain_alone")
    if alone:
        lines += [
            "",
            f"One retrain timed alone (`{alone['run']}`, `--alone-retrain`): {_fmt(alone['seconds'], ' s')}"
            f"{' (time cap)' if alone['capped'] else ''}. Against it, each search as a user pays it "
            "(a supernet with its selects for every budget), where it ran alone in its stage:",
            "",
            *(
                line
                for s in costs["searches"]
                for line in [
                    f"- `{s['run']}`{' + selects' if s['with_selects'] else ''}: {_fmt(s['route_seconds'], ' s')}, "
                    f"{_fmt(s['vs_retrain_alone'])}x"
                    + ("" if s["ran_alone"] else " (not alone in its stage: not like for like)"),
                    *(
                        f"  - for {label} alone (the supernet, a select's start, that budget's own "
                        f"seconds): {_fmt(b['seconds'], ' s')}, {_fmt(b['vs_retrain_alone'])}x"
                        for label, b in (s.get("one_budget") or {}).items()
                    ),
                ]
            ),
        ]
    route = costs.get("route_alone")
    if route:
        lines += ["", route_sentence(route)]
    if costs["selects"]:
        lines += [
            "",
            *(
                f"- select `{s['run']}` ({len(s['budgets'])} budgets): {_fmt(s['seconds'], ' s')}" + _split(s)
                for s in costs["selects"]
            ),
        ]
    for row in costs["one_supernet_vs_per_budget"]:
        lines.append(
            f"\nOne supernet (`{row['supernet']}`, picked for {row['budgets']} budgets): {_fmt(row['seconds'], ' s')}, "
            f"against {row['searches']} `{row['method']}` searches, one per budget: "
            f"{_fmt(row['searches_seconds'], ' s')}; ratio {_fmt(row['ratio'])}."
        )
    return lines
