"""Is the study's retrain long enough, and do the search's verdicts hold under a longer one?

Reads what ``scripts/device/retrain_length.sh`` brought back (every network of the study's two
issue budgets, and the 20-epoch route's picks, retrained for more epochs with the study's seeds)
beside the study's report (the same networks after its 12-epoch retrain) and writes, for both
recipes side by side:
- each budget's table (dev and test CER, mean +- std over the retrain seeds);
- the study's own verdicts (``supernet.study.verdict``: >= 5% over the best baseline that fits,
  the random paths' median and top quartile), judged on each recipe's CER;
- Kendall tau between the two recipes' dev CER (does a 12-epoch retrain rank networks as a longer
  one does?), each supernet's tau against both (given score files), and the parameter count's
  over the same networks (``rank.parameter_count_ranking``: the free reference);
- the route's cost against the longer retrain (``route_cost.json``);
- a plot of dev CER after each epoch of the longer retrain;
- each recipe's rows as a study report (``report_N_epochs.json``), for ``ranking_breakdown.py``.

    python scripts/retrain_length_report.py --side OUT/retrain_side.json \
        --report docs/study/h200_three/study.json \
        --short docs/study/h200_three/short_recipes/20_epochs_uniform \
        --cost OUT/route_cost.json --scores 20_epochs=docs/.../average_ranking.json:0.98 --out DIR

Dev chooses; test CER appears only against the targets.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from pathlib import Path

from supernet.outputs import atomic_write_json
from supernet.study import verdict
from supernet.study.rank import kendall_tau, parameter_count_ranking, ranking_quality
from supernet.study.report import cer_cell, late_drop

SHORT_NAME = re.compile(r"short(?P<ms>[0-9.]+)-pick-(?P<strategy>\w+)-s(?P<seed>\d+)")


def budget_of(ms: str, budgets: list[dict]) -> dict:
    """The study budget whose ms, rounded to three places, is ``ms`` (the picks' folder names)."""
    return next(b for b in budgets if f"{b['ms']:.3f}" == ms)


def short_rows(short: Path, budgets: list[dict], template: dict) -> list[dict]:
    """The 20-epoch route's picks after the study's 12-epoch retrain, as study rows."""
    rows = []
    for folder in sorted(short.glob("budget_*")):
        ms = folder.name.removeprefix("budget_")
        for kept in json.loads((folder / "retrain_archs.json").read_text())["rows"]:
            rows.append(searched_row(f"short{ms}-{kept['name']}", kept, budgets, template))
    return rows


def searched_row(name: str, retrained: dict, budgets: list[dict], template: dict) -> dict:
    """A 20-epoch pick as a study row (``template``: a study row to copy the fields from)."""
    match = SHORT_NAME.fullmatch(name)
    budget = budget_of(match["ms"], budgets)
    row = copy.deepcopy(template)
    row.update(
        name=name, kind="searched", method=f"uniform+{match['strategy']}", search_seed=int(match["seed"]),
        budget=budget["budget"], budget_ms=budget["ms"], arch=retrained["arch"], params=retrained["params"],
        predicted_ms=None, latency_ms=None,  # not the template's; the picks were not timed
    )  # fmt: skip
    return with_cer(row, retrained)


def with_cer(row: dict, retrained: dict) -> dict:
    row = copy.deepcopy(row)
    row.update(cer=retrained["cer"], cer_std=retrained["cer_std"], retrain_seeds=retrained["retrain_seeds"])
    for stale in ("wer", "rank_among_random", "runs", "supernet_cer", "supernet_loss", "cer_by_seed"):
        row.pop(stale, None)
    if "cer_by_seed" in retrained:  # files written before it was kept have none
        row["cer_by_seed"] = retrained["cer_by_seed"]
    return row


def both_recipes(side: dict, report: dict, short: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """The rows retrained under both recipes (the study's first, then the longer one's), and the
    budgets they span."""
    longer = {r["name"]: r for r in side["rows"] if r["retrain_seeds"]}
    template = next(r for r in report["rows"] if r["kind"] == "searched")
    old = [r for r in report["rows"] if r["name"] in longer] + [
        r for r in short_rows(short, report["budgets"], template) if r["name"] in longer
    ]
    new = [with_cer(r, longer[r["name"]]) for r in old]
    spanned = {r["budget"] for r in old if r["kind"] != "baseline"}
    budgets = [b for b in report["budgets"] if b["budget"] in spanned]
    keep = [r for r in old if r["budget"] in spanned], [r for r in new if r["budget"] in spanned]
    return *keep, budgets


def distinct(rows: list[dict]) -> dict[str, dict]:
    """One entry per network name: its dev CER and the budgets it sits in (by name, as both
    recipes' rows name their networks; no ArchSpec needed)."""
    out: dict[str, dict] = {}
    for row in rows:
        entry = out.setdefault(row["name"], {"cer": row["cer"]["dev"], "budgets": []})
        entry["budgets"].append(row["budget"])
    return out


def read_scores(spec: str) -> tuple[str, dict[str, float]]:
    """``LABEL=average_ranking.json:RUN``: the scores by network name of one of its trained
    supernets (``runs[RUN]["trained"]["scores"]``)."""
    label, _, rest = spec.partition("=")
    path, _, run = rest.rpartition(":")
    return label, json.loads(Path(path).read_text())["runs"][run]["trained"]["scores"]


def taus(label: str, scores: dict[str, float], networks: dict[str, dict]) -> dict:
    """One supernet's tau against ``networks``' dev CER, over all and within each budget
    (``rank.ranking_quality``), and the networks it scored."""
    cer = {n: e["cer"] for n, e in networks.items()}
    budgets = {n: e["budgets"] for n, e in networks.items()}
    (entry,), _, _ = ranking_quality(
        {label: {n: {"loss": s} for n, s in scores.items()}}, cer, "loss", budgets
    )
    return {
        "networks": entry["archs"],
        "names": sorted(set(scores) & set(cer)),
        "kendall_tau": entry["kendall_tau"],
        "kendall_tau_within_budget": entry["kendall_tau_within_budget"],
    }


def table(old: list[dict], new: list[dict], budgets: list[dict], epochs: tuple[int, int]) -> list[str]:
    lines = []
    for budget in budgets:
        lines += [
            f"\n### {budget['budget']} ({budget['ms']:.3f} ms)\n",
            f"| network | kind | dev, {epochs[0]} epochs | test, {epochs[0]} | dev, {epochs[1]} epochs | test, {epochs[1]} |",
            "|---|---|---|---|---|---|",
        ]
        pairs = [(o, n) for o, n in zip(old, new) if o["budget"] == budget["budget"]]
        for o, n in sorted(pairs, key=lambda p: p[1]["cer"]["dev"]):
            cells = [cer_cell(r, s) for r in (o, n) for s in ("dev", "test")]
            lines.append(f"| {o['name']} | {o['kind']} | " + " | ".join(cells) + " |")
    return lines


def plot(side: dict, epochs: int, out: Path) -> Path | None:
    """Dev CER by epoch, each network's mean over its seeds. Curves end at the last epoch: a run
    resumed before the CSV logger kept earlier rows (fixed in ``supernet.loggers``) logged only
    the epochs after its resume, so its curve starts later."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = {"short": "tab:red", "uniform": "tab:orange", "random": "tab:gray", "budget": "tab:blue"}
    for row in side["rows"]:
        curves = [
            c[:-1] for c in row.get("dev_cer_by_epoch", []) if len(c) > 1
        ]  # the last: the final test pass
        if not curves:
            continue
        length = min(map(len, curves))
        mean = [100 * sum(c[len(c) - length + i] for c in curves) / len(curves) for i in range(length)]
        colour = next((c for k, c in colours.items() if row["name"].startswith(k)), "black")
        ax.plot(range(epochs - length, epochs), mean, color=colour, alpha=0.7, lw=1)
    for key, colour in colours.items():
        ax.plot([], [], color=colour, label={"short": "20-epoch picks", "uniform": "study picks",
                                             "random": "random paths", "budget": "baselines"}[key])  # fmt: skip
    ax.set(xlabel="epoch", ylabel="dev CER % (mean over seeds)", ylim=(15, 60))
    ax.set_title("Dev CER after each epoch of the longer retrain")
    ax.legend()
    path = out / "dev_cer_by_epoch.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=Path, required=True, help="retrain_length.sh's retrain_side.json")
    parser.add_argument("--report", type=Path, required=True, help="the study's study.json")
    parser.add_argument("--short", type=Path, required=True, help="the 20-epoch route's folder")
    parser.add_argument("--cost", type=Path, help="retrain_length.sh's route_cost.json")
    parser.add_argument("--scores", nargs="*", default=[], metavar="LABEL=FILE:RUN")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    side, report = json.loads(args.side.read_text()), json.loads(args.report.read_text())
    old, new, budgets = both_recipes(side, report, args.short)
    epochs = (
        report["config"]["retrain"]["options"]["trainer.max_epochs"],
        side["retrain"]["options"]["trainer.max_epochs"],
    )
    result = {
        "epochs": epochs,
        "budgets": budgets,
        "recipes": {},
        "tau_between_recipes": None,
        "supernets": {},
    }
    lines = [
        f"# Retrained for {epochs[1]} epochs against the study's {epochs[0]}",
        *table(old, new, budgets, epochs),
    ]
    for label, rows in zip(epochs, (old, new)):
        verdicts = verdict.judge({"rows": rows, "budgets": budgets})
        result["recipes"][label] = {"rows": rows, "verdicts": verdicts}
        lines += [f"\n## Verdicts, {label}-epoch retrain\n", *verdict.markdown(verdicts)]
    networks = [distinct(rows) for rows in (old, new)]
    names = sorted(networks[0])
    result["tau_between_recipes"] = kendall_tau(
        [networks[0][n]["cer"] for n in names], [networks[1][n]["cer"] for n in names]
    )
    lines.append(f"\nKendall tau between the two recipes' dev CER, {len(names)} networks: "
                 f"{result['tau_between_recipes']:.3f}")  # fmt: skip
    # runs logged from their first epoch (a run resumed before the CSV fix lost its early rows)
    whole = [
        dict(enumerate(c)) for r in side["rows"] for c in r.get("dev_cer_by_epoch", []) if len(c) > epochs[1]
    ]
    result["late_drop"] = {"runs": len(whole), "drop": late_drop([(c, epochs[1]) for c in whole])}
    if result["late_drop"]["drop"] is not None:
        lines.append(f"Over its last quarter the {epochs[1]}-epoch retrain's dev CER still fell by "
                     f"{100 * result['late_drop']['drop']:.2f} points ({len(whole)} runs logged whole)")  # fmt: skip
    for spec in args.scores:
        label, scores = read_scores(spec)
        result["supernets"][label] = {e: taus(label, scores, nets) for e, nets in zip(epochs, networks)}
        for e, tau in result["supernets"][label].items():
            within = tau["kendall_tau_within_budget"]
            lines.append(f"- supernet {label}: tau {tau['kendall_tau']:.3f} over {tau['networks']} networks "
                         f"against the {e}-epoch dev CER; within one budget {within:.3f}")  # fmt: skip
    scored = set().union(*(s[e]["names"] for s in result["supernets"].values() for e in epochs)) or set(names)
    params = {r["name"]: r["params"] for r in new if r["name"] in scored}
    result["parameter_count"] = {}
    for e, nets in zip(epochs, networks):
        cer = {n: nets[n]["cer"] for n in params}
        reference = parameter_count_ranking(params, cer, {n: nets[n]["budgets"] for n in params})
        result["parameter_count"][e] = reference
        lines.append(f"- the parameter count alone: tau {reference['kendall_tau']:.3f} over {reference['archs']} "
                     f"networks against the {e}-epoch dev CER; within one budget "
                     f"{reference['kendall_tau_within_budget']:.3f}")  # fmt: skip
    if args.cost:
        cost = json.loads(args.cost.read_text())
        result["cost"] = cost
        lines.append(
            f"\nRoute cost with the GPU to itself: supernet {cost['supernet_seconds']:.1f} s + select "
            f"{cost['select_seconds']:.1f} s against one {cost['epochs']}-epoch retrain "
            f"{cost['retrain_seconds']:.1f} s = **{cost['ratio']:.2f}x** (target <= {verdict.SEARCH_VS_RETRAIN:g}x)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    if (figure := plot(side, epochs[1], args.out)) is not None:
        lines.append(f"\n![dev CER by epoch]({figure.name})")
    atomic_write_json(args.out / "retrain_length.json", result)
    for label, rows in zip(epochs, (old, new)):  # study-shaped, for scripts/ranking_breakdown.py --report
        atomic_write_json(args.out / f"report_{label}_epochs.json", {"budgets": budgets, "rows": rows})
    (args.out / "retrain_length.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
