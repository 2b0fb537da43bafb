"""Do fine-tuned finalists (``supernet select --finalists``) pick better networks than the
supernet's score alone? The report of ``scripts/device/finalists.sh``.

Reads each seed's ``select-sS.json`` (its K finalists: inherited and fine-tuned score; the score's
pick is the first, the finalists' pick is ``best[].path``), the finalists' retrains
(``retrain_archs.json``: every finalist of every seed, ``finalist-KEY``) and a kept study report of
the same recipe (``report_24_epochs.json``: the budget's baselines and random paths) and writes:
- per seed, both picks against the study's verdicts (``supernet.study.verdict``: >= 5% over the best
  baseline that fits, the random paths' median and top quartile);
- Kendall tau of the inherited and of the fine-tuned score against the finalists' retrained dev
  CER, over all finalists and within each seed's K (what the fine-tune is for);
- the cost (``route_cost.json``): supernet + select (fine-tunes included) over one retrain.

    python scripts/finalists_report.py --selects OUT --retrain OUT/retrain_archs.json \
        --reference docs/study/h200_three/retrain_length/report_24_epochs.json \
        --cost OUT/route_cost.json --out DIR [--baseline-again OUT/baseline_again.json]

``--retrain`` and ``--baseline-again`` take several files of other retrain seeds of the same
networks: their rows are pooled by name (the mean and sample std over all the seeds, exactly).
``--baseline-again`` holds baselines retrained again on the machine of the finalists' retrains:
they replace the reference's rows of the same name, so the picks are judged against a baseline of
their own machine.

Dev is what the scores are ranked against; test CER appears only against the targets.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
from pathlib import Path

from retrain_length_report import with_cer  # scripts/, beside this file

from supernet.outputs import atomic_write_json
from supernet.study import verdict
from supernet.study.rank import defined_mean, kendall_tau
from supernet.study.report import cer_cell

SELECT = re.compile(r"select-s(?P<seed>\d+)\.json")
FITS = 1e-3  # the budget's ms as select.json and the report each round it


def budget_of(report: dict, ms: float) -> dict:
    """The report's budget whose ms is ``ms``."""
    return next(b for b in report["budgets"] if abs(b["ms"] - ms) <= FITS * ms)


def reference_rows(reference: dict, budget: dict) -> list[dict]:
    """The reference report's baselines and random paths of ``budget``: what the picks are judged
    against."""
    return [r for r in reference["rows"] if r["budget"] == budget["budget"] and r["kind"] != "searched"]


def pick_row(name: str, retrained: dict, budget: dict, template: dict, predicted_ms: float | None) -> dict:
    """A retrained finalist as a study row of ``budget`` (``template``: a row to copy fields from;
    ``predicted_ms``: the table's cost of its path, as its select recorded it)."""
    row = copy.deepcopy(template)
    row.update(
        name=name, kind="searched", method=None, search_seed=None, budget=budget["budget"],
        budget_ms=budget["ms"], arch=retrained["arch"], params=retrained["params"], predicted_ms=predicted_ms,
        latency_ms=None,  # not the template's; the finalists were not timed
    )  # fmt: skip
    return with_cer(row, retrained)


def pooled_rows(docs: list[dict]) -> dict[str, dict]:
    """Rows of ``retrain_archs.py`` files by name, a name in several files (other seeds of that
    network) pooled: the mean and sample std of every set over all its seeds. A row without a
    finished seed adds nothing; files that share a retrain seed, or rows of one network measured
    on other sets, are an error, not a silent mix."""
    rows: dict[str, dict] = {}
    seeds: dict[str, set] = {}
    for doc in docs:
        doc_seeds = set((doc.get("retrain") or {}).get("seeds") or [])
        for row in doc["rows"]:
            name = row["name"]
            if not row.get("retrain_seeds"):
                continue  # a network whose retrains all failed
            row = with_dev_seeds(row)
            if seeds.get(name, set()) & doc_seeds:
                raise ValueError(f"{name}: retrain seeds {sorted(seeds[name] & doc_seeds)} are in two files")
            seeds.setdefault(name, set()).update(doc_seeds)
            if name not in rows:
                rows[name] = copy.deepcopy(row)
                continue
            kept = rows[name]
            if set(kept["cer"]) != set(row["cer"]):
                raise ValueError(
                    f"{name}: measured on {sorted(kept['cer'])} in one file, {sorted(row['cer'])} in another"
                )
            n, m = kept["retrain_seeds"], row["retrain_seeds"]
            # the sets both files kept by seed (a null or missing cer_by_seed keeps none)
            both = sorted(set(kept.get("cer_by_seed") or {}) & set(row.get("cer_by_seed") or {}))
            kept["cer_by_seed"] = {s: kept["cer_by_seed"][s] + row["cer_by_seed"][s] for s in both}
            if not both:
                kept.pop("cer_by_seed")
            for s in kept["cer"]:
                mean = (n * kept["cer"][s] + m * row["cer"][s]) / (n + m)
                squares = (n - 1) * kept["cer_std"][s] ** 2 + (m - 1) * row["cer_std"][s] ** 2
                spread = n * (kept["cer"][s] - mean) ** 2 + m * (row["cer"][s] - mean) ** 2
                kept["cer"][s], kept["cer_std"][s] = mean, ((squares + spread) / (n + m - 1)) ** 0.5
            kept["retrain_seeds"] = n + m
            kept.pop("dev_cer_by_epoch", None)  # one seed group's curve no longer describes the row
            kept.pop("train_seconds", None)  # nor its seconds
    return rows


