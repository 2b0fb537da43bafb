"""A study's results: one row an architecture (means and spreads over the retrain seeds),
``study.json``, ``study.md`` and its plots.

Dev chooses, test reports: a searched pick's rank among the random architectures, the best row of
a budget and the supernet's ranking quality all use dev CER; test sets are only reported.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

from supernet.loggers import can_plot, pyplot
from supernet.outputs import atomic_write_json, atomic_write_text, replaced_when_done
from supernet.study import costs, rank, verdict
from supernet.study.plan import Arch

KINDS = {
    "searched": ("*", "tab:red", 12),
    "random": ("o", "tab:gray", 6),
    "baseline": ("s", "tab:blue", 7),
    "control": ("D", "tab:green", 7),
}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _rate(metrics: dict, split: str, metric: str) -> float:
    """``cer`` or ``wer`` of one split (``dev``, or a test set) from a retrain's ``metrics.json``."""
    return metrics[f"dev_{metric}"] if split == "dev" else metrics[metric][split]


def cer_by_set(metrics: list[dict], sets: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """CER mean and std over retrain runs' ``metrics.json``, per set (``dev``, or a test set)."""
    cer = {s: _mean_std([_rate(m, s, "cer") for m in metrics]) for s in sets}
    return {s: cer[s][0] for s in sets}, {s: cer[s][1] for s in sets}


def cer_by_seed(metrics: list[dict], sets: list[str]) -> dict[str, list[float]]:
    """Each retrain run's CER per set, in the runs' order: what a permutation test of two networks
    needs (``verdict``), where a mean and std are not enough."""
    return {s: [_rate(m, s, "cer") for m in metrics] for s in sets}


def dev_cer_by_epoch(run: Path) -> dict[int, float]:
    """A run's dev CER after each epoch, from its CSV log (empty without one); the entry after the
    last epoch is the final evaluation pass. One value an epoch, the last logged: a resumed run's
    log also holds its earlier part's final pass, under the epoch it went on with."""
    log = run / "csv" / "metrics.csv"
    if not log.is_file():
        return {}
    with open(log, newline="") as handle:
        return {int(r["epoch"]): float(r["dev/cer"]) for r in csv.DictReader(handle) if r.get("dev/cer")}


def in_epoch_order(by_epoch: dict[int, float]) -> list[float]:
    """``dev_cer_by_epoch``'s values, epoch after epoch, then the final pass: a row's
    ``dev_cer_by_epoch`` entry (``rank.complete_curves`` reads them)."""
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def late_drop(runs: list[tuple[dict[int, float], int | None]]) -> float | None:
    """How far dev CER still fell over the last quarter (at least one epoch) of each run's own
    ``epochs`` (``metrics.json``'s: fewer when early stopping ended it), the mean over the runs
    that logged both ends; None when none did. A retrain whose CER still falls at its end may rank
    networks otherwise when trained longer (docs/results.md, session 12)."""
    drops = []
    for curve, epochs in runs:
        if epochs:
            first, last = epochs - 1 - max(1, epochs // 4), epochs - 1
            if {first, last} <= set(curve):
                drops.append(curve[first] - curve[last])
    return statistics.fmean(drops) if drops else None


def make_row(
    arch: Arch, metrics: list[dict], test_sets: list[str], predicted: float, measured: float,
    late: float | None = None,
) -> dict:  # fmt: skip
    """One architecture's row: error rates as mean and std over its retrain runs' ``metrics.json``;
    ``late``: ``late_drop`` of their dev CER."""
    sets = ["dev", *test_sets]
    cer, cer_std = cer_by_set(metrics, sets)
    return {
        "name": arch.name,
        "kind": arch.kind,
        "method": arch.method,
        "search_seed": arch.search_seed,
        "budget": arch.budget,
        "budget_ms": arch.budget_ms,
        "params": metrics[0]["params"],
        "latency_ms": measured,
        "predicted_ms": predicted,
        "cer": cer,
        "cer_std": cer_std,
        "cer_by_seed": cer_by_seed(metrics, sets),
        "wer": {s: statistics.fmean(_rate(m, s, "wer") for m in metrics) for s in sets},
        "retrain_seeds": len(metrics),
        "dev_cer_late_drop": late,
        "supernet_cer": None,
        "supernet_loss": None,
        "supernet_init_cosine": None,
        "rank_among_random": None,
        "arch": arch.spec.to_dict(),
    }


def rank_among_random(rows: list[dict]) -> None:
    """Each searched pick's and baseline's place by dev CER among the random rows of its budget
    (1: better than every random one; ties count in its favour)."""
    for row in rows:
        if row["kind"] == "random" or row["budget"] is None:
            continue
        others = [r["cer"]["dev"] for r in rows if r["kind"] == "random" and r["budget"] == row["budget"]]
        if others:
            row["rank_among_random"] = {
                "rank": 1 + sum(c < row["cer"]["dev"] for c in others),
                "of": len(others) + 1,
            }


def write_json(out: Path, summary: dict[str, Any]) -> Path:
    return atomic_write_json(out / "study.json", summary)


def cer_cell(row: dict, split: str) -> str:
    """A row's CER on ``split`` as a table cell: mean ± std over its retrain seeds, in percent."""
    return f"{100 * row['cer'][split]:.1f} ± {100 * row['cer_std'][split]:.1f}"


def _table(rows: list[dict], sets: list[str]) -> list[str]:
    head = ["name", "kind", "params", "predicted ms", "measured ms", *(f"{s} CER %" for s in sets)]
    head += ["supernet dev CER %", "supernet dev loss", "rank among random"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: r["cer"]["dev"]):
        place = r["rank_among_random"]
        cells = [
            f"`{r['name']}`", r["kind"], f"{r['params']:,}", f"{r['predicted_ms']:.3f}",
            "-" if r["latency_ms"] is None else f"{r['latency_ms']:.3f}",
            *(cer_cell(r, s) for s in sets),
            "-" if r["supernet_cer"] is None else f"{100 * r['supernet_cer']:.1f}",
            "-" if r.get("supernet_loss") is None else f"{r['supernet_loss']:.3f}",
            "-" if place is None else f"{place['rank']} of {place['of']}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _late_drop_line(rows: list[dict]) -> list[str]:
    """How far the retrains' dev CER still fell at their end (each network once): is the retrain
    long enough?"""
    drops = {}
    for r in rows:  # a baseline sits in several budgets: one network, one value
        if r.get("dev_cer_late_drop") is not None:
            drops.setdefault(tuple(r.get("runs") or [r["name"]]), (r["name"], r["dev_cer_late_drop"]))
    title = ["", "## Is the retrain long enough?", ""]
    if not drops and not rows:
        return []
    if not drops:  # said, not left out: a reader should not take a missing section for a yes
        return title + [
            "Not measured: no retrain logged its dev CER per epoch over at least two epochs (the "
            "study's CSV log; a retrain option that sets another `--logger` leaves none)."
        ]
    mean = statistics.fmean(d for _, d in drops.values())
    name, most = max(drops.values(), key=lambda d: d[1])
    moved = f"still fell by {100 * mean:.2f} points" if mean >= 0 else f"rose by {-100 * mean:.2f} points"
    return title + [
        f"Over the last quarter of their epochs the retrains' dev CER {moved} on average over "
        f"{len(drops)} networks (the most it fell: {100 * most:.2f}, `{name}`). Where it still falls, a "
        "longer retrain may order the networks otherwise: on h200_three, 12 epochs against 24 changed "
        "the verdict at one budget (docs/study.md).",
    ]


def _shown_epochs(epochs: int) -> list[int]:
    """Every epoch of a short retrain; of a long one, the first four, the powers of two and the
    quarters."""
    if epochs <= 12:
        return list(range(1, epochs + 1))
    quarters = {epochs * q // 4 for q in (1, 2, 3, 4)}
    marks = {1, 2, 3, 4, *(2**k for k in range(epochs.bit_length())), *quarters}
    return sorted(e for e in marks if 1 <= e <= epochs)


def rank_by_epoch_measured(result: dict | None) -> bool:
    """Whether ``rank.rank_by_epoch`` had enough to say: 3 networks with 2 complete seeds, 2 epochs."""
    return bool(result) and result["networks_other_seed"] >= 3 and result["epochs"] >= 2


def rank_by_epoch_lines(
    result: dict | None, supernet: tuple[float | None, int] | None = None, every: bool = False
) -> list[str]:
    """``rank.rank_by_epoch`` as Markdown: how well training alone ranks the networks after each
    epoch, and from which epoch it keeps the supernet's tau (``supernet``: that tau and over how
    many networks)."""
    title = ["", "## How early does training alone rank the networks?", ""]
    if not rank_by_epoch_measured(result):
        return title + [
            "Not measured: it needs 3 networks whose 2 or more retrain seeds logged their dev CER "
            "after each of 2 or more epochs."
        ]
    shown = lambda v: "undefined" if v is None else f"{v:.2f}"  # noqa: E731
    by_epoch = {r["epoch"]: r for r in result["by_epoch"]}
    epochs = list(by_epoch) if every else _shown_epochs(result["epochs"])
    at = result["first_epoch_at_0.5"]
    reaches = f"0.5 or more from epoch {at} of {result['epochs']}." if at else "0.5 at no epoch to the end."
    lines = title + [
        "Kendall tau against the final pass's dev CER (the best checkpoint's, which the tables rank by). "
        "*Another seed*: one retrain seed's dev CER after epoch e against the mean of the network's other "
        f"seeds, over the {result['networks_other_seed']} networks with {result['seeds']} seeds that logged "
        "every epoch: what a cheap score trained apart from the retrain can reach (a supernet, a short "
        f"fine-tune). *Same runs*: the seeds' mean after epoch e against their own end, over "
        f"{result['networks']} networks (it flatters a short training).",
        "",
        "| after epoch | " + " | ".join(map(str, epochs)) + " |",
        "|---|" + "---|" * len(epochs),
        "| another seed | " + " | ".join(shown(by_epoch[e]["tau_other_seed"]) for e in epochs) + " |",
        "| same runs | " + " | ".join(shown(by_epoch[e]["tau"]) for e in epochs) + " |",
        "",
        f"One seed's final pass ranks the others' at {shown(result['seed_ceiling'])} (the ceiling); training "
        f"alone ranks at {reaches}",
    ]
    if supernet is not None and supernet[0] is not None:
        tau, networks = supernet
        worth = rank.first_epoch_at(result["by_epoch"], tau)
        lines.append(
            f"The supernet ranks the {networks} networks it scored at {shown(tau)} (against all seeds' mean): "
            + (
                f"training alone stays at or above that from epoch {worth} on."
                if worth
                else "training alone does not stay at or above that to the end."
            )
            + " The two sets of networks can differ."
        )
    return lines


def markdown(summary: dict[str, Any], plots: list[Path]) -> str:
    rows, config, device = summary["rows"], summary["config"], summary["device"]
    sets = list(rows[0]["cer"]) if rows else ["dev"]
    dim = f" at dim {config['dim']}" if config["dim"] else ""
    measured = (
        "latency not measured (the study stopped before measuring it, or ran on a machine that does not match "
        "its table: the table's prediction only)"
        if device is None
        else f"latency measured on {device['device_name']} ({device['device']}, {device['dtype']}, "
        f"{device['threads']} thread(s), batch {device['batch']} x {device['seconds']} s)"
    )
    partial = (
        [f"**Partial**: the study stopped before these networks finished every retrain seed: "
         f"{', '.join(f'`{name}`' for name in summary['missing'])}.", ""]
        if summary.get("partial") else []
    )  # fmt: skip
    lines = [
        f"# Study `{config['name']}`" + (" (partial)" if summary.get("partial") else ""),
        "",
        *partial,
        f"Space `{config['space']}`{dim}, corpus `{summary['corpus']}`; {measured}. CER is the mean ± std over "
        f"{len(config['retrain']['seeds'])} retrain seed(s). Dev chooses, test reports: ranks and the best "
        "row use dev CER only.",
        "",
        *(f"- note: {note}" for note in summary["notes"]),
    ]
    for budget in summary["budgets"]:
        group = [r for r in rows if r["budget"] == budget["budget"]]
        lines += [
            "",
            f"## Budget {budget['budget']} ({budget['ms']:.3f} ms predicted)",
            "",
            *_table(group, sets),
        ]
        if group:
            best = min(group, key=lambda r: r["cer"]["dev"])
            lines += ["", f"Best on dev: `{best['name']}` ({best['kind']})."]
        for r in group:
            if r["kind"] == "searched" and r["rank_among_random"]:
                place = r["rank_among_random"]
                lines.append(
                    f"Searched `{r['name']}` ranks {place['rank']} of {place['of']} among the random architectures."
                )
    over = [r for r in rows if r["budget"] is None]
    if over:
        lines += ["", "## Baselines over every budget", "", *_table(over, sets)]
    lines += _late_drop_line(rows)
    scored = max((r["archs"] for r in summary["ranking"]), default=0)
    lines += (
        rank_by_epoch_lines(summary.get("rank_by_epoch"), (summary["kendall_tau"], scored)) if rows else []
    )
    lines += ["", "## Ranking quality of the supernet", ""]

    metric = config["ranking"]["metric"]
    for search in summary["ranking"]:
        taus = ", ".join(f"{_tau(t)} by supernet dev {m}" for m, t in search.get("by_metric", {}).items())
        lines.append(f"- `{search['search']}`: Kendall tau {taus} over {search['archs']} architectures")
        if search.get("within_budget"):
            each = ", ".join(
                f"{_tau(b['kendall_tau'])} at {label} ({b['archs']})"
                for label, b in search["within_budget"].items()
            )
            lines.append(f"  - within one budget, by dev {metric}: {each}")
    by_metric = summary.get("kendall_tau_by_metric", {})
    lines.append(
        f"\nKendall tau between the supernet's dev {metric} (inherited weights) and the stand-alone dev CER: "
        f"{_tau(summary['kendall_tau'])} (mean over searches"
        + "".join(f"; by dev {m}: {_tau(t)}" for m, t in by_metric.items() if m != metric)
        + ")."
    )
    if summary.get("kendall_tau_within_budget") is not None:
        lines.append(
            f"Within one budget (what a selection compares) it is {_tau(summary['kendall_tau_within_budget'])}, "
            "the mean over budgets and searches: a tau over several budgets is raised by how clearly "
            "dearer paths beat cheaper ones."
        )
    lines += _free_ranking_lines(summary.get("reference_ranking") or {})
    lines += _top_choice_lines(summary.get("top_choice") or {})
    if summary.get("verdicts"):
        lines += ["", *verdict.markdown(summary["verdicts"])]
    if summary.get("costs"):
        lines += ["", *costs.markdown(summary["costs"])]
    if plots:
        lines += ["", "## Plots", "", *(f"![{p.stem}]({p.parent.name}/{p.name})" for p in plots)]
    return "\n".join(lines) + "\n"


def _tau(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


FREE_RANKINGS = {  # reference_ranking's measures: what "more" means for each
    "params": "The parameter count alone (more parameters, lower CER)",
    "latency": "The predicted latency alone (more latency, lower CER)",
}


def _free_ranking_lines(references: dict) -> list[str]:
    """What the free measures rank at, beside the supernet's tau: a supernet that does not beat
    them adds nothing a free measure does not give."""
    lines = []
    for measure, what in FREE_RANKINGS.items():
        reference = references.get(measure)
        if reference and reference.get("archs"):
            within = reference.get("kendall_tau_within_budget")
            lines.append(
                f"{what} ranks the same networks at {_tau(reference['kendall_tau'])} over {reference['archs']}"
                + ("" if within is None else f", {_tau(within)} within one budget")
                + "."
            )
    if lines:
        lines[-1] += " A supernet that does not beat them adds nothing a free measure does not give."
    return lines


def _top_choice_lines(choices: dict) -> list[str]:
    """Where each ranking's first network of a budget's random paths and baselines placed when
    trained alone: what a select keeping one path would have got from that ranking."""

    def place(choice: dict) -> str:
        each = ", ".join(
            f"{b['place']} of {b['archs']} at {label} (+{100 * b['regret']:.1f} points)"
            for label, b in choice["within_budget"].items()
        )
        return each or "no network"

    rankings = [(f"the supernet `{search}`'s", c) for search, c in (choices.get("supernet") or {}).items()]
    rankings += [
        (f"the {what}'s", choices[key])
        for key, what in (("params", "parameter count"), ("latency", "predicted latency"))
        if key in choices
    ]
    if not rankings:
        return []
    lines = [
        "",
        "The network each ranking puts first among a budget's random paths and baselines that it "
        "ranks (the searched picks and controls left out), placed by its stand-alone dev CER among "
        "them (+ the dev CER points it gives up against their best):",
    ]
    return lines + [f"- {who}: {place(choice)}" for who, choice in rankings]


def write_markdown(out: Path, summary: dict[str, Any], stem: str = "study", plots: str = "plots") -> Path:
    """``out/STEM.md`` and its plots in ``out/PLOTS/`` (a partial report: ``partial``, ``plots_partial``)."""
    drawn = draw(out / plots, summary) if summary["rows"] and can_plot(f"the {stem} plots") else []
    return atomic_write_text(out / f"{stem}.md", markdown(summary, drawn))


# --- plots --------------------------------------------------------------------------------------
def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    with replaced_when_done(path) as partial:
        fig.savefig(partial, dpi=110, format="png")
    pyplot().close(fig)
    return path


def marked_points(ax, rows: list[dict], x, y, err=None) -> None:
    """Points ``(x(row), y(row))``, with error bars ``err(row)``, marked by kind."""
    for kind, (marker, color, size) in KINDS.items():
        part = [r for r in rows if r["kind"] == kind]
        if part:
            xs, ys = [x(r) for r in part], [y(r) for r in part]
            yerr = [err(r) for r in part] if err else None
            ax.errorbar(xs, ys, yerr=yerr, fmt=marker, color=color, ms=size, label=kind, zorder=3)


def draw(folder: Path, summary: dict[str, Any]) -> list[Path]:
    """CER against measured latency (dev and each test set), the random CER distribution of each
    budget with the searched picks marked, and the supernet's ranking against stand-alone CER."""
    plt, rows = pyplot(), summary["rows"]
    folder.mkdir(parents=True, exist_ok=True)
    sets = list(rows[0]["cer"])
    # a study stopped before it measured latency plots the table's prediction, and says so
    latency = "latency_ms" if all(r["latency_ms"] is not None for r in rows) else "predicted_ms"
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.8), squeeze=False)
    for ax, split in zip(axes[0], sets):
        cer, std = (lambda r, s=split: 100 * r["cer"][s]), (lambda r, s=split: 100 * r["cer_std"][s])
        marked_points(ax, rows, lambda r: r[latency], cer, std)
        for budget in summary["budgets"]:
            ax.axvline(budget["ms"], color="k", ls=":", lw=1)
        xlabel = "measured latency (ms)" if latency == "latency_ms" else "predicted latency (ms, the table's)"
        ax.set(xlabel=xlabel, ylabel=f"{split} CER (%)", title=split)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    paths = [save_figure(fig, folder / "cer_vs_latency.png")]

    budgets = summary["budgets"]
    fig, axes = plt.subplots(1, len(budgets), figsize=(4.5 * len(budgets), 3.2), squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        group = [r for r in rows if r["budget"] == budget["budget"]]
        ax.hist(
            [100 * r["cer"]["dev"] for r in group if r["kind"] == "random"],
            bins=10,
            color="tab:gray",
            label="random",
        )
        for r in group:
            if r["kind"] != "random":
                ax.axvline(
                    100 * r["cer"]["dev"],
                    color=KINDS[r["kind"]][1],
                    ls="-" if r["kind"] == "searched" else "--",
                    label=r["name"],
                )
        ax.set(xlabel="dev CER (%)", ylabel="architectures", title=f"budget {budget['budget']}")
        ax.legend(fontsize=7)
    paths.append(save_figure(fig, folder / "random_cer.png"))

    metric = summary["config"]["ranking"]["metric"]
    scored = [r for r in rows if r.get(f"supernet_{metric}") is not None]
    if scored:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        scale = 100 if metric == "cer" else 1
        marked_points(ax, scored, lambda r: scale * r[f"supernet_{metric}"], lambda r: 100 * r["cer"]["dev"])
        tau = summary["kendall_tau"]
        measure = {"cer": "dev CER (%, ", "loss": "dev CTC loss per token ("}.get(metric, f"{metric} (")
        label = f"supernet {measure}inherited weights)"
        ax.set(xlabel=label, ylabel="stand-alone dev CER (%)",
               title=f"Kendall tau {'undefined' if tau is None else f'{tau:.2f}'}")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, folder / "ranking.png"))
    if rank_by_epoch_measured(summary.get("rank_by_epoch")):
        paths.append(
            save_figure(
                rank_by_epoch_figure(plt, summary["rank_by_epoch"], summary["kendall_tau"]),
                folder / "rank_by_epoch.png",
            )
        )
    return paths


def rank_by_epoch_figure(plt, result: dict, supernet_tau: float | None = None):
    """Tau of training alone after each epoch (``rank.rank_by_epoch``), the seeds' ceiling and the
    supernet's tau as lines."""
    rows = [r for r in result["by_epoch"] if r["tau_other_seed"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    epochs = [r["epoch"] for r in rows]
    ax.plot(
        epochs,
        [r["tau_other_seed"] for r in rows],
        marker="o",
        label="one seed against the others' final pass",
    )
    ax.plot(
        epochs, [r["tau"] for r in rows], marker=".", alpha=0.6, label="the seeds' mean against their own end"
    )
    if result["seed_ceiling"] is not None:
        ax.axhline(result["seed_ceiling"], color="tab:gray", ls="--", label="ceiling: one seed's final pass")
    if supernet_tau is not None:
        ax.axhline(supernet_tau, color="tab:red", ls=":", label="the supernet's tau")
    ax.set(xlabel="epoch of training alone", ylabel="Kendall tau", ylim=(-0.3, 1.05))
    ax.set_title(f"How well training alone ranks {result['networks_other_seed']} networks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())
