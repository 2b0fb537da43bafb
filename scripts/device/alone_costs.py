"""The search issues' time ratios with the GPU to itself, and each supernet's ranking of a study.

A study runs its stages side by side, so its own ratios compare like with like only within a
stage. This runs a study's pieces one at a time, in this process, with the study's recipes and
budgets (read from a kept latency table, so no profiling): the retrains of ARCHs (seed 0), the ST
search at one budget, the uniform supernet and its ``select`` for every budget. Each run's seconds
are its own (``train_seconds``, ``search_seconds``, the select's ``seconds``). Then each supernet
scores the networks of the study's report (the study's ranking settings, timed) and prints Kendall
tau against their stand-alone dev CER; the scores are written as ``scores_SEARCH.json`` caches
for ``scripts/tau_from_select.py`` (its bootstrap interval). Finished runs are skipped, so a call
stopped by its limit goes on in the next one on the warm machine.

    bash -c 'source scripts/device/setup.sh && python3 scripts/device/alone_costs.py h200_three \
        /tmp/alone --table docs/study/h200_three/latency.json --report docs/study/h200_three/partial.json \
        --budget budget_tdnn_d --archs docs/study/h200_three/arch/st-s0-budget_conformer_s.yaml'

A shorter search recipe, timed and ranked the same way (then retrain its picks, the ST search's
``arch.yaml`` and the select's ``budget_*/arch.yaml``, with ``retrain_archs.py``): add
``--search-option trainer.max_epochs=15 --search-option model.warmup_epochs=8``.
"""

from __future__ import annotations

import json
import time

from study_pieces import retrained, study_parser, study_with  # scripts/device, beside this file

from supernet.archspec import ArchSpec
from supernet.select.problem import key_of
from supernet.study import pipeline, plan, rank
from supernet.study.costs import read_numbers
from supernet.study.execute import execute


def main() -> None:
    parser = study_parser(__doc__, "trainer.max_epochs=15")
    parser.add_argument(
        "--budget", default="budget_tdnn_d", help="the ST search's budget (a study budget label)"
    )
    parser.add_argument("--archs", nargs="*", default=[], help="ArchSpecs to retrain alone (seed 0)")
    args = parser.parse_args()
    study, work = study_with(args.config, args.search_option), args.work
    work.mkdir(parents=True, exist_ok=True)
    data = plan.prepare_corpus(study)
    space, baselines = plan.space(study), plan.baselines(study)
    planned = pipeline._plan_searches(study, work, data, space, baselines, table_path=args.table)
    result = {"budgets": planned.budgets, "retrains": {}, "searches": {}, "scoring": {}}

    def save():
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "alone_costs.json").write_text(json.dumps(result, indent=1))

    for spec in map(ArchSpec.load, args.archs):
        run = plan.retrain_run(study, work, data, plan.write_arch(work, spec), spec.name, 0)
        execute([run], 1, "retrain")
        result["retrains"][spec.name] = read_numbers(run.out / "metrics.json", "train_seconds")[0]
        save()
    st = next(
        run
        for (method, _, budget), run in planned.searches.items()
        if method == "st" and budget[0] == args.budget
    )
    uniform = next(run for (method, _, _), run in planned.searches.items() if method == "uniform")
    for run in (st, uniform):
        execute([run], 1, "search")
        result["searches"][run.out.name] = read_numbers(run.out / "search.json", "search_seconds")[0]
        save()
    pipeline._plan_selects(study, work, data, planned)
    for select, _ in planned.selects.values():
        execute([select], 1, "select")
        result["searches"][select.out.name] = read_numbers(select.out / "select.json", "seconds")[0]
        save()
    specs, cer, _ = retrained(args.report)
    for run in (st, uniform):
        start = time.perf_counter()
        scores = rank.supernet_scores(run.checkpoint, data, specs, study["ranking"]["batches"])
        took = time.perf_counter() - start
        metric = study["ranking"]["metric"]
        names = sorted(scores)
        ranked = rank.ranking_quality({run.out.name: scores}, cer, metric)[0][0]  # the study's own tau
        tau = ranked["kendall_tau"]
        result["scoring"][run.out.name] = {
            "networks": ranked["archs"],
            "seconds": took,
            "tau": tau,
            "metric": metric,
        }
        cache = {"settings": {"ckpt": str(run.checkpoint), "metric": metric},
                 "scores": {key_of(space.index_of(specs[n])): scores[n][metric] for n in names}}  # fmt: skip
        (args.out / f"scores_{run.out.name}.json").write_text(json.dumps(cache))
        print(f"{run.out.name}: {len(names)} networks scored in {took:.0f} s; tau ({metric}) {tau}")
        save()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
