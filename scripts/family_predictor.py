"""Would a predictor fitted on earlier retrains rank new networks better than the supernet does?
(issue 16: the supernet's Kendall tau stays near 0.2 against 24-epoch retrains, where 0.5 is the
target)

A ridge regression of dev CER on the counts of each op family in a network (``ranking_breakdown.
family``: conformer, its downsampled and wide variants, TDNN, ...), fitted on the networks of the
earlier reports only, ranks the networks of each later report; beside it the same with the
supernet's score as one more feature, and the score alone. Each report is one session's retrains,
so this is the honest order of use: a predictor built from one study's retrains, asked about the
networks a later search proposes. It needs retrained networks of the same space, corpus and recipe,
which a first search does not have: it measures what a surrogate could add, not what a search
gets for free.

    python scripts/family_predictor.py docs/study/h200_three/score_by_epoch/score_by_epoch.json \
        --unscored docs/study/h200_three/finalists_floor_half/retrain_archs.json \
        docs/study/h200_three/finalists_floor_0.9/retrain_archs.json

``--unscored`` reports, retrained after the supernet scored the others, are ranked by the counts
alone (fitted on every scored network), each network not already among the scored ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent / "device"))  # study_pieces
from ranking_breakdown import family, family_counts, ridge_predict  # noqa: E402
from study_pieces import retrained  # noqa: E402

from supernet.archspec import ArchSpec  # noqa: E402
from supernet.study.plan import arch_key  # noqa: E402
from supernet.study.rank import kendall_tau  # noqa: E402


def first_report(reports: list[Path], specs: dict[str, ArchSpec]) -> dict[str, int]:
    """Each network of ``specs`` (``retrained``'s distinct networks) by the index among ``reports``
    of the first that retrained it, by ``retrained``'s own rule (a row with a dev CER), matched by
    architecture, not name."""
    index_of: dict[str, int] = {}
    for index, report in enumerate(reports):
        for spec in retrained(report)[0].values():
            index_of.setdefault(arch_key(spec), index)
    return {name: index_of[arch_key(spec)] for name, spec in specs.items()}


def held_out_taus(
    features: dict[str, torch.Tensor],
    names: list[str],
    cer: dict[str, float],
    source: dict[str, int],
    ridge: float,
):
    """Per later report: (its index, networks, tau of each feature set's predictions fitted on the
    earlier reports' networks); then every later report at once, fitted on the first alone. The
    features' rows are the networks of ``names``, in that order."""
    target = torch.tensor([cer[n] for n in names], dtype=torch.float64)
    where = torch.tensor([source[n] for n in names])

    def taus(train: torch.Tensor, test: torch.Tensor) -> dict[str, float | None]:
        return {
            label: kendall_tau(
                ridge_predict(x[train], target[train], x[test], ridge).tolist(), target[test].tolist()
            )
            for label, x in features.items()
        }

    rows = [
        (int(k), int((where == k).sum()), taus(where < k, where == k))
        for k in sorted(set(where.tolist()))
        if k
    ]
    rows.append(("later", int((where > 0).sum()), taus(where == 0, where > 0)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "result", type=Path, help="score_by_epoch.py's JSON (its reports, its last epoch's scores)"
    )
    parser.add_argument("--measure", default="loss", choices=("loss", "cer"))
    parser.add_argument("--ridge", type=float, default=1.0)
    parser.add_argument(
        "--unscored", type=Path, nargs="+", default=[], help="later retrain reports, not scored"
    )
    args = parser.parse_args()
    result = json.loads(args.result.read_text())
    reports = [Path(r) for r in result["reports"]]
    specs, cer, _ = retrained(*reports)
    last = max(result["by_epoch"], key=lambda e: e["epoch"])
    score = {n: s[args.measure] for n, s in last["scores"].items()}
    names = sorted(n for n in cer if n in score)
    cer = {n: cer[n] for n in names}
    new_specs, new_cer, _ = retrained(*args.unscored) if args.unscored else ({}, {}, {})
    seen = {arch_key(specs[n]) for n in names}
    new = sorted(n for n in new_cer if arch_key(new_specs[n]) not in seen)
    every = [*(specs[n] for n in names), *(new_specs[n] for n in new)]
    families = sorted({family(layer) for spec in every for layer in spec.layers} - {"skip"})
    counts = family_counts([specs[n].layers for n in names], families)
    scores = torch.tensor([[score[n]] for n in names], dtype=torch.float64)
    features = {
        "op-family counts": counts,
        "counts and score": torch.cat([counts, scores], 1),
        "score": scores,
    }
    source = first_report(reports, {n: specs[n] for n in names})
    print(f"ridge {args.ridge:g} on {', '.join(families)}; score: dev {args.measure} after epoch "
          f"{last['epoch']}; fitted on the earlier reports, Kendall tau on each later one:\n")  # fmt: skip
    print("| held out | networks | " + " | ".join(features) + " |\n|---|---|" + "---|" * len(features))
    for index, count, taus in held_out_taus(features, names, cer, source, args.ridge):
        held = "every later report (fitted on the first)" if index == "later" else reports[index].parent.name
        print(
            f"| {held} | {count} | "
            + " | ".join("-" if t is None else f"{t:.3f}" for t in taus.values())
            + " |"
        )
    if new:
        target = torch.tensor([cer[n] for n in names], dtype=torch.float64)
        predicted = ridge_predict(
            counts, target, family_counts([new_specs[n].layers for n in new], families), args.ridge
        )
        tau = kendall_tau(predicted.tolist(), [new_cer[n] for n in new])
        print(f"\nunscored networks ({len(new)}), ranked by op-family counts fitted on all {len(names)} above: "
              f"Kendall tau {'-' if tau is None else f'{tau:.3f}'}")  # fmt: skip


if __name__ == "__main__":
    main()
