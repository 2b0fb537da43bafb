"""Who a supernet recipe under-rates, averaged over several supernets of it: ``ranking_breakdown.py``'s
score residuals (against a line through dev CER and score) by what a network holds, each in
standard deviations of its supernet's scores, then the mean over the supernets of each set. Why:
one supernet's residuals move from seed to seed; a recipe meant to remove a bias (issue 16's
draw weights, session 27) is judged over all its supernets against another recipe's.

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

from ranking_breakdown import read_scores, residual_groups  # scripts/, beside this file

from supernet.study.rank import distinct_networks


def mean_residuals(report: Path, files: list[Path], measure: str) -> dict[str, dict[int, dict]]:
    """For each grouping and group: the mean over ``files`` of the group's mean residual in
    standard deviations of that file's scores, and over how many supernets it was seen."""
    networks = distinct_networks(json.loads(report.read_text())["rows"])
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
    for label in sets["scores"]:
        print(f"score residual by {label}, in standard deviations (mean over supernets):")
        for count, entry in sets["scores"][label].items():
            other = sets.get("against", {}).get(label, {}).get(count)
            versus = f"; against {other['mean_sd']:+.2f} over {other['supernets']}" if other else ""
            print(f"  {count}: {entry['mean_sd']:+.2f} over {entry['supernets']} supernets{versus}")


if __name__ == "__main__":
    main()