def with_dev_seeds(row: dict) -> dict:
    """A row of a file written before rows kept ``cer_by_seed``, given each seed's dev CER from its
    curve's last entry (the final pass: the best checkpoint's dev CER, whose mean is the row's);
    unchanged when it has per-seed values already or a seed's curve is missing."""
    curves = row.get("dev_cer_by_epoch") or []
    if row.get("cer_by_seed") or len(curves) != row["retrain_seeds"] or not all(curves):
        return row
    finals = [curve[-1] for curve in curves]
    if abs(statistics.fmean(finals) - row["cer"]["dev"]) > 1e-9:  # a curve without its final pass
        return row
    return {**row, "cer_by_seed": {"dev": finals}}


def with_reruns(reference: dict, reruns: dict[str, dict]) -> dict:
    """The reference report, its rows of a rerun network replaced by the rerun's error rates (on
    the same sets: a rerun that lacks one would drop it from the verdicts unseen)."""
    reference = copy.deepcopy(reference)
    for row in (r for r in reference["rows"] if r["name"] in reruns):
        missing = set(row["cer"]) - set(reruns[row["name"]]["cer"])
        if missing:
            raise ValueError(f"{row['name']}: the rerun lacks the sets {sorted(missing)} of the reference")
    reference["rows"] = [
        with_cer(r, reruns[r["name"]]) if r["name"] in reruns else r for r in reference["rows"]
    ]
    return reference


def seed_taus(finalists: list[dict], dev: dict[str, float]) -> dict:
    """Within one seed's finalists: tau of the inherited and of the fine-tuned score against the
    retrained dev CER, over the retrained finalists fine-tuned for the most steps (successive
    halving stops the others early; a fine-tune that diverged is left out)."""
    retrained = [f for f in finalists if f["path"] in dev]
    most = max((f.get("finetune_steps", 0) for f in retrained), default=0)
    kept = [f for f in retrained if f.get("finetune_steps", 0) == most and f.get("finetuned") is not None]
    cer = [dev[f["path"]] for f in kept]
    return {
        "finalists": len(kept),
        "inherited": kendall_tau([f["score"] for f in kept], cer),
        "finetuned": kendall_tau([f["finetuned"] for f in kept], cer),
    }


def pooled_finalists(selects: dict[int, dict]) -> list[dict]:
    """Every seed's finalists, a path that is a finalist of several seeds once: its entry of the
    most fine-tune steps (with halving it may reach the last rung in one seed only), else its
    first."""
    every: dict[str, dict] = {}
    for f in (f for s in selects.values() for f in s["best"][0]["finalists"]):
        if f.get("finetune_steps", 0) > every.get(f["path"], {}).get("finetune_steps", -1):
            every[f["path"]] = f
    return list(every.values())


