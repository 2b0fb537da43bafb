"""The paired test of a size prior (``route_seed.sh SIZE=1``): in each search seed's folder, the
select's own pick (``...-predictor-LABEL``) against the size pick of the same finalists
(``...-predictor-size-LABEL``, ``size_repick.py``), both retrained with the study's recipe. Why
paired: both come from one supernet, so the supernet's seed-to-seed spread (1.4-1.8 points of dev
CER among one recipe's picks) drops out, and the difference per seed is the rule's own effect.

A seed whose ``size_repick.txt`` says the size pick is the select's own counts as a tie
(difference 0); a seed with a size pick (in ``arch_size/``) but no retrain of it is left out, and
said so, whatever the log says of another budget. Prints each
seed's dev CER of both, their mean difference and an exact one-sided sign-flip p-value that the
size picks are better (every flip of the differences' signs; written here: scipy is not a
dependency). The rule written before the runs (docs/results.md, session 29): ship the prior if
over at least four seeds the size picks' mean dev CER is lower.

    python scripts/paired_picks.py docs/study/h200_route/size_prior/seed*/ --budget budget_conformer_s
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path


def seed_pair(folder: Path, budget: str, split: str = "dev") -> tuple[float, float] | str:
    """``(own CER, size pick's CER)`` of one seed's folder, the own CER twice for a tie, or a
    sentence saying why the seed has no pair."""
    rows = {r["name"]: r for r in json.loads((folder / "retrain_archs.json").read_text())["rows"]}
    own = [r for n, r in rows.items() if n.endswith(f"-predictor-{budget}")]
    size = [r for n, r in rows.items() if n.endswith(f"-predictor-size-{budget}")]
    if len(own) != 1:
        return f"{len(own)} own picks named ...-predictor-{budget}"
    if size:
        return own[0]["cer"][split], size[0]["cer"][split]
    if list(folder.glob(f"arch_size/*-predictor-size-{budget}.yaml")):
        return "its size pick was written (arch_size/) but not retrained: retrain it, not a tie"
    log = folder / "size_repick.txt"  # says "the same" per budget: another budget's tie reads alike
    if log.is_file() and "the same as the select's" in log.read_text():
        return own[0]["cer"][split], own[0]["cer"][split]
    return "no retrained size pick, and size_repick.txt does not say it is the select's own"


def sign_flip_p(differences: list[float]) -> float:
    """One-sided exact p that the mean difference (own minus size) is this large or larger when
    each difference's sign is flipped at random: the share of the 2^n flips whose sum reaches the
    observed one."""
    observed = sum(differences)
    flips = list(itertools.product((1, -1), repeat=len(differences)))
    return sum(sum(s * d for s, d in zip(f, differences)) >= observed - 1e-12 for f in flips) / len(flips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="route_seed.sh SIZE=1 output folders")
    parser.add_argument("--budget", required=True)
    parser.add_argument("--split", default="dev")
    args = parser.parse_args()
    differences = []
    for folder in args.folders:
        pair = seed_pair(folder, args.budget, args.split)
        if isinstance(pair, str):
            print(f"{folder}: left out: {pair}")
            continue
        own, size = pair
        differences.append(own - size)
        tie = "  (the same pick)" if own == size else ""
        print(f"{folder}: select's pick {100 * own:.2f}  size pick {100 * size:.2f}  {args.split} CER %{tie}")
    if not differences:
        raise SystemExit("no seed with both picks retrained")
    mean = statistics.fmean(differences)
    verdict = "the size picks lower" if mean > 0 else "the size picks not lower"
    print(
        f"{len(differences)} seeds: the select's pick minus the size pick, {args.split} CER, "
        f"{100 * mean:+.2f} points on average ({verdict}); one-sided sign-flip p "
        f"{sign_flip_p(differences):.3f} (the least {len(differences)} seeds allow: {1 / 2 ** len(differences):.3f})"
    )


if __name__ == "__main__":
    main()
