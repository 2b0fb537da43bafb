"""How well a supernet ranks architectures: each one scored with the supernet's inherited weights
(its path fixed, BatchNorm recalibrated; dev CER and dev CTC loss) against its CER when trained
alone; Kendall's tau.

Scoring a path with inherited weights (BatchNorm re-estimated on ``batches`` train batches of the
path alone) is ``supernet.select.score.SupernetScorer``, shared with ``supernet select``. Dev
only: test sets never choose anything.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from supernet.archspec import ArchSpec


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b (ties in either list are allowed, as scipy's default); None when undefined
    (fewer than two items, or every item tied in one list)."""
    concordance, untied_x, untied_y = 0, 0, 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            a = (x[i] > x[j]) - (x[i] < x[j])
            b = (y[i] > y[j]) - (y[i] < y[j])
            concordance, untied_x, untied_y = concordance + a * b, untied_x + (a != 0), untied_y + (b != 0)
    return concordance / math.sqrt(untied_x * untied_y) if untied_x and untied_y else None


def distinct_networks(rows: list[dict]) -> dict[str, dict]:
    """A study report's retrained networks, one entry per distinct network under the first name it
    has (a random draw can equal another budget's; a baseline sits in every budget):
    ``{"spec": ArchSpec, "cer": dev CER, "budgets": [every budget it was retrained for]}``. The
    networks and budgets the study's own ranking uses, for scripts that rank from a kept report."""
    from supernet.study.plan import arch_key

    networks: dict[str, dict] = {}
    names: dict[str, str] = {}
    for row in rows:
        if (row.get("cer") or {}).get("dev") is None:
            continue
        spec = ArchSpec.from_dict(row["arch"])
        name = names.setdefault(arch_key(spec), row["name"])
        entry = networks.setdefault(name, {"spec": spec, "cer": row["cer"]["dev"], "budgets": []})
        if row.get("budget") is not None and row["budget"] not in entry["budgets"]:
            entry["budgets"].append(row["budget"])
    return networks


