"""The study's route with another search seed: its uniform supernet trained with ``--seed_everything
SEED`` and its select for every budget, as the study runs them (``pipeline._plan_searches``,
``_plan_selects``), each pick written to WORK/arch/ under the study's name for it
(``uniform-sSEED-any-predictor-LABEL``) for ``retrain_archs.py``. Why: one supernet's pick may be
luck (issue 16; a second supernet of seed 0 picked another path, session 20).

    python3 scripts/device/route_seed.py h200_route /tmp/route_s1 1 --table docs/study/h200_route/latency.json

A script file, not ``python3 -`` on stdin: the corpus's spawned render workers cannot import
'<stdin>'. Prints each pick's file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from study_pieces import study_with  # scripts/device, beside this file

from supernet.study import pipeline, plan
from supernet.study.execute import execute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("work", type=Path, help="a folder of its own (not the study's)")
    parser.add_argument("seed", type=int)
    parser.add_argument("--table", type=Path, required=True, help="the study's kept latency.json")
    parser.add_argument("--budget", action="append", default=[], metavar="LABEL",
                        help="write this budget's pick only (repeat; default every budget's); the select "
                        "still runs for every budget, as the study's does")  # fmt: skip
    args = parser.parse_args()
    study = study_with(args.config, [])
    study["search"] = {**study["search"], "methods": ["uniform"], "seeds": [args.seed]}
    data = plan.prepare_corpus(study)
    args.work.mkdir(parents=True, exist_ok=True)
    space, baselines = plan.space(study), plan.baselines(study)
    planned = pipeline._plan_searches(study, args.work, data, space, baselines, table_path=args.table)
    unknown = set(args.budget) - {label for label, _ in planned.budgets}
    if unknown:
        raise SystemExit(f"--budget {sorted(unknown)}: not budgets of the study ({planned.budgets})")
    execute(list(planned.searches.values()), 1, "search")
    pipeline._plan_selects(study, args.work, data, planned)
    for run, budgets in planned.selects.values():
        execute([run], 1, "select")
        for label, ms in (b for b in budgets if not args.budget or b[0] in args.budget):
            print(plan.write_arch(args.work, plan.selected_arch(run, label, ms)))


if __name__ == "__main__":
    main()
