"""Does the ABS angle rank the retrained networks where the supernet's loss does not? (issue 16:
Kendall tau >= 0.5, missed at 0.13-0.27 by every loss- or CER-based score of sessions 11-17)

Trains the shipped route's 20-epoch uniform supernet once more, keeping its initial weights
(``model.keep_initial_weights``), and scores every retrained network of each group of reports with
it: dev CTC loss and CER (BatchNorm re-estimated on ``--batches`` train batches, as the study
ranks) and ``init_cosine``, the cosine of the ABS angle between the path's weight matrices at
initialisation and after training (``supernet.select.angle``; lower is better, fixed before the
run). Prints and writes each measure's tau over each group, within each budget, and over all.

    bash -c 'source scripts/device/setup.sh && python3 scripts/device/angle_ranking.py /tmp/angle \
        docs/study/h200_route/latency.json \
        --group route docs/study/h200_route/study.json \
        --group three docs/study/h200_three/retrain_length/report_24_epochs.json \
            docs/study/h200_three/finalists/retrain_archs.json ...'

Writes ``$OUT/angle_ranking.json``. A script file (spawned corpus workers cannot import '<stdin>').
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

from supernet.errors import UserError
from supernet.search.extract import load_search_checkpoint
from supernet.select.angle import require_initial_weights
from supernet.study import rank

MEASURES = ("loss", "cer", "init_cosine")


def main() -> None:
    parser = ranking_parser(__doc__, "a supernet trained already (with its initial weights)")
    parser.add_argument("--angle-only", action="store_true",
                        help="init_cosine alone: no data pass (minutes, not hours, on a CPU)")  # fmt: skip
    args = parser.parse_args()
    if args.ckpt:  # refused before any scoring, as `supernet select --metric init_cosine` refuses it
        try:
            require_initial_weights(
                load_search_checkpoint(args.ckpt)[2]["kept_initial_weights"], args.ckpt, "--ckpt"
            )
        except UserError as err:
            raise SystemExit(str(err)) from None
    last, data, trained_in = route_supernet(args, ["model.keep_initial_weights=true"])
    measures = ("init_cosine",) if args.angle_only else MEASURES
    groups = {}
    for name, *reports in args.group:
        began = time.perf_counter()
        specs, cer, budgets = retrained(*map(Path, reports))
        scores = (
            angle_scores(last, specs)
            if args.angle_only
            else rank.supernet_scores(last, data, specs, args.batches, weights="trained")
        )
        scores = {n: s for n, s in scores.items() if n in cer}
        seconds = time.perf_counter() - began
        groups[name] = ranked_group(name, reports, scores, cer, budgets, measures, seconds)
    write_result("angle_ranking.json", {"ckpt": str(last), "train_seconds": trained_in,
                                        "batches": args.batches, "groups": groups})  # fmt: skip


def angle_scores(ckpt: Path, specs: dict) -> dict[str, dict[str, float]]:
    """``init_cosine`` of each spec that is a path of the checkpoint's space (no data read)."""
    from supernet.search.module import SearchModule
    from supernet.select.angle import init_cosine

    module = SearchModule.load_from_checkpoint(ckpt, map_location="cpu")
    return {
        name: {"init_cosine": init_cosine(module.net, module.initial_weights, path)}
        for name, path in rank.paths_in_space(module.space, specs).items()
    }


if __name__ == "__main__":
    main()
