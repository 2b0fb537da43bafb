"""How well did a supernet rank a study's networks, from the scores its `select` already cached?

A study scores every network with each supernet before its retrains, but a study cut off earlier,
or copied back without checkpoints, has no such scores. Its `select` (and `select_strategies.py`)
did score candidates with the same supernet, and a study's random paths are often among them (the
strategies draw with the same seeded sampler). This reads those cached scores (``select.json``'s
candidates, and any ``scores.json`` cache), keeps the study's retrained networks that were
scored, and prints Kendall's tau between score and stand-alone dev CER, with a bootstrap interval.

It is an estimate of the study's ``kendall_tau`` for that supernet, not the same measurement: the
select scores on the ``arch`` split with its own number of batches, the study on dev.

    python scripts/tau_from_select.py --space DIR/space.yaml --report DIR/partial.json \
        --caches DIR/select/*/select.json [bench/scores.json ...]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from supernet.select.problem import key_of
from supernet.select.score import METRICS
from supernet.space import SearchSpace
from supernet.study.rank import distinct_networks, kendall_tau


def cached_scores(caches: list[Path]) -> dict[str, float]:
    """Every cached supernet score by path key: a ``select.json``'s candidates, or a ``scores.json``
    (``select_strategies.py``'s cache). They must come from one checkpoint and one score metric, or
    the tau would belong to no one supernet."""
    scores, ckpts, metrics = {}, set(), set()
    for path in caches:
        cache = json.loads(path.read_text())
        settings = cache.get("settings", cache)  # scores.json keeps them under "settings"
        ckpts.add(settings.get("ckpt"))
        if settings.get("metric") in METRICS:  # older select.json files wrote the cost unit there
            metrics.add(settings["metric"])
        scores |= (
            {c["path"]: c["score"] for c in cache["candidates"]} if "candidates" in cache else cache["scores"]
        )
    if len(ckpts) > 1 or len(metrics) > 1:
        raise SystemExit(
            f"the caches come from several supernets {sorted(ckpts)} or score metrics {sorted(metrics)}"
        )
    return scores


def bootstrap(x: list[float], y: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The 5th and 95th percentiles of tau over resampled networks."""
    rng, taus = random.Random(seed), []
    for _ in range(draws):
        pick = [rng.randrange(len(x)) for _ in x]
        tau = kendall_tau([x[i] for i in pick], [y[i] for i in pick])
        taus += [] if tau is None else [tau]
    taus.sort()
    return (taus[len(taus) // 20], taus[-len(taus) // 20]) if taus else (None, None)


def scored_networks(
    space: SearchSpace, networks: dict[str, dict], cache: dict[str, float]
) -> dict[str, float]:
    """The cached score of each distinct network (``rank.distinct_networks``) that is a path of
    ``space`` and was scored, by the network's first name."""
    scores = {}
    for name, network in networks.items():
        try:
            key = key_of(space.index_of(network["spec"]))
        except ValueError:
            continue  # not a path of the space
        if key in cache:
            scores[name] = cache[key]
    return scores


def shown(tau: float | None) -> str:
    return "undefined (every score or CER tied)" if tau is None else f"{tau:.3f}"


def shown_within(entry: dict) -> str:
    """A within-budget tau (``rank.within_budgets``' entry), or why it has none."""
    return "too few networks" if entry["archs"] < 2 else shown(entry["kendall_tau"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", type=Path, required=True, help="the study's space.yaml")
    parser.add_argument("--report", type=Path, required=True, help="its study.json or partial.json")
    parser.add_argument(
        "--caches", type=Path, nargs="+", required=True, help="select.json or scores.json files"
    )
    args = parser.parse_args()
    distinct = distinct_networks(json.loads(args.report.read_text())["rows"])
    scores = scored_networks(SearchSpace.load(args.space), distinct, cached_scores(args.caches))
    networks = {name: (name, score, distinct[name]["cer"]) for name, score in scores.items()}
    if len(networks) < 3:
        raise SystemExit(
            f"{len(networks)} of the study's networks were scored by its selects: too few for tau"
        )
    x, y = [s for _, s, _ in networks.values()], [c for _, _, c in networks.values()]
    low, high = bootstrap(x, y)
    print(f"{'network':<50} {'supernet score':>14} {'dev CER %':>9}")
    for name, score, cer in sorted(networks.values(), key=lambda n: n[1]):
        print(f"{name:<50} {score:>14.3f} {100 * cer:>9.1f}")
    print(f"Kendall tau (score vs stand-alone dev CER) over {len(x)} networks: {shown(kendall_tau(x, y))}")
    print(f"bootstrap 90% interval: {shown(low)} .. {shown(high)}")


if __name__ == "__main__":
    main()
