"""Who a supernet recipe under-rates, averaged over several supernets of it: ``ranking_breakdown.py``'s
score residuals (against a line through dev CER and score) by what a network holds, each in
standard deviations of its supernet's scores, then the mean over the supernets of each set. Why:
one supernet's residuals move from seed to seed; a recipe meant to remove a bias (issue 16's
draw weights, session 27) is judged over all its supernets against another recipe's. Also the
Kendall tau of the supernets' mean score (each standardised first) beside each one's own: a
ranking that averaging lifts is limited by seed noise (more supernets would help), one it leaves
where it was by a bias that every supernet of the recipe shares (session 29); and how far that
bias follows a network's size.

    python scripts/residual_means.py docs/study/h200_route/study.json --measure loss \
        --scores docs/study/h200_route/fullrate_x3/seed*/scores.json \
        --against docs/study/h200_route/draw_weights/seed*/scores_route.json \
                  docs/study/h200_route/dropout/seed*/scores_route.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ranking_breakdown import read_scores, residual_groups, score_residuals  # scripts/, beside this file

from supernet.study.rank import distinct_networks, kendall_tau


def ranks(values: list[float]) -> list[float]:
    """Each value's place, 0 for the lowest; tied values share the mean of their places."""
    return [sum(v < x for v in values) + (sum(v == x for v in values) - 1) / 2 for x in values]


def mean_residuals(report: Path, files: list[Path], measure: str) -> dict[str, dict[int, dict]]:
    """For each grouping and group: the mean over ``files`` of the group's mean residual in
    standard deviations of that file's scores, and over how many supernets it was seen."""
    networks = study_networks(report)[0]
    seen: dict[str, dict[int, list[float]]] = {}
    for path in files:
        scores = read_scores(path, measure, networks)
        names = sorted(scores)
        score = [scores[n] for n in names]
        spread = statistics.pstdev(score)
        groups = residual_groups(
            score, [networks[n]["cer"] for n in names], [networks[n]["spec"] for n in names]
        )
        for label, by_count in groups.items():
            for count, residuals in by_count.items():
                seen.setdefault(label, {}).setdefault(count, []).append(statistics.fmean(residuals) / spread)
    return {
        label: {
            count: {"mean_sd": statistics.fmean(v), "supernets": len(v)} for count, v in sorted(by.items())
        }
        for label, by in seen.items()
    }


def study_networks(report: Path) -> tuple[dict[str, dict], dict[str, dict], list[str]]:
    """A study report's distinct networks (``rank.distinct_networks``), its rows by name (their
    parameters and predicted latency) and its budget labels."""
    rows = json.loads(report.read_text())["rows"]
    networks = distinct_networks(rows)
    budgets = sorted({b for net in networks.values() for b in net["budgets"]})
    return networks, {row["name"]: row for row in rows}, budgets


def averaged_tau(report: Path, files: list[Path], measure: str) -> dict:
    """Kendall tau against dev CER of each supernet's scores and of their mean, each supernet's
    scores standardised first (its loss scale is its own), over the networks every file scored."""
    networks = study_networks(report)[0]
    standardised = []
    for path in files:
        scores = read_scores(path, measure, networks)
        mean, spread = statistics.fmean(scores.values()), statistics.pstdev(scores.values())
        standardised.append({n: (s - mean) / spread for n, s in scores.items()})
    names = sorted(set.intersection(*(set(s) for s in standardised)))
    cer = [networks[n]["cer"] for n in names]
    single = [kendall_tau([s[n] for n in names], cer) for s in standardised]
    averaged = kendall_tau([statistics.fmean(s[n] for s in standardised) for n in names], cer)
    return {"single": single, "averaged": averaged, "networks": len(names)}