def defined_mean(values: list[float | None]) -> float | None:
    """The mean of the taus that are defined (None: none is)."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def budget_labels(budgets: dict[str, list[str]]) -> list[str]:
    """Every budget label that ``budgets`` (each network's budget labels) names, in order."""
    return sorted({b for labels in budgets.values() for b in labels if b is not None})


def within_budgets(
    score: dict[str, dict[str, float]],
    standalone: dict[str, float],
    budgets: dict[str, list[str]],
    metric: str,
) -> tuple[dict[str, dict], float | None]:
    """``metric``'s tau among the architectures of each budget alone (``budgets``: each name's
    budget labels), and its mean over budgets. Why: a selection compares paths of one budget, and
    a tau over several budgets is raised by how much cheaper paths lose to dearer ones."""
    by_budget = {}
    for label in budget_labels(budgets):
        names = sorted(n for n in set(score) & set(standalone) if label in budgets.get(n, ()))
        tau = kendall_tau([score[n][metric] for n in names], [standalone[n] for n in names])
        by_budget[label] = {"kendall_tau": tau, "archs": len(names)}
    return by_budget, defined_mean([b["kendall_tau"] for b in by_budget.values()])


def ranking_quality(
    scores: dict[str, dict[str, dict[str, float]]],
    standalone: dict[str, float],
    metric: str,
    budgets: dict[str, list[str]] | None = None,
) -> tuple[list[dict], float | None, dict[str, float | None]]:
    """Kendall's tau of each search's scores (``{search: {arch: {measure: value}}}``, measures
    ``cer`` and ``loss``) against the stand-alone dev CER of the same architectures, per measure
    (and, given each architecture's ``budgets``, ``metric``'s tau within each budget); the mean
    over searches of ``metric``'s tau, and that mean for every measure."""
    ranking = []
    for search, score in scores.items():
        names = sorted(set(score) & set(standalone))
        common = set.intersection(*(set(score[n]) for n in names)) if names else set()  # in every score
        measures = sorted(common)
        taus = {
            m: kendall_tau([score[n][m] for n in names], [standalone[n] for n in names]) for m in measures
        }
        entry = {"search": search, "kendall_tau": taus.get(metric), "by_metric": taus, "archs": len(names)}
        if budgets and metric in measures:
            entry["within_budget"], entry["kendall_tau_within_budget"] = within_budgets(
                {n: score[n] for n in names}, standalone, budgets, metric
            )
        ranking.append(entry)
    means = {
        m: defined_mean([r["by_metric"].get(m) for r in ranking])
        for m in sorted({m for r in ranking for m in r["by_metric"]})
    }
    return ranking, means.get(metric), means


def parameter_count_ranking(
    params: dict[str, float], standalone: dict[str, float], budgets: dict[str, list[str]] | None = None
) -> dict:
    """Kendall tau of the parameter count (more parameters expected to train to a lower CER)
    against the stand-alone dev CER, over every network and within each budget: the reference
    ranking that costs nothing, which a supernet's must beat to be worth training. On
    ``h200_three`` after 24-epoch retrains it beat both supernets (docs/results.md, session 12)."""
    return more_is_better_ranking(params, standalone, budgets)


def more_is_better_ranking(
    values: dict[str, float | None], standalone: dict[str, float], budgets: dict[str, list[str]] | None = None
) -> dict:
    """Kendall tau of a free measure where more is expected to train to a lower CER (the parameter
    count; the predicted latency, i.e. how much compute a network spends) against the stand-alone
    dev CER, over every network and within each budget; networks without a value (None) are left out."""
    scores = {n: {"value": v} for n, v in _negated(values).items() if n in standalone}
    (entry,), _, _ = ranking_quality({"reference": scores}, standalone, "value", budgets)
    kept = ("kendall_tau", "archs", "within_budget", "kendall_tau_within_budget")
    return {k: entry[k] for k in kept if k in entry}


def _negated(values: dict[str, float | None]) -> dict[str, float]:
    """A measure where more is better as a score where less is, leaving out networks without one."""
    return {n: -float(v) for n, v in values.items() if v is not None}


def top_choice(
    values: dict[str, float | None], standalone: dict[str, float], budgets: dict[str, list[str]]
) -> dict:
    """Within each budget, the network that ``values`` ranks first (the lowest; ties by name), its
    place by stand-alone dev CER among the budget's networks (1: the best) and the dev CER it gives
    up against the best of them (``regret``); and the mean regret over budgets. Why: a select keeps
    one path per budget, so what counts is the top of a ranking, which a tau over every pair
    weighs no more than its middle. Networks without a finite value (None, a diverged score's NaN)
    are left out."""
    by_budget = {}
    for label in budget_labels(budgets):
        names = sorted(
            n
            for n, v in values.items()
            if v is not None and math.isfinite(v) and n in standalone and label in budgets.get(n, ())
        )
        if not names:
            continue
        top = min(names, key=lambda n: (values[n], n))
        best = min(standalone[n] for n in names)
        place = 1 + sum(standalone[n] < standalone[top] for n in names)
        by_budget[label] = {"top": top, "place": place, "archs": len(names), "regret": standalone[top] - best}
    return {"within_budget": by_budget, "regret": defined_mean([b["regret"] for b in by_budget.values()])}


def more_is_better_top_choice(
    values: dict[str, float | None], standalone: dict[str, float], budgets: dict[str, list[str]]
) -> dict:
    """``top_choice`` of a free measure where more is expected to train to a lower CER."""
    return top_choice(_negated(values), standalone, budgets)


def complete_curves(rows: list[dict]) -> dict[str, list[list[float]]]:
    """Each network's dev CER curves from rows with ``dev_cer_by_epoch`` (each retrain seed's dev
    CER after every epoch, then the final pass: the best checkpoint's, the row's dev CER), keeping
    the seeds that logged every epoch of the longest (a run resumed before the CSV logger kept its
    earlier rows, or stopped early, did not) and at least one; a network once (a baseline sits in
    several budgets), by its first name, and left out when no seed of it is complete."""
    epochs = max((len(c) - 1 for r in rows for c in r.get("dev_cer_by_epoch") or []), default=0)
    out: dict[str, list[list[float]]] = {}
    seen: set = set()
    for row in rows:
        curves = [list(c) for c in row.get("dev_cer_by_epoch") or [] if epochs >= 1 and len(c) - 1 == epochs]
        network = tuple(row.get("runs") or [row["name"]])
        if curves and network not in seen and row["name"] not in out:
            seen.add(network)
            out[row["name"]] = curves
    return out


def rank_by_epoch(curves: dict[str, list[list[float]]]) -> dict:
    """How long must a network train before its rank shows? (``complete_curves``' networks.) Per
    epoch e, Kendall tau against the final pass's dev CER (the best checkpoint's: what a study
    ranks by):
    - ``tau_other_seed``: one retrain seed's dev CER after e against the mean final dev CER of the
      network's other seeds, mean over the seeds (networks with 2 or more complete seeds): what a
      short training apart from the retrain (a cheap score: a supernet, a fine-tune, a first rung)
      could reach. One seed's final pass in its place gives the ceiling (``seed_ceiling``), which
      no cheap score is expected to beat; None with fewer than 2 seeds;
    - ``tau``: the seeds' mean after e against their mean final pass (every network; the same
      runs, so it flatters a short training).
    Why: on h200_three short training ranked the 24-epoch networks at 0.03 after one epoch and
    0.5 only from epoch 11 (docs/results.md, session 14), which bounds what any cheap score can do."""
    epochs = len(next(iter(curves.values()), [[]])[0]) - 1
    if epochs < 1:
        return {"networks": 0, "networks_other_seed": 0, "seeds": 0, "epochs": 0, "seed_ceiling": None,
                "first_epoch_at_0.5": None, "by_epoch": []}  # fmt: skip
    mean = {name: [sum(v) / len(v) for v in zip(*cs)] for name, cs in curves.items()}
    final = [m[-1] for m in mean.values()]
    several = {name: cs for name, cs in curves.items() if len(cs) >= 2}
    seeds = min(map(len, several.values()), default=len(next(iter(curves.values()))))

    def against_others(at: int) -> float | None:
        """Seed i's dev CER at index ``at`` against the others' mean final pass, mean over i."""
        taus = []
        for i in range(seeds if several else 0):
            others = [
                sum(c[-1] for j, c in enumerate(cs[:seeds]) if j != i) / (seeds - 1)
                for cs in several.values()
            ]
            taus.append(kendall_tau([cs[i][at] for cs in several.values()], others))
        return defined_mean(taus)

    by_epoch = [
        {"epoch": e + 1, "tau_other_seed": against_others(e), "tau": kendall_tau([m[e] for m in mean.values()], final)}
        for e in range(epochs)
    ]  # fmt: skip
    return {
        "networks": len(curves),
        "networks_other_seed": len(several),
        "seeds": seeds,
        "epochs": epochs,
        "seed_ceiling": against_others(-1),
        "first_epoch_at_0.5": first_epoch_at(by_epoch, 0.5),
        "by_epoch": by_epoch,
    }


def first_epoch_at(by_epoch: list[dict], level: float | None, key: str = "tau_other_seed") -> int | None:
    """The first epoch from which ``key``'s tau stays at or above ``level`` to the end (None: never,
    or no level)."""
    if level is None:
        return None
    for i, row in enumerate(by_epoch):
        if all(r[key] is not None and r[key] >= level for r in by_epoch[i:]):
            return row["epoch"]
    return None


def paths_in_space(space, archs: dict[str, ArchSpec]) -> dict[str, dict[str, int]]:
    """Each architecture of ``archs`` that is a path of ``space`` (a ``SearchSpace``), as its
    choices; the others (a baseline outside the space) are left out, with a warning that names
    each and why, so that a missing supernet score is explained where it is missed."""
    paths, outside = {}, []
    for name, spec in archs.items():
        try:
            paths[name] = space.index_of(spec)
        except ValueError as error:
            outside.append(f"{name} ({error})")
    if outside:
        warnings.warn(
            "not paths of the space, so not scored by the supernet: " + "; ".join(outside),
            stacklevel=2,
        )
    return paths


def supernet_scores(
    ckpt: str | Path,
    data: Path,
    archs: dict[str, ArchSpec],
    batches: int,
    max_frames: int = 20000,
    weights: str = "average",
) -> dict[str, dict[str, float]]:
    """Dev CER and CTC loss of each architecture of ``archs`` that is a path of the search's space,
    with the weights of the search checkpoint ``ckpt`` (architectures outside the space are left out;
    ``weights``: as ``SupernetScorer``'s)."""
    from supernet.select.score import SupernetScorer

    scorer = SupernetScorer(
        ckpt, data, batches, split="dev", arch_fraction=0.0, max_frames=max_frames, weights=weights
    )
    return {name: scorer.measure(path) for name, path in paths_in_space(scorer.space, archs).items()}
