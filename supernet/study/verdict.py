"""Does the search win? The search issues' targets, judged from a study's rows and costs.

A study exists to answer this, so it answers it itself, target by target, with the margin:
- a searched pick beats the best hand-designed baseline that fits its budget (best by dev CER,
  the one a user would have shipped) by >= 5% relative test CER;
- it beats the median of the random paths of its budget and lies in their top quartile;
- the supernet's ranking (Kendall tau) >= 0.5;
- warm-up + search <= 2x one retrain;
- one supernet's picks, against the per-budget searches: retrained CER within noise or better,
  for <= 0.5x their time;
- and, not an issue target, a pick beats the most-parameters path of its band (``controls``).
Test CER is reported against targets only; nothing here chooses an architecture.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from supernet.study import costs as run_costs
from supernet.study.permutation import least_p, permutation_p

GAIN_OVER_BASELINE = 0.05
TAU_TARGET = 0.5
SEARCH_VS_RETRAIN = 2.0
ONE_VS_MANY = 0.5
FITS = 1e-6  # a baseline whose predicted latency is the budget fits it (relative slack for rounding)
BASELINE_TARGET = "beats the best baseline that fits by >= 5% relative test CER"
RANDOM_TARGET = "beats the random paths' median and lies in their top quartile"


def _test_set(rows: list[dict]) -> str:
    """``test`` (every test set pooled) where the study has it, else its first test set, else dev."""
    sets = list(rows[0]["cer"]) if rows else ["dev"]
    return "test" if "test" in sets else next((s for s in sets if s != "dev"), "dev")


def _verdict(target: str, subject: str, value: float | None, threshold: float, met: bool | None, detail: str):
    return {
        "target": target,
        "subject": subject,
        "value": value,
        "threshold": threshold,
        "met": met,
        "detail": detail,
    }


def best_fitting_baseline(row: dict, group: list[dict]) -> dict | None:
    """The baseline a user would have shipped at the row's budget: the best by dev CER of those
    whose predicted latency fits it."""
    fitting = [
        r for r in group if r["kind"] == "baseline" and r["predicted_ms"] <= row["budget_ms"] * (1 + FITS)
    ]
    return min(fitting, key=lambda r: r["cer"]["dev"]) if fitting else None


def _searched_vs_baseline(row: dict, group: list[dict], split: str) -> dict:
    best = best_fitting_baseline(row, group)
    target = BASELINE_TARGET
    if best is None:
        return _verdict(
            target,
            row["name"],
            None,
            GAIN_OVER_BASELINE,
            None,
            "no baseline row in this budget (none fits it, or a partial report has none finished)",
        )
    gain, detail, tests = _against(row, best, split)
    if tests:
        detail += (
            f"; one-sided permutation p over the seeds {tests['p_better']:.3g} (null: not better), "
            f"{tests['p_gain']:.3g} (null: not {100 * GAIN_OVER_BASELINE:g}% better); "
            f"{tests['seeds'][0]} against {tests['seeds'][1]} seeds allow {tests['p_least']:.3g} at least"
        )
    verdict = _verdict(target, row["name"], gain, GAIN_OVER_BASELINE, gain >= GAIN_OVER_BASELINE, detail)
    return {**verdict, **tests}


def _against(row: dict, other: dict, split: str) -> tuple[float, str, dict]:
    """The row's relative gain in ``split`` CER over ``other``, the figures in words, and the seed
    tests (``seed_tests``)."""
    gain = (other["cer"][split] - row["cer"][split]) / other["cer"][split]
    detail = (
        f"{100 * row['cer'][split]:.1f}% against `{other['name']}` {100 * other['cer'][split]:.1f}% "
        f"({split}): {100 * gain:+.1f}% relative"
    )
    return gain, detail, seed_tests(row, other, split)


def seed_tests(row: dict, baseline: dict, split: str) -> dict:
    """One-sided permutation p-values over the retrain seeds that the row's CER is below the
    baseline's (``p_better``) and below 0.95 of it (``p_gain``: the baseline's seeds scaled, the
    target's gain as a shift of the ratio), and the least p these seed counts allow. Empty without
    per-seed CER on both sides (rows of reports written before they were kept), or with fewer
    than 2 seeds on either."""
    ours, theirs = ((r.get("cer_by_seed") or {}).get(split) or [] for r in (row, baseline))
    if len(ours) < 2 or len(theirs) < 2:
        return {}
    target = [(1 - GAIN_OVER_BASELINE) * v for v in theirs]
    return {
        "p_better": permutation_p(ours, theirs),
        "p_gain": permutation_p(ours, target),
        "p_least": least_p(len(ours), len(theirs)),
        "seeds": [len(ours), len(theirs)],
    }


def _searched_vs_control(row: dict, control: dict, split: str) -> dict:
    """Not an issue target: does the pick beat the free pick of its band (the most parameters,
    ``controls.params_max``)? A search that does not adds nothing a parameter count gives."""
    target = "beats the most-parameters path of its band (a control, not a target)"
    if not control["cer"][split]:
        return _verdict(
            target, row["name"], None, 0.0, None, f"`{control['name']}` has no {split} error to beat"
        )
    gain, detail, tests = _against(row, control, split)
    if tests:
        detail += f"; one-sided permutation p over the seeds {tests['p_better']:.3g} (null: not better)"
    return {**_verdict(target, row["name"], gain, 0.0, gain > 0, detail), **tests}


def _searched_vs_random(row: dict, group: list[dict], split: str) -> dict:
    randoms = sorted(r["cer"][split] for r in group if r["kind"] == "random")
    target = RANDOM_TARGET
    if len(randoms) < 4:
        return _verdict(
            target, row["name"], None, 0.25, None, f"{len(randoms)} random paths: too few for quartiles"
        )
    median = statistics.median(randoms)
    quartile = statistics.quantiles(randoms, n=4, method="inclusive")[0]
    share_better = sum(c < row["cer"][split] for c in randoms) / len(randoms)
    detail = (
        f"{100 * row['cer'][split]:.1f}% against the median {100 * median:.1f}% and the top quartile's bound "
        f"{100 * quartile:.1f}% of {len(randoms)} random paths ({split}); {100 * share_better:.0f}% of them better"
    )
    met = row["cer"][split] < median and row["cer"][split] <= quartile
    return _verdict(target, row["name"], row["cer"][split], quartile, met, detail)


def _one_vs_per_budget(picked: dict, searched: dict, split: str) -> dict:
    """Within noise: the difference of the two seed means is within two of its standard errors."""
    diff = picked["cer"][split] - searched["cer"][split]
    error = math.sqrt(
        picked["cer_std"][split] ** 2 / max(picked["retrain_seeds"], 1)
        + searched["cer_std"][split] ** 2 / max(searched["retrain_seeds"], 1)
    )
    detail = (
        f"{100 * picked['cer'][split]:.1f}% against `{searched['name']}` {100 * searched['cer'][split]:.1f}% "
        f"({split}): {100 * diff:+.1f} points, two standard errors {100 * 2 * error:.1f}"
    )
    target = "one supernet's pick within noise of, or better than, the per-budget search"
    if min(picked["retrain_seeds"], searched["retrain_seeds"]) < 2:  # no spread to judge noise by
        met = True if diff <= 0 else None
        return _verdict(target, picked["name"], diff, 0.0, met, detail + "; one retrain seed: noise unknown")
    return _verdict(target, picked["name"], diff, 2 * error, diff <= 2 * error, detail)


def _from_one_supernet(row: dict) -> bool:
    """A pick by a strategy (``METHOD+STRATEGY``) from a supernet that serves every budget."""
    from supernet.study.config import picks_architecture

    method = row["method"] or ""
    return "+" in method and not picks_architecture(method.split("+")[0])


def _cost_caveats(costs: dict, capped: bool) -> list[str]:
    """Why a cost ratio would not say what the target asks (empty: it does)."""
    notes = ["time cap reached: the ratio measures the cap"] if capped else []
    if costs.get("parallel") is None:
        notes.append("how the runs shared the machine is not known")
    elif costs["parallel"] != 1:
        notes.append(
            f"runs shared the machine (--parallel {costs['parallel']}), each with the others of its stage: "
            "not like for like; a study with --parallel 1 measures it, or --alone-retrain for a search alone in its stage"
        )
    return notes


def _alone_judges(costs: dict, search: dict) -> bool:
    """A study whose stages shared the machine can still judge a search that ran alone in its
    stage (with its selects, if a supernet) against a retrain timed alone within its cap."""
    alone = costs.get("retrain_alone")
    return (
        bool(alone)
        and not alone["capped"]
        and search.get("ran_alone")
        and search.get("vs_retrain_alone") is not None
    )


def _alone_detail(costs: dict, search: dict) -> str:
    alone = costs["retrain_alone"]
    what = (
        "the supernet and its selects (every budget) ran alone in their stages"
        if search.get("with_selects")
        else "the search ran alone in its stage"
    )
    return (
        f"{what}, {search['route_seconds']:.0f} s, against one retrain timed alone "
        f"(--alone-retrain, `{alone['run']}`), {alone['seconds']:.0f} s"
        + run_costs.one_budget_words(search.get("one_budget"))
    )


def _tau_note(search: dict) -> str:
    """How many architectures the tau spans, and the tau within one budget beside it: the target
    is judged on the tau over every budget, which a selection within one budget does not see."""
    note = f"over {search.get('archs')} architectures"
    within = search.get("kendall_tau_within_budget")
    return note if within is None else f"{note}; {within:.3f} within one budget (mean over budgets)"


def judge(summary: dict[str, Any]) -> list[dict]:
    """Every target the study can judge, one verdict each (``met`` None: the study cannot tell)."""
    rows, out = summary["rows"], []
    split = _test_set(rows)
    for budget in summary["budgets"]:
        group = [r for r in rows if r["budget"] == budget["budget"]]
        searched = [r for r in group if r["kind"] == "searched"]
        controls = [r for r in group if r["kind"] == "control"]
        for row in searched:
            picked = [_searched_vs_baseline(row, group, split), _searched_vs_random(row, group, split)]
            picked += [_searched_vs_control(row, control, split) for control in controls]
            out += [{**v, "budget": budget["budget"]} for v in picked]  # ``tally`` counts them per budget
        per_budget = [r for r in searched if "+" not in (r["method"] or "")]
        for picked in (r for r in searched if _from_one_supernet(r)):
            out += [_one_vs_per_budget(picked, other, split) for other in per_budget]
    for search in summary.get("ranking", []):
        tau = search.get("kendall_tau")
        out.append(_verdict(
            "Kendall tau of the supernet's ranking >= 0.5", search["search"], tau, TAU_TARGET,
            None if tau is None else tau >= TAU_TARGET, _tau_note(search),
        ))  # fmt: skip
    costs = summary.get("costs") or {}
    retrains_capped = bool((costs.get("retrain_seconds") or {}).get("capped"))
    route = costs.get("route_alone")
    for search in costs.get("searches", []):
        notes = _cost_caveats(costs, bool(search.get("capped")) or retrains_capped)
        if route and route["search"] == search["run"]:  # one machine, one go: it outranks the rest
            ratio, notes = route["vs_retrain_alone"], [run_costs.route_sentence(route)]
            met = None if route["capped"] or ratio is None else ratio <= SEARCH_VS_RETRAIN
        elif notes and _alone_judges(costs, search):
            ratio, notes = search["vs_retrain_alone"], [_alone_detail(costs, search)]
            if search.get("capped"):
                notes.append("time cap reached: the ratio measures the cap")
            met = None if search.get("capped") else ratio <= SEARCH_VS_RETRAIN
        else:
            routed = bool(search.get("with_selects"))  # a supernet picks nothing alone: its selects count
            ratio = search.get("route_vs_retrain") if routed else search.get("vs_retrain")
            met = None if ratio is None or notes else ratio <= SEARCH_VS_RETRAIN
            if routed:
                what = (
                    "every budget"
                    if ratio is not None
                    else "its seconds, a select's or the retrains' not known yet"
                )
                notes = [f"the supernet with its selects ({what})", *notes]
        out.append(_verdict(
            "warm-up + search <= 2x one retrain", search["run"], ratio, SEARCH_VS_RETRAIN, met, "; ".join(notes),
        ))  # fmt: skip
    capped = {s["run"] for s in costs.get("searches", []) if s.get("capped")}
    for row in costs.get("one_supernet_vs_per_budget", []):
        # per-budget searches stopped by their cap only make the ratio larger: that caveat is harmless
        notes = _cost_caveats(costs, row["supernet"] in capped)
        detail = f"{row['seconds']:.0f} s against {row['searches']} `{row['method']}` searches, {row['searches_seconds']:.0f} s"
        out.append(_verdict(
            "one supernet + its selects <= 0.5x the per-budget searches", row["supernet"], row["ratio"], ONE_VS_MANY,
            None if row["ratio"] is None or notes else row["ratio"] <= ONE_VS_MANY, "; ".join([detail, *notes]),
        ))  # fmt: skip
    return out


def tally(verdicts: list[dict]) -> list[str]:
    """How many searches' picks met each pick target, per budget, where a budget holds picks of
    more than one search (a table for ``study.md``; none otherwise). Why: one pick can be one
    supernet's luck; h200_route's route, run twice, missed each of its first two targets in one
    of four (run, budget) cases (docs/results.md, session 20). The mean of the picks' figures
    beside it says what the route gives in expectation (its picks' mean gain against the 5%, their
    mean CER against the top quartile's bound), which a count of k of n hides."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for v in verdicts:  # "cannot tell" is left out: k of the n decided
        if v.get("budget") is not None and v["met"] is not None:
            groups.setdefault((v["target"], v["budget"]), []).append(v)
    groups = {key: list({v["subject"]: v for v in judged}.values()) for key, judged in groups.items()}
    rows = [
        f"| {target} | {budget} | {sum(bool(v['met']) for v in judged)} of {len(judged)} | {_mean_of(judged)} | "
        + (", ".join(f"`{v['subject']}`" for v in judged if not v["met"]) or "-")
        + " |"
        for (target, budget), judged in groups.items()
        if len(judged) > 1
    ]
    if not rows:
        return []
    return ["", "Across the searches, per budget (picks the study could judge):", "",
            "| target | budget | met by | the picks' mean | missed by |",
            "|---|---|---|---|---|", *rows]  # fmt: skip


def _mean_of(judged: list[dict]) -> str:
    """The mean of the verdicts' values, against their threshold where they share one."""
    values = [v["value"] for v in judged if v.get("value") is not None]
    if not values:
        return "-"
    thresholds = {v.get("threshold") for v in judged}
    against = f" vs {thresholds.pop():.3g}" if len(thresholds) == 1 and None not in thresholds else ""
    return f"{sum(values) / len(values):.3g}{against}"


def markdown(verdicts: list[dict]) -> list[str]:
    """The verdict section of ``study.md``: one line a target, met or missed, with the margin."""
    if not verdicts:
        return []
    mark = {True: "met", False: "**missed**", None: "cannot tell"}
    lines = [
        "## Does the search win? (the targets)",
        "",
        "| target | subject | verdict | detail |",
        "|---|---|---|---|",
    ]
    for v in verdicts:
        value = "" if v["value"] is None else f" ({v['value']:.3g} vs {v['threshold']:.3g})"
        lines.append(f"| {v['target']} | `{v['subject']}` | {mark[v['met']]}{value} | {v['detail']} |")
    return lines + tally(verdicts)