def size_bias(report: Path, files: list[Path], measure: str) -> dict[str, dict[str, float | None]]:
    """The mean over ``files`` of the Pearson correlation between a network's score residual
    (``score_residuals``: against the least-squares line through dev CER and score) and its size,
    by parameters and by predicted latency: over all the networks (``"all"``) and within each
    budget (its own line through that budget's networks). Positive: the supernet scores larger
    networks worse than their CER says, the bias weight sharing is known to give them (BigNAS's
    sandwich rule is built against it), which under a budget would favour the smaller candidates.
    Over all it mixes in the budgets' gap; within one it is what a select's band sees (session 29)."""
    networks, by_name, budgets = study_networks(report)
    correlations: dict[str, dict[str, list[float]]] = {}
    for path in files:
        scores = read_scores(path, measure, networks)
        for group in ["all", *budgets]:
            names = sorted(n for n in scores if group == "all" or group in networks[n]["budgets"])
            if len(names) < 3:
                continue
            residual = score_residuals([scores[n] for n in names], [networks[n]["cer"] for n in names])
            kept = correlations.setdefault(group, {"params": [], "predicted_ms": []})
            for size, values in kept.items():
                sizes = [by_name[n][size] for n in names]
                if len(set(sizes)) > 1 and len(set(residual)) > 1:  # else no correlation is defined
                    values.append(statistics.correlation(residual, sizes))
    return {
        group: {size: statistics.fmean(v) if v else None for size, v in kept.items()}
        for group, kept in correlations.items()
    }


def size_rank_taus(report: Path, files: list[Path], measure: str) -> dict[str, dict[str, float]]:
    """Within each budget, the mean over ``files`` of Kendall tau against dev CER of the score, of
    the parameter count (more first), and of the sum of both ranks: whether size would add what
    the score's size bias takes away. A diagnostic on the study's networks only: a select rule
    is decided by retrained picks, not by this."""
    networks, by_name, budgets = study_networks(report)
    taus: dict[str, dict[str, list[float]]] = {
        b: {"score": [], "params": [], "rank sum": []} for b in budgets
    }
    for path in files:
        scores = read_scores(path, measure, networks)
        for budget in budgets:
            names = sorted(n for n in scores if budget in networks[n]["budgets"])
            cer, score = [networks[n]["cer"] for n in names], [scores[n] for n in names]
            size = [-by_name[n]["params"] for n in names]
            summed = [a + b for a, b in zip(ranks(score), ranks(size))]
            for kind, values in (("score", score), ("params", size), ("rank sum", summed)):
                taus[budget][kind].append(kendall_tau(values, cer))
    return {b: {kind: statistics.fmean(v) for kind, v in by.items()} for b, by in taus.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the study's study.json (stand-alone dev CER)")
    parser.add_argument("--measure", default="loss")
    parser.add_argument("--scores", type=Path, nargs="+", required=True, help="one recipe's scores files")
    parser.add_argument("--against", type=Path, nargs="*", default=[], help="another recipe's")
    args = parser.parse_args()
    sets = {"scores": mean_residuals(args.report, args.scores, args.measure)}
    if args.against:
        sets["against"] = mean_residuals(args.report, args.against, args.measure)
    for name, files in (("scores", args.scores), ("against", args.against)):
        if files:
            taus = averaged_tau(args.report, files, args.measure)
            print(
                f"{name}: tau of the mean score {taus['averaged']:.3f} over {len(files)} supernets and "
                f"{taus['networks']} networks; each alone {statistics.fmean(taus['single']):.3f} on average "
                f"({', '.join(f'{t:.3f}' for t in taus['single'])})"
            )
            for group, bias in size_bias(args.report, files, args.measure).items():
                params, latency = ("undefined" if v is None else f"{v:+.2f}" for v in bias.values())
                print(
                    f"{name}: the score residual's correlation with parameters {params}, with "
                    f"predicted latency {latency} ({'over all networks' if group == 'all' else group}; "
                    f"mean over the supernets; + under-rates the larger)"
                )
    for name, files in (("scores", args.scores), ("against", args.against)):
        for budget, taus in (size_rank_taus(args.report, files, args.measure) if files else {}).items():
            print(f"{name}: within {budget}, tau of " + ", ".join(f"{k} {v:.3f}" for k, v in taus.items()))
    for label in sets["scores"]:
        print(f"score residual by {label}, in standard deviations (mean over supernets):")
        for count, entry in sets["scores"][label].items():
            other = sets.get("against", {}).get(label, {}).get(count)
            versus = f"; against {other['mean_sd']:+.2f} over {other['supernets']}" if other else ""
            print(f"  {count}: {entry['mean_sd']:+.2f} over {entry['supernets']} supernets{versus}")


if __name__ == "__main__":
    main()