def report(selects: dict[int, dict], retrained: dict[str, dict], reference: dict, cost: dict | None) -> dict:
    """Everything the report says, as JSON: per seed its picks' verdicts, the taus, the cost."""
    ms = selects[min(selects)]["budgets"][0]
    budget = budget_of(reference, ms)
    group = reference_rows(reference, budget)
    template = next(r for r in reference["rows"] if r["kind"] == "searched")
    dev = {key: r["cer"]["dev"] for key, r in retrained.items() if r["retrain_seeds"]}
    seeds, rows = {}, []
    for seed, select in sorted(selects.items()):
        [best] = select["best"]
        finalists = best["finalists"]
        picks = {"score": finalists[0]["path"], "finalists": best["path"]}
        predicted = {f["path"]: f.get("cost") for f in finalists}  # the table's ms, as select had it
        for which, key in picks.items():
            if key in dev:
                name = f"s{seed}-{which}-pick-{key}"
                rows.append(pick_row(name, retrained[key], budget, template, predicted.get(key)))
        seeds[seed] = {
            "picks": picks,
            "changed": picks["score"] != picks["finalists"],
            "dev": {which: dev.get(key) for which, key in picks.items()},
            "taus": seed_taus(finalists, dev),
            "select_seconds": select["seconds"],
            "finetune_seconds": select.get("finetune_seconds"),
        }
    verdicts = verdict.judge({"rows": group + rows, "budgets": [budget]})
    seed_tests = {}
    tested = set()  # a network that is two picks (the score's and the finalists') is tested once
    for row in rows:
        if row["arch"]["name"] in tested:  # finalist-KEY: one name a network
            continue
        tested.add(row["arch"]["name"])
        baseline = verdict.best_fitting_baseline(row, group)
        sets = set(row.get("cer_by_seed") or {}) & set((baseline or {}).get("cer_by_seed") or {})
        tests = {s: verdict.seed_tests(row, baseline, s) for s in sorted(sets)}
        if any(tests.values()):
            seed_tests[row["name"]] = {"baseline": baseline["name"], **{s: t for s, t in tests.items() if t}}
    pooled = seed_taus(pooled_finalists(selects), dev)
    result = {
        "budget": budget,
        "seeds": seeds,
        "rows": rows,
        "verdicts": verdicts,
        "seed_tests": seed_tests,
        "taus": {
            "pooled": pooled,
            "mean_within_seed": {
                kind: defined_mean([s["taus"][kind] for s in seeds.values()])
                for kind in ("inherited", "finetuned")
            },
        },
    }
    if cost is not None:
        per_seed = {
            seed: (cost["supernet_seconds"] + s["select_seconds"]) / cost["retrain_seconds"]
            for seed, s in seeds.items()
        }
        result["cost"] = {**cost, "ratio_by_seed": per_seed}
    return result


def markdown(result: dict, reference: dict) -> list[str]:
    budget = result["budget"]
    group = reference_rows(reference, budget)
    lines = [
        f"# Fine-tuned finalists at {budget['budget']} ({budget['ms']:.3f} ms)",
        "",
        "| network | kind | dev CER | test CER |",
        "|---|---|---|---|",
    ]
    for r in sorted(group + result["rows"], key=lambda r: r["cer"]["dev"]):
        cells = [cer_cell(r, s) for s in ("dev", "test")]
        lines.append(f"| {r['name']} | {r['kind']} | " + " | ".join(cells) + " |")
    lines += ["", "| seed | the fine-tune changed the pick | dev CER, score's pick | dev CER, finalists' pick |"
              " tau within its last rung's finalists, inherited / fine-tuned (how many) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for seed, s in result["seeds"].items():
        dev = ["-" if v is None else f"{100 * v:.1f}" for v in s["dev"].values()]
        tau = [_tau(s["taus"][k]) for k in ("inherited", "finetuned")]
        lines.append(
            f"| {seed} | {'yes' if s['changed'] else 'no'} | {dev[0]} | {dev[1]} | {' / '.join(tau)} ({s['taus']['finalists']}) |"
        )
    pooled, mean = result["taus"]["pooled"], result["taus"]["mean_within_seed"]
    lines += [
        "",
        f"Kendall tau against the retrained dev CER over all {pooled['finalists']} finalists: inherited "
        f"score {_tau(pooled['inherited'])}, fine-tuned {_tau(pooled['finetuned'])}; mean within a seed: "
        f"{_tau(mean['inherited'])} and {_tau(mean['finetuned'])}.",
    ]
    if "cost" in result:
        cost = result["cost"]
        ratios = ", ".join(f"{r:.2f}x" for r in cost["ratio_by_seed"].values())
        lines.append(
            f"\nCost: supernet {cost['supernet_seconds']:.1f} s + select (fine-tunes "
            f"{cost['finetune_seconds']:.1f} s of it) against one {cost['epochs']}-epoch retrain "
            f"{cost['retrain_seconds']:.1f} s: by seed {ratios} (target <= {verdict.SEARCH_VS_RETRAIN:g}x)"
        )
    lines += _seed_test_lines(result["seed_tests"])
    lines += ["", *verdict.markdown(result["verdicts"])]
    return lines


def draw(result: dict, reference: dict, selects: dict[int, dict], out: Path) -> Path | None:
    """Test CER against the table's latency: the picks, the random paths and the baselines of the
    budget, with the budget (and the band's floor, when the selects had one) marked."""
    from supernet.loggers import can_plot, pyplot
    from supernet.study.report import marked_points, save_figure

    if not can_plot("the finalists' plot"):
        return None
    budget = result["budget"]
    rows = [
        r for r in reference_rows(reference, budget) + result["rows"] if r.get("predicted_ms") is not None
    ]
    fig, ax = pyplot().subplots(figsize=(6, 4.2))
    marked_points(ax, rows, lambda r: r["predicted_ms"], lambda r: 100 * r["cer"]["test"],
                  lambda r: 100 * r["cer_std"]["test"])  # fmt: skip
    ax.axvline(budget["ms"], color="k", ls=":", lw=1, label=f"budget {budget['ms']:.3f} ms")
    floor = next(iter(selects.values())).get("floor")
    if floor:
        ax.axvline(floor * budget["ms"], color="k", ls="--", lw=1, label=f"floor {floor:g} x budget")
    ax.set(xlabel="predicted latency (ms, the table's)", ylabel="test CER (%)",
           title=f"finalists' and score's picks at {budget['budget']}")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out / "cer_vs_latency.png")


