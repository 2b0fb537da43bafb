"""Where does a supernet's ranking of a study's networks go wrong? From scores already kept.

Reads one supernet's scores of the study's retrained networks (``average_ranking.py``'s JSON, the
select caches ``tau_from_select.py`` reads, or the study's own, ``--rows-metric``: its rows'
``supernet_loss`` or ``supernet_cer``) and prints:
- Kendall tau over every network and within each budget (``rank.within_budgets``: what a selection
  at one budget compares);
- Kendall tau among the networks without any attention block and among those with one or more
  (full-rate or downsampled): does the score fail everywhere, or on one kind of network? And the
  same split by a plain attention block (no ``res-`` wrapper: a conformer block ends with its own
  LayerNorm, so it restarts the residual stream at another scale than the residual blocks);
- with ``--horizons``, Kendall tau of the score against the retrains' mean dev CER after each
  epoch (the rows' ``dev_cer_by_epoch``): does the score rank like a shorter training would?
- the score's residual from a straight line through (dev CER, score), by the number of full-rate
  attention blocks (conformer, E-Branchformer, transformer) in the network, by the number of
  plain ones, and by the layers dropped before the subsampling layer: a positive mean says the
  supernet under-rates such networks;
- leave-one-out Kendall tau of a ridge regression of dev CER on the counts of each op family,
  alone and with the supernet score beside them: how far a predictor of the architecture alone,
  fitted on the other retrained networks, ranks them. It is fitted on retrained networks, which
  a search does not have; it measures what the supernet's score misses, not a method.

    python scripts/ranking_breakdown.py --report docs/study/h200_three/study.json \
        --average-ranking docs/study/h200_three/weight_average/20_epochs/average_ranking.json --decay 0.995
    python scripts/ranking_breakdown.py --report docs/study/h200_three/study.json \
        --space docs/study/h200_three/space.yaml --caches docs/study/h200_three/alone/scores_uniform-s0-any.json
    python scripts/ranking_breakdown.py --report docs/study/h200_route/study.json --rows-metric loss
    python scripts/ranking_breakdown.py --report docs/study/h200_route/study.json --horizons \
        --scores docs/study/h200_route/finetune_ranking/finetune_ranking.json --measure loss_peak_96

``--scores``: the JSON of ``scripts/device/angle_ranking.py``, ``head_refit.py`` or
``finetune_ranking.py`` (its groups' ``scores``), one ``--measure`` of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from tau_from_select import cached_scores, scored_networks, shown, shown_within

import ops  # noqa: F401  (registers the op families)
from ops import registry
from supernet.space import SearchSpace
from supernet.study.rank import complete_curves, distinct_networks, kendall_tau, within_budgets

ATTENTION = ("conformer", "ebranchformer", "transformer")


def unwrap(layer: str) -> tuple[list[str], registry.Spec]:
    """An op's wrappers (``res``, ``down2``, ...) and its inner block's spec, read as the op registry
    reads them (``res-down2-conformer-...`` -> ``["res", "down2"]``, the conformer's spec)."""
    wrappers, inner = [], layer
    while "-" in inner and inner.partition("-")[0] in registry.WRAPPERS:
        prefix, _, inner = inner.partition("-")
        wrappers.append(prefix)
    return wrappers, registry.parse_spec(inner)


def family(layer: str) -> str:
    """An op's family: its block kind, ``_down`` under a ``downN-`` wrapper (a lower frame rate),
    ``_wide`` for an e384 inner width (``res-down2-conformer-...`` -> ``conformer_down``)."""
    wrappers, spec = unwrap(layer)
    down = any(w.startswith("down") for w in wrappers)
    return spec.family + ("_down" if down else "") + ("_wide" if spec.numbers.get("e") == 384 else "")


def family_counts(layers: list[list[str]], families: list[str]) -> torch.Tensor:
    """Each network's number of layers of each op family (rows: ``layers``' networks)."""
    return torch.tensor(
        [[sum(family(layer) == f for layer in net) for f in families] for net in layers], dtype=torch.float64
    )


def full_rate_attention(layer: str) -> bool:
    return family(layer).removesuffix("_wide") in ATTENTION


def plain_attention(layer: str) -> bool:
    """An attention block with no wrapper (``conformer-k15-f4-h4-rel``, not
    ``res-conformer-k15-f4-rel-e96``): in ``budget`` its own LayerNorm ends it; ``budget_open``'s
    ``-open`` blocks, counted here too, have none."""
    return layer.partition("-")[0] not in registry.WRAPPERS and any_attention(layer)


def any_attention(layer: str) -> bool:
    """An attention block at any frame rate or width."""
    return family(layer).removesuffix("_wide").removesuffix("_down") in ATTENTION


def narrow_attention(layer: str, dim: int) -> bool:
    """An attention block whose inner width is set below the network's width ``dim``
    (``res-conformer-k15-f4-rel-e96`` in ``budget``, 192 wide): cheaper than the others, and drawn
    as often as them by ``draw_weights: {former: W}``, the weights meant for full-rate attention
    (session 28)."""
    return any_attention(layer) and unwrap(layer)[1].numbers.get("e", dim) < dim


def dropped_before_subsampling(spec) -> int:
    """``skip`` layers of ``spec`` (an ``ArchSpec``) before its first layer with a stride (the ops'
    own strides, as ``ArchSpec.total_stride`` reads them): a path that drops them feeds the shared
    subsampling layer inputs that uniform draws rarely train it on (all three of ``budget``'s front
    layers dropped: 1 draw in 27), so a supernet may under-rate it for that alone."""
    strides = [info.stride for info in spec.layer_infos]
    first = next((i for i, stride in enumerate(strides) if stride > 1), 0)
    return sum(layer == "skip" for layer in spec.layers[:first])


COUNTS = {  # what a network holds, against which the score's residual is grouped
    "full-rate attention blocks": lambda spec: sum(map(full_rate_attention, spec.layers)),
    "plain attention blocks": lambda spec: sum(map(plain_attention, spec.layers)),
    "narrow attention blocks": lambda spec: sum(narrow_attention(layer, spec.dim) for layer in spec.layers),
    "layers dropped before the subsampling layer": dropped_before_subsampling,
}


def score_residuals(score: list[float], cer: list[float]) -> list[float]:
    """Each network's score minus a least-squares line through (dev CER, score): positive where it
    is scored worse than its CER says (under-rated)."""
    slope, intercept = (
        torch.linalg.lstsq(
            torch.tensor([[c, 1.0] for c in cer], dtype=torch.float64),
            torch.tensor(score, dtype=torch.float64)[:, None],
        )
        .solution.flatten()
        .tolist()
    )
    return [s - (slope * c + intercept) for s, c in zip(score, cer)]


def residual_groups(score: list[float], cer: list[float], specs: list) -> dict[str, dict[int, list[float]]]:
    """``score_residuals`` grouped by each of ``COUNTS``: a group whose residual is positive is
    scored worse than its CER says (under-rated)."""
    residuals = score_residuals(score, cer)
    out: dict[str, dict[int, list[float]]] = {}
    for label, count in COUNTS.items():
        groups = out.setdefault(label, {})
        for spec, residual in zip(specs, residuals):
            groups.setdefault(count(spec), []).append(residual)
    return out


def seed_ceiling(rows: dict[str, dict], names: list[str]) -> float | None:
    """The mean over seeds k of Kendall tau between seed k's dev CER and the mean of the other
    seeds', over ``names``: how well the networks can be ranked at all (None without per-seed CER
    of at least 2 seeds for every network, or fewer than 2 networks)."""
    seeds = [(rows[n].get("cer_by_seed") or {}).get("dev") or [] for n in names]
    count = min((len(s) for s in seeds), default=0)
    if len(names) < 2 or count < 2:
        return None
    taus = [
        kendall_tau([s[k] for s in seeds], [statistics.fmean(s[:k] + s[k + 1 : count]) for s in seeds])
        for k in range(count)
    ]
    return statistics.fmean(t for t in taus if t is not None)


def read_scores(path: Path, measure: str, networks: dict[str, dict]) -> dict[str, float]:
    """A scores file's ``measure`` for each of ``networks`` (``{"groups": {G: {"scores": {name:
    {measure: value}}}}}``, as supernet_recipes.py and route_seed.py write them)."""
    groups = json.loads(path.read_text())["groups"]
    kept: dict[str, float] = {}
    for group in groups.values():
        for name, by in group["scores"].items():
            if measure not in by:
                raise SystemExit(f"{path}: no measure {measure!r} (it has {sorted(by)})")
            if kept.setdefault(name, by[measure]) != by[measure]:
                raise SystemExit(f"{path}: {name} scored twice, differently ({', '.join(groups)})")
    return {n: score for n, score in kept.items() if n in networks}


def scores_from(args, networks: dict[str, dict], rows: dict[str, dict]) -> dict[str, float]:
    """Each distinct network's score, by its first name (``rank.distinct_networks``); ``rows``: the
    report's rows by name."""
    if args.average_ranking:
        run = json.loads(args.average_ranking.read_text())["runs"][args.decay]
        return {n: s for n, s in run[args.weights]["scores"].items() if n in networks}
    if args.scores:
        return read_scores(args.scores, args.measure, networks)
    if args.rows_metric:
        key = f"supernet_{args.rows_metric}"
        return {n: r[key] for n, r in rows.items() if n in networks and r.get(key) is not None}
    return scored_networks(SearchSpace.load(args.space), networks, cached_scores(args.caches))


def ridge_predict(train: torch.Tensor, cer: torch.Tensor, test: torch.Tensor, ridge: float) -> torch.Tensor:
    """The ``test`` rows' dev CER, less ``train``'s mean, by a ridge regression fitted on ``train``
    and its ``cer`` (features standardised on ``train``): callers use the predictions' order only."""
    mean, std = train.mean(0), train.std(0) + 1e-9
    train, test = (train - mean) / std, (test - mean) / std
    eye = torch.eye(train.shape[1], dtype=train.dtype)
    return test @ torch.linalg.solve(train.T @ train + ridge * eye, train.T @ (cer - cer.mean()))


def loo_ridge_tau(features: torch.Tensor, cer: torch.Tensor, ridge: float) -> float | None:
    """Kendall tau of each network's dev CER predicted by a ridge regression fitted on the others."""
    predicted = []
    for i in range(len(cer)):
        keep = torch.arange(len(cer)) != i
        predicted.append(float(ridge_predict(features[keep], cer[keep], features[i : i + 1], ridge)[0]))
    return kendall_tau(predicted, cer.tolist())


def print_horizons(names: list[str], score: list[float], report_rows: list[dict]) -> None:
    """Kendall tau of ``score`` against the mean over retrain seeds of each network's dev CER after
    each epoch (``rank.complete_curves``: the seeds that logged every epoch), and the epoch where
    it is highest; the last value is the final pass (the best checkpoint's, the rows' dev CER)."""
    curves = complete_curves(report_rows)
    kept = [i for i, n in enumerate(names) if n in curves]
    if len(kept) < 2:
        print("fewer than 2 networks with a complete dev CER curve in the report: no horizons")
        return
    points = len(curves[names[kept[0]]][0])  # every epoch, then the final pass
    taus = [
        kendall_tau(
            [score[i] for i in kept], [statistics.fmean(c[point] for c in curves[names[i]]) for i in kept]
        )
        for point in range(points)
    ]
    epochs = [t for t in taus[:-1] if t is not None]
    best = max(range(points - 1), key=lambda e: -2.0 if taus[e] is None else taus[e]) if epochs else None
    print(f"tau against the retrains' dev CER after epoch 1-{points - 1}, over {len(kept)} networks: "
          + " ".join(shown(t) for t in taus[:-1]) + f"; the final pass {shown(taus[-1])}"
          + ("" if best is None else f"; highest after epoch {best + 1} ({shown(taus[best])})"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, required=True, help="the study's study.json")
    parser.add_argument("--average-ranking", type=Path, help="average_ranking.py's JSON")
    parser.add_argument("--decay", default="0.995", help="its run (default 0.995)")
    parser.add_argument("--weights", default="trained", choices=("trained", "average"))
    parser.add_argument("--space", type=Path, help="with --caches: the study's space.yaml")
    parser.add_argument("--caches", type=Path, nargs="+", help="select.json or scores.json files")
    parser.add_argument("--rows-metric", choices=("loss", "cer"), help="the study's own scores, in its rows")
    parser.add_argument(
        "--scores", type=Path, help="angle_ranking.py's, head_refit.py's or finetune_ranking.py's JSON"
    )
    parser.add_argument("--measure", help="with --scores: which of its measures (loss, loss_peak_96, ...)")
    parser.add_argument(
        "--horizons", action="store_true", help="tau against the retrains' dev CER after each epoch"
    )
    parser.add_argument("--ridge", type=float, default=1.0)
    args = parser.parse_args()
    sources = (args.average_ranking, args.caches, args.rows_metric, args.scores)
    if (
        sum(map(bool, sources)) != 1
        or bool(args.caches) != bool(args.space)
        or bool(args.scores) != bool(args.measure)
    ):
        parser.error(
            "give --average-ranking, --rows-metric, --space with --caches, or --scores with --measure"
        )
    report_rows = json.loads(args.report.read_text())["rows"]
    rows = {r["name"]: r for r in report_rows}
    networks = distinct_networks(report_rows)
    scores = scores_from(args, networks, rows)
    names = sorted(scores)
    score = [scores[n] for n in names]
    cer = [networks[n]["cer"] for n in names]
    layers = {n: networks[n]["spec"].layers for n in names}
    print(f"Kendall tau over {len(names)} distinct networks: {shown(kendall_tau(score, cer))}")
    budgets = {n: networks[n]["budgets"] for n in names}
    within, mean = within_budgets(
        {n: {"score": s} for n, s in zip(names, score)}, dict(zip(names, cer)), budgets, "score"
    )
    for label, entry in within.items():
        print(f"  within {label}: {shown_within(entry)} over {entry['archs']} networks")
    print(f"  mean within one budget: {shown(mean)}")
    splits = (
        ("without an attention block", any_attention, False),
        ("with one or more", any_attention, True),
        ("without a plain attention block", plain_attention, False),
        ("with a plain one", plain_attention, True),
    )
    for label, test, keep in splits:
        kind = [n for n in names if any(map(test, layers[n])) == keep]
        dev = [networks[n]["cer"] for n in kind]
        by_score = kendall_tau([scores[n] for n in kind], dev) if len(kind) > 1 else None
        by_count = kendall_tau([-rows[n]["params"] for n in kind], dev) if len(kind) > 1 else None
        seeds = seed_ceiling(rows, kind)
        ceiling = "no per-seed CER in the report" if seeds is None else shown(seeds)
        print(f"  among the {len(kind)} networks {label}: {shown(by_score)} (the parameter count: "
              f"{shown(by_count)}; one retrain seed against the others' mean: {ceiling})")  # fmt: skip

    if args.horizons:
        print_horizons(names, score, report_rows)
    spread = statistics.pstdev(score)
    for label, groups in residual_groups(score, cer, [networks[n]["spec"] for n in names]).items():
        print(f"score residual by {label} (the scores' standard deviation {spread:.3f}):")
        for blocks, residuals in sorted(groups.items()):
            print(f"  {blocks}: mean {statistics.fmean(residuals):+.3f} over {len(residuals)} networks")

    families = sorted({family(layer) for n in names for layer in layers[n]} - {"skip"})
    counts = family_counts([layers[n] for n in names], families)
    target = torch.tensor(cer, dtype=torch.float64)
    with_score = torch.cat([torch.tensor(score, dtype=torch.float64)[:, None], counts], 1)
    print(f"leave-one-out tau of a ridge ({args.ridge:g}) on op-family counts ({', '.join(families)}):")
    print(f"  counts alone {shown(loo_ridge_tau(counts, target, args.ridge))}; "
          f"counts and score {shown(loo_ridge_tau(with_score, target, args.ridge))}")  # fmt: skip


if __name__ == "__main__":
    main()
