"""Where does a supernet's ranking of a study's networks go wrong? From scores already kept.

Reads one supernet's scores of the study's retrained networks (``average_ranking.py``'s JSON, or
the select caches ``tau_from_select.py`` reads) and prints:
- Kendall tau over every network and within each budget (``rank.within_budgets``: what a selection
  at one budget compares);
- the score's residual from a straight line through (dev CER, score), by the number of full-rate
  attention blocks (conformer, E-Branchformer, transformer) in the network: a positive mean says
  the supernet under-rates such networks;
- leave-one-out Kendall tau of a ridge regression of dev CER on the counts of each op family,
  alone and with the supernet score beside them: how far a predictor of the architecture alone,
  fitted on the other retrained networks, ranks them. It is fitted on retrained networks, which
  a search does not have; it measures what the supernet's score misses, not a method.

    python scripts/ranking_breakdown.py --report docs/study/h200_three/study.json \
        --average-ranking docs/study/h200_three/weight_average/20_epochs/average_ranking.json --decay 0.995
    python scripts/ranking_breakdown.py --report docs/study/h200_three/study.json \
        --space docs/study/h200_three/space.yaml --caches docs/study/h200_three/alone/scores_uniform-s0-any.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

import torch
from tau_from_select import cached_scores, shown

from supernet.archspec import ArchSpec
from supernet.select.problem import key_of
from supernet.space import SearchSpace
from supernet.study.rank import kendall_tau, within_budgets

ATTENTION = ("conformer", "ebranchformer", "transformer")


def family(layer: str) -> str:
    """An op's family: its block kind, ``_down`` when it runs at a lower frame rate, ``_wide`` for
    an e384 inner width (``res-down2-conformer-...`` -> ``conformer_down``)."""
    name = layer.removeprefix("res-")
    down = re.match(r"down\d+-", name)
    base = name[down.end() :] if down else name
    return base.split("-")[0] + ("_down" if down else "") + ("_wide" if "-e384" in name else "")


def scores_from(args, rows: list[dict]) -> dict[str, float]:
    """Each scored network's score by name (one name per distinct network for select caches)."""
    if args.average_ranking:
        run = json.loads(args.average_ranking.read_text())["runs"][args.decay]
        return dict(run[args.weights]["scores"])
    space, cache, seen = SearchSpace.load(args.space), cached_scores(args.caches), set()
    scores = {}
    for row in rows:
        try:
            key = key_of(space.index_of(ArchSpec.from_dict(row["arch"])))
        except ValueError:
            continue  # not a path of the space
        if key in cache and key not in seen:
            seen.add(key)
            scores[row["name"]] = cache[key]
    return scores


def loo_ridge_tau(features: torch.Tensor, cer: torch.Tensor, ridge: float) -> float | None:
    """Kendall tau of each network's dev CER predicted by a ridge regression fitted on the others
    (standardised features, centred CER)."""
    predicted = []
    for i in range(len(cer)):
        keep = torch.arange(len(cer)) != i
        mean, std = features[keep].mean(0), features[keep].std(0) + 1e-9
        train, test = (features[keep] - mean) / std, (features[i] - mean) / std
        centred = cer[keep] - cer[keep].mean()
        weights = torch.linalg.solve(train.T @ train + ridge * torch.eye(train.shape[1]), train.T @ centred)
        predicted.append(float(test @ weights))
    return kendall_tau(predicted, cer.tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, required=True, help="the study's study.json")
    parser.add_argument("--average-ranking", type=Path, help="average_ranking.py's JSON")
    parser.add_argument("--decay", default="0.995", help="its run (default 0.995)")
    parser.add_argument("--weights", default="trained", choices=("trained", "average"))
    parser.add_argument("--space", type=Path, help="with --caches: the study's space.yaml")
    parser.add_argument("--caches", type=Path, nargs="+", help="select.json or scores.json files")
    parser.add_argument("--ridge", type=float, default=1.0)
    args = parser.parse_args()
    if bool(args.average_ranking) == bool(args.caches) or bool(args.caches) != bool(args.space):
        parser.error("give --average-ranking, or --space with --caches")
    rows = [
        r for r in json.loads(args.report.read_text())["rows"] if (r.get("cer") or {}).get("dev") is not None
    ]
    by_name = {r["name"]: r for r in rows}
    scores = scores_from(args, rows)
    names = sorted(n for n in scores if n in by_name)
    score = [scores[n] for n in names]
    cer = [by_name[n]["cer"]["dev"] for n in names]
    print(f"Kendall tau over {len(names)} networks: {shown(kendall_tau(score, cer))}")
    budgets = {n: [by_name[n]["budget"]] for n in names}
    within, mean = within_budgets(
        {n: {"score": s} for n, s in zip(names, score)}, dict(zip(names, cer)), budgets, "score"
    )
    for label, entry in within.items():
        print(f"  within {label}: {shown(entry['kendall_tau'])} over {entry['archs']} networks")
    print(f"  mean within one budget: {shown(mean)}")

    slope, intercept = (
        torch.linalg.lstsq(
            torch.tensor([[c, 1.0] for c in cer], dtype=torch.float64),
            torch.tensor(score, dtype=torch.float64)[:, None],
        )
        .solution.flatten()
        .tolist()
    )
    groups: dict[int, list[float]] = {}
    for n, s, c in zip(names, score, cer):
        blocks = sum(family(layer) in ATTENTION for layer in by_name[n]["arch"]["layers"])
        groups.setdefault(blocks, []).append(s - (slope * c + intercept))
    spread = statistics.pstdev(score)
    print(f"score residual by full-rate attention blocks (the scores' standard deviation {spread:.3f}):")
    for blocks, residuals in sorted(groups.items()):
        print(f"  {blocks}: mean {statistics.fmean(residuals):+.3f} over {len(residuals)} networks")

    families = sorted({family(layer) for n in names for layer in by_name[n]["arch"]["layers"]} - {"skip"})
    counts = torch.tensor(
        [
            [sum(family(layer) == f for layer in by_name[n]["arch"]["layers"]) for f in families]
            for n in names
        ],
        dtype=torch.float64,
    )
    target = torch.tensor(cer, dtype=torch.float64)
    with_score = torch.cat([torch.tensor(score, dtype=torch.float64)[:, None], counts], 1)
    print(f"leave-one-out tau of a ridge ({args.ridge:g}) on op-family counts ({', '.join(families)}):")
    print(f"  counts alone {shown(loo_ridge_tau(counts, target, args.ridge))}; "
          f"counts and score {shown(loo_ridge_tau(with_score, target, args.ridge))}")  # fmt: skip


if __name__ == "__main__":
    main()
