"""Does a short training of each network alone, from the supernet's weights, rank the retrained
networks where the inherited weights do not? (issue 16: Kendall tau >= 0.5, missed at 0.13; the
attention networks are the ones ranked wrongly, session 20.)

Trains the shipped route's 20-epoch uniform supernet once more (``train_supernet.train``, as
``angle_ranking.py`` does), then for every retrained network of each group of reports: its dev
loss and CER with the inherited weights (BatchNorm re-estimated on ``--batches`` train batches, as
the study ranks), and again after each rung of ``--rungs`` weight steps of the path alone
(``SupernetScorer.finetuned``, the select's finalists' fine-tune, carried from rung to rung).
Prints and writes each rung's tau over each group, and the seconds the rungs cost per network.

    bash -c 'source scripts/device/setup.sh && python3 scripts/device/finetune_ranking.py /tmp/ft \
        docs/study/h200_route/latency.json --rungs 24,48,96,192 \
        --group route docs/study/h200_route/study.json'

Writes ``$OUT/finetune_ranking.json``. A script file (spawned corpus workers cannot import '<stdin>').
"""

from __future__ import annotations

import time
from pathlib import Path

from study_pieces import (  # scripts/device
    ranked_group,
    ranking_parser,
    retrained,
    route_supernet,
    write_result,
)

from supernet.select.score import SupernetScorer
from supernet.study import rank


def main() -> None:
    parser = ranking_parser(__doc__)
    parser.add_argument("--rungs", default="24,48,96", help="cumulative fine-tune steps, comma-separated")
    parser.add_argument("--lrs", default="peak", help="fine-tune learning rates, comma-separated: a number, "
                        "or peak (the search's)")  # fmt: skip
    args = parser.parse_args()
    rungs = [int(steps) for steps in args.rungs.split(",")]
    lrs = {label: None if label == "peak" else float(label) for label in args.lrs.split(",")}
    last, data, trained_in = route_supernet(args, [])
    scorer = SupernetScorer(last, data, args.batches, split="dev", arch_fraction=0.0, metric="loss",
                            weights="trained")  # fmt: skip
    groups = {}
    for name, *reports in args.group:
        specs, cer, budgets = retrained(*map(Path, reports))
        scores, seconds = {}, {}
        for network, path in rank.paths_in_space(scorer.space, specs).items():
            row, spent = {}, {}
            row["loss_0"], row["cer_0"] = (scorer.measure(path)[m] for m in ("loss", "cer"))
            for label, lr in lrs.items():
                state, done = {}, 0
                for steps in rungs:
                    start = time.perf_counter()
                    measured = scorer.finetuned(path, steps - done, lr=lr, state=state)
                    spent[f"{label}_{steps}"] = round(time.perf_counter() - start, 2)
                    row[f"loss_{label}_{steps}"], row[f"cer_{label}_{steps}"] = (
                        measured["loss"],
                        measured["cer"],
                    )
                    done = steps
            scores[network], seconds[network] = row, spent
            print(network, {k: round(v, 3) for k, v in row.items()}, flush=True)
            write_result("finetune_scores.json", {"scores": scores, "seconds": seconds})  # kept if cut off
        measures = tuple(
            f"{m}_{s}"
            for s in ("0", *(f"{label}_{r}" for label in lrs for r in rungs))
            for m in ("loss", "cer")
        )
        scores = {n: s for n, s in scores.items() if n in cer}
        entry = ranked_group(
            name, reports, scores, cer, budgets, measures, sum(sum(s.values()) for s in seconds.values())
        )
        groups[name] = {**entry, "rung_seconds": seconds}
    write_result("finetune_ranking.json", {"ckpt": str(last), "train_seconds": trained_in, "rungs": rungs, "lrs": list(lrs),
                                           "batches": args.batches, "groups": groups})  # fmt: skip


if __name__ == "__main__":
    main()
