"""The paired test of a size prior (``route_seed.sh SIZE=1``): in each search seed's folder, the
select's own pick (``...-predictor-LABEL``) against the size pick of the same finalists
(``...-predictor-size-LABEL``, ``size_repick.py``), both retrained with the study's recipe. Why
paired: both come from one supernet, so the supernet's seed-to-seed spread (1.4-1.8 points of dev
CER among one recipe's picks) drops out, and the difference per seed is the rule's own effect.

A seed whose ``size_repick.txt`` says its size pick of this budget is the select's own counts as a
tie (difference 0), retrained or not; a seed with a size pick (in ``arch_size/``) but no retrain of
it is left out, and said so. The retrains are read from each folder's ``retrain_archs.json`` and
from ``--retrained`` files: the picks of several seeds retrained in a call of their own
(``route_seed.sh PICKS_ONLY=1`` first, so that a short call still keeps its picks). Prints each
seed's dev CER of both, their mean difference and an exact one-sided sign-flip p-value that the
size picks are better (every flip of the differences' signs; written here: scipy is not a
dependency). The rule written before the runs (docs/results.md, session 29, amended in session 30
before any run): ship the prior if, over at least four seeds whose picks differ, the size picks'
mean dev CER is lower.

    python scripts/paired_picks.py docs/study/h200_route/size_prior/seed*/ --budget budget_conformer_s
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
from pathlib import Path


def log_sections(log: Path) -> dict[str, str]:
    """``size_repick.py``'s log, each budget's section by the route pick that heads it
    (``budget X (NAME):``); a section without a pick name is left out. The log alone names a
    tie's pick when a call brought back too few files to hold the pick's YAML."""
    if not log.is_file():
        return {}
    heads = (
        re.match(r"budget \S+ \((\S+)\):", part)
        for part in re.split(r"^(?=budget )", log.read_text(), flags=re.M)
    )
    return {head.group(1): head.string for head in heads if head}


def finished(rows: list[dict], seeds: int) -> dict:
    """The rows retrained with all ``seeds`` (a cut call's rows have fewer, or none), by name."""
    return {r["name"]: r for r in rows if r.get("retrain_seeds") == seeds}


def size_pick_name(own_name: str, budget: str) -> str:
    """The size pick's name beside the route's pick of ``budget``: ``...-predictor-LABEL`` ->
    ``...-predictor-size-LABEL``, as ``size_repick.py`` writes it (the one place of that rule)."""
    return f"{own_name[: -len(budget) - 1]}-size-{budget}"


def seed_pair(folder: Path, budget: str, retrained: dict, split: str = "dev", seeds: int = 3) -> tuple | str:
    """``(own CER, size pick's CER, whether they are the same pick)`` of one seed's folder (the
    CERs ``None`` where a tie was not retrained), or a sentence saying why the seed has no pair.
    ``retrained`` maps a network's name to its finished row, from the ``--retrained`` files; a row
    needs ``seeds`` retrain seeds (the study's) to count. A tie: the section of ``size_repick.txt``
    headed by the own pick says the size pick is the select's (the other budget's may say so of
    its own)."""
    local_file = folder / "retrain_archs.json"
    local = finished(json.loads(local_file.read_text())["rows"], seeds) if local_file.is_file() else {}
    rows = {**retrained, **local}
    picks = [f.stem for f in folder.glob(f"arch/*-predictor-{budget}.yaml")]
    names = picks or [n for n in local if n.endswith(f"-predictor-{budget}")]
    sections = log_sections(folder / "size_repick.txt")
    names = names or [n for n in sections if n.endswith(f"-predictor-{budget}")]
    if len(names) != 1:
        return f"{len(names)} own picks named ...-predictor-{budget} (arch/, retrain_archs.json or size_repick.txt)"
    own_name = names[0]
    size_name = size_pick_name(own_name, budget)
    own = rows[own_name]["cer"][split] if own_name in rows else None
    if "the same as the select's" in sections.get(own_name, ""):
        return own, own, True
    if size_name not in rows:
        written = (folder / "arch_size" / f"{size_name}.yaml").is_file()
        return f"{size_name} {'written but ' if written else ''}not retrained, and not the select's own"
    if own is None:
        return f"{own_name} not retrained"
    return own, rows[size_name]["cer"][split], False


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
    parser.add_argument("--seeds", type=int, default=3, help="the study's retrain seeds a row must have")
    parser.add_argument("--retrained", type=Path, nargs="*", default=[],
                        help="retrain_archs.json files of calls that retrained the folders' picks")  # fmt: skip
    args = parser.parse_args()
    retrained = finished([r for f in args.retrained for r in json.loads(f.read_text())["rows"]], args.seeds)
    differences, ties = [], 0
    for folder in args.folders:
        pair = seed_pair(folder, args.budget, retrained, args.split, args.seeds)
        if isinstance(pair, str):
            print(f"{folder}: left out: {pair}")
            continue
        own, size, same = pair
        differences.append(0.0 if same else own - size)
        ties += same
        if own is None:
            print(f"{folder}: the same pick (not retrained), a tie")
            continue
        tie = "  (the same pick)" if same else ""
        print(f"{folder}: select's pick {100 * own:.2f}  size pick {100 * size:.2f}  {args.split} CER %{tie}")
    if not differences:
        raise SystemExit("no seed with both picks retrained")
    mean = statistics.fmean(differences)
    verdict = "the size picks lower" if mean > 0 else "the size picks not lower"
    print(
        f"{len(differences)} seeds, {len(differences) - ties} whose picks differ ({ties} the same): "
        f"the select's pick minus the size pick, {args.split} CER, "
        f"{100 * mean:+.2f} points on average ({verdict}); one-sided sign-flip p "
        f"{sign_flip_p(differences):.3f} (the least {len(differences)} seeds allow: {1 / 2 ** len(differences):.3f})"
    )


if __name__ == "__main__":
    main()
