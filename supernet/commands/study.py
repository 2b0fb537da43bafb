"""`supernet study CONFIG --out DIR`: does the search beat random picks and baselines at the same latency?

    supernet study tiny --out runs/study            # the shipped CPU study (supernet/configs/study/)
    supernet study my_study.yaml --out runs/study --parallel 2

Searches (methods x seeds x budgets), random paths within each budget and the baselines, every
one retrained with the same recipe and each seed, scored by the supernet (Kendall tau), measured
under the latency table's settings: ``DIR/study.json``, ``DIR/study.md`` and plots. Run it again
to resume: finished runs are skipped; ``--partial`` reports what a stopped study has so far. The YAML and the files: ``docs/study.md``.
"""

from __future__ import annotations

import argparse

from supernet.errors import UserError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a study YAML, or a shipped study's name (tiny)")
    parser.add_argument("--out", required=True, help="the study's folder (resumed when it holds this study)")
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="runs side by side, as subprocesses (default 1: in this process)",
    )
    parser.add_argument(
        "--alone-retrain",
        action="store_true",
        help="after the retrains, time one more retrain with the machine to itself: with --parallel above 1, "
        "the cost target is then judged for a search that ran alone in its stage",
    )
    parser.add_argument(
        "--alone-route",
        action="store_true",
        help="after the retrains, time a supernet's route again on this machine, one run after another "
        "(its training, its select, one retrain, in DIR/alone_route/): the 2x cost target is then judged on "
        "these, so a study resumed on another machine still compares one machine's seconds",
    )
    parser.add_argument(
        "--before-retrains",
        action="store_true",
        help="stop before the retrains, once the searches, selects, picks, supernet scores and latencies "
        "are kept: the retrains then run in a later call (device time split across machines)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the study that --out holds")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="run nothing: report the networks finished so far (DIR/partial.json, DIR/partial.md)",
    )


def run(args: argparse.Namespace) -> int:
    from supernet.study.pipeline import report_partial, run_study

    if args.partial:
        report_partial(args.config, args.out)
        return 0
    if args.parallel < 1:
        raise UserError(f"--parallel must be at least 1, got {args.parallel}")
    run_study(
        args.config,
        args.out,
        args.parallel,
        args.overwrite,
        alone_retrain=args.alone_retrain,
        alone_route=args.alone_route,
        before_retrains=args.before_retrains,
    )
    return 0
