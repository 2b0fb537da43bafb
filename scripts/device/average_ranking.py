"""Does a moving average of the supernet's weights rank a study's networks better?

Trains the study's uniform supernet once per ``--decay`` with ``model.weight_average=DECAY`` (and
any ``--search-option``, e.g. the 20-epoch recipe of issue 16's 2x route), alone, then scores the
study's retrained networks from that one checkpoint twice: with the trained weights and with the
averaged ones (``SupernetScorer(weights=...)``), and prints Kendall tau of each against their
stand-alone dev CER, with a bootstrap interval. The average does not change the training (under an
epoch budget; under ``max_time`` its small per-step cost could change the steps run), so the two
taus of one run differ by the average alone, and the trained-weights taus of the runs show
how much tau moves between trainings of one recipe. Finished supernets are kept (work folder per
decay): a call stopped by its limit goes on in the next one on the warm machine. Writes
``average_ranking.json`` (every score, tau and interval; the tau by the other score, CER or loss;
the tau within each budget) and ``average_ranking.png`` under ``--out``. The networks are the
report's distinct ones (``rank.distinct_networks``).

    bash -c 'source scripts/device/setup.sh && python3 scripts/device/average_ranking.py h200_three \
        /tmp/average --table docs/study/h200_three/latency.json --report docs/study/h200_three/study.json \
        --decay 0.98 0.995 --search-option trainer.max_epochs=20 --search-option model.warmup_epochs=10'
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from supernet.study import pipeline, plan, rank
from supernet.study.costs import read_numbers
from supernet.study.execute import execute

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from study_pieces import retrained, study_parser, study_with  # noqa: E402  (beside this file)
from tau_from_select import bootstrap, shown, shown_within  # noqa: E402


def plot(result: dict, cer: dict[str, float], path: Path) -> None:
    """One panel per decay: each network's supernet score against its stand-alone dev CER, with
    the trained weights and with the average, so a tighter cloud shows at a glance."""
    from supernet.loggers import can_plot, pyplot

    if not can_plot(path.name):
        return
    plt = pyplot()
    runs = result["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4), squeeze=False)
    for ax, (decay, entry) in zip(axes[0], runs.items()):
        for weights, colour in (("trained", "tab:blue"), ("average", "tab:orange")):
            if weights not in entry:
                continue
            scores = entry[weights]["scores"]
            ax.scatter([100 * cer[n] for n in scores], list(scores.values()), color=colour, s=18,
                       label=f"{weights} (tau {shown(entry[weights]['tau'])})")  # fmt: skip
        ax.set_xlabel("stand-alone dev CER (%)")
        ax.set_ylabel("supernet score")
        ax.set_title(f"decay {decay}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = study_parser(__doc__, "trainer.max_epochs=20")
    parser.add_argument("--decay", type=float, nargs="+", required=True, help="one supernet per decay")
    parser.add_argument(
        "--weights", nargs="+", default=["trained", "average"], choices=("trained", "average"),
        help="score with these (default both; one halves the scoring time)",
    )  # fmt: skip
    args = parser.parse_args()
    specs, cer, budgets = retrained(args.report)
    result: dict = {"search_options": args.search_option, "report": str(args.report), "runs": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    for decay in args.decay:
        study = study_with(args.config, [*args.search_option, f"model.weight_average={decay}"])
        work = args.work / f"decay_{decay}"
        work.mkdir(parents=True, exist_ok=True)
        data = plan.prepare_corpus(study)
        planned = pipeline._plan_searches(
            study, work, data, plan.space(study), plan.baselines(study), table_path=args.table
        )
        run = next(run for (method, _, _), run in planned.searches.items() if method == "uniform")
        execute([run], 1, "search")
        state = torch.load(run.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        if "net_average.updates" not in state:  # else both columns would score the trained weights
            raise SystemExit(f"{run.checkpoint}: no weight average in it (decay {decay}?)")
        entry = {"search_seconds": read_numbers(run.out / "search.json", "search_seconds")[0]}
        metric = study["ranking"]["metric"]
        for weights in args.weights:
            start = time.perf_counter()
            scores = rank.supernet_scores(
                run.checkpoint, data, specs, study["ranking"]["batches"], weights=weights
            )
            names = sorted(scores)
            x, y = [scores[n][metric] for n in names], [cer[n] for n in names]
            tau = rank.kendall_tau(x, y)
            low, high = bootstrap(x, y)
            within, within_mean = rank.within_budgets(scores, cer, budgets, metric)
            other = "cer" if metric == "loss" else "loss"  # the score the study does not rank by
            tau_other = rank.kendall_tau([scores[n][other] for n in names], y)
            entry[weights] = {"tau": tau, "interval_90": [low, high], "networks": len(names),
                              "seconds": round(time.perf_counter() - start, 1), "scores": dict(zip(names, x)),
                              f"tau_{other}": tau_other, f"scores_{other}": {n: scores[n][other] for n in names},
                              "within_budget": within, "tau_within_budget": within_mean}  # fmt: skip
            print(
                f"decay {decay}: {weights:8s} weights, tau ({metric}) {shown(tau)} "
                f"[{shown(low)}, {shown(high)}] over {len(names)} networks; tau ({other}) {shown(tau_other)}; "
                f"within one budget {shown(within_mean)} ("
                + ", ".join(f"{label} {shown_within(b)}" for label, b in within.items())
                + ")"
            )
        result["runs"][str(decay)] = entry
        (args.out / "average_ranking.json").write_text(json.dumps(result, indent=1))
        plot(result, cer, args.out / "average_ranking.png")
    print(f"{'decay':>8s} {'seconds':>8s} {'tau trained':>12s} {'tau average':>12s}")
    for decay, entry in result["runs"].items():
        taus = (shown(entry[w]["tau"]) if w in entry else "not scored" for w in ("trained", "average"))
        print(f"{decay:>8s} {entry['search_seconds']:8.1f} {next(taus):>12s} {next(taus):>12s}")


if __name__ == "__main__":
    main()
