"""The study's route with another search seed: its uniform supernet trained with ``--seed_everything
SEED`` and its select for every budget, as the study runs them (``pipeline._plan_searches``,
``_plan_selects``), each pick written to WORK/arch/ under the study's name for it
(``uniform-sSEED-any-predictor-LABEL``) for ``retrain_archs.py``. Why: one supernet's pick may be
luck (issue 16; a second supernet of seed 0 picked another path, session 20).

    python3 scripts/device/route_seed.py h200_route /tmp/route_s1 1 --table docs/study/h200_route/latency.json

``--option KEY=VALUE`` sets a search option of the study (repeat): the route with another supernet
recipe, e.g. ``'model.method_options={draw_weights: {former: 3, down: 0.3333}}'``. ``--score REPORT``
also scores a finished study's retrained networks with this supernet (``WORK/scores.json``, for
``ranking_breakdown.py --scores FILE --measure loss``) and prints Kendall's tau and each budget's
first choice (``rank.top_choice``): more supernets of one recipe ranked at no extra training.

A script file, not ``python3 -`` on stdin: the corpus's spawned render workers cannot import
'<stdin>'. Prints each pick's file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from study_pieces import retrained, study_with  # scripts/device, beside this file

from supernet.study import pipeline, plan, rank
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
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a search option of the study (repeat)")  # fmt: skip
    parser.add_argument("--score", type=Path, metavar="REPORT", help="a study.json whose networks to score")
    args = parser.parse_args()
    study = study_with(args.config, args.option)
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
    if args.score:  # after the picks are written: a scoring that fails loses none of them
        score(args.score, next(iter(planned.searches.values())).checkpoint, data, args.work, study)


def score(report: Path, ckpt: Path, data: Path, work: Path, study: dict) -> None:
    """The report's networks scored with the supernet, its tau and first choices printed."""
    archs, standalone, budgets = retrained(report)
    scores = rank.supernet_scores(ckpt, data, archs, study["ranking"]["batches"])
    (work / "scores.json").write_text(json.dumps({"groups": {"route": {"scores": scores}}}, indent=1))
    metric = study["ranking"]["metric"]
    (ranked,), _, _ = rank.ranking_quality({"route": scores}, standalone, metric, budgets)  # the study's taus
    # the first choice among the random paths and baselines (the reference's picks left out, as a study's)
    searched = {r["name"] for r in json.loads(report.read_text())["rows"] if r.get("kind") == "searched"}
    values = {n: s[metric] for n, s in scores.items() if n not in searched}
    tops = rank.top_choice(values, standalone, budgets)["within_budget"]
    print(f"scored {ranked['archs']} networks: tau {ranked['kendall_tau']:.3f}, within a budget "
          f"{ranked['kendall_tau_within_budget']:.3f}; first choices "
          + ", ".join(f"{label} {t['top']} ({t['place']} of {t['archs']}, +{100 * t['regret']:.1f} points)"
                      for label, t in tops.items()))  # fmt: skip


if __name__ == "__main__":
    main()