def _seed_test_lines(tests: dict) -> list[str]:
    """Each pick's one-sided permutation p-values over the retrain seeds against its baseline."""
    if not tests:
        return []
    lines = ["", "Permutation tests over the retrain seeds, each network once (one-sided p; null: the pick's CER is",
             "not lower, or not lower than 0.95 x the baseline's). The targets are judged on test CER; a file",
             "that kept no per-seed test CER is tested on dev, each seed's from its curve's final pass. Each",
             "pick against one baseline: no correction for the several tests.", "",
             "| pick | against | set | seeds | p better | p 5% better | least p |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, entry in tests.items():
        for split, t in ((s, t) for s, t in entry.items() if s != "baseline"):
            lines.append(
                f"| {name} | {entry['baseline']} | {split} | {t['seeds'][0]} v {t['seeds'][1]} | "
                f"{t['p_better']:.3g} | {t['p_gain']:.3g} | {t['p_least']:.3g} |"
            )
    return lines


def _tau(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--selects", type=Path, required=True, help="a folder of select-sS.json")
    parser.add_argument(
        "--retrain", type=Path, nargs="+", required=True,
        help="finalists.sh's retrain_archs.json (and files of further seeds of the same networks)",
    )  # fmt: skip
    parser.add_argument("--reference", type=Path, required=True, help="a study report of the same recipe")
    parser.add_argument(
        "--baseline-again", type=Path, nargs="*", default=[],
        help="retrain_archs.py files of baselines rerun on the finalists' machine: judge against them",
    )  # fmt: skip
    parser.add_argument("--cost", type=Path, help="finalists.sh's route_cost.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    selects = {
        int(m["seed"]): json.loads(p.read_text())
        for p in sorted(args.selects.glob("select-s*.json"))
        if (m := SELECT.fullmatch(p.name))
    }
    retrains = pooled_rows([json.loads(p.read_text()) for p in args.retrain])
    retrained = {name.removeprefix("finalist-"): r for name, r in retrains.items()}
    reference = json.loads(args.reference.read_text())
    if args.baseline_again:
        reference = with_reruns(
            reference, pooled_rows([json.loads(p.read_text()) for p in args.baseline_again])
        )
    cost = json.loads(args.cost.read_text()) if args.cost else None
    result = report(selects, retrained, reference, cost)
    lines = markdown(result, reference)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "finalists.json", result)
    plot = draw(result, reference, selects, args.out)
    if plot is not None:
        lines += ["", f"![test CER against latency]({plot.name})"]
    (args.out / "finalists.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("mean dev CER of the picks:", {
        which: statistics.fmean(v for s in result["seeds"].values() if (v := s["dev"][which]) is not None)
        for which in ("score", "finalists") if any(s["dev"][which] is not None for s in result["seeds"].values())
    })  # fmt: skip


if __name__ == "__main__":
    main()
