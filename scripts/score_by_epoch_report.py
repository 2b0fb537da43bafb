"""Does the supernet rank better the longer it trains, and does a path's learning curve inside the
supernet say which networks train further alone? The report of ``scripts/device/score_by_epoch.py``.

For each kept supernet epoch: Kendall tau of the score (dev loss and dev CER) against the networks'
retrained dev CER. Then each path's curve extrapolated: ``score(last) + c * (score(last) -
score(e))``, which ranks a path that still improved late (a network that learns slowly and ends
better) above one that had flattened; c = 0 is the last score alone. No c is fitted: the table
shows every one, so a reader sees whether any helps, not a tuned figure.

    python scripts/score_by_epoch_report.py docs/study/h200_three/score_by_epoch/score_by_epoch.json \
        --rank-by-epoch docs/study/h200_three/rank_by_epoch/rank_by_epoch.json \
        --out docs/study/h200_three/score_by_epoch
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from supernet.loggers import can_plot, pyplot
from supernet.outputs import atomic_write_json
from supernet.study import rank, report

MEASURES = ("loss", "cer")
FACTORS = (0.5, 1.0, 2.0)


def extrapolated(
    first: dict[str, dict[str, float]], last: dict[str, dict[str, float]], factor: float
) -> dict:
    """Each path's scores (``{network: {measure: value}}``) carried on along its curve:
    ``last + factor * (last - first)``, measure by measure."""
    return {n: {m: v + factor * (v - first[n][m]) for m, v in scores.items()} for n, scores in last.items()}


def analyse(result: dict) -> dict:
    """Tau by supernet epoch and of every extrapolation from an earlier epoch to the last
    (``rank.ranking_quality``: each score against the retrained dev CER, per measure)."""
    cer = result["retrained_dev_cer"]
    epochs = {e["epoch"]: e["scores"] for e in result["by_epoch"]}
    last = max(epochs)
    runs = {("epoch", e): epochs[e] for e in sorted(epochs)}
    runs |= {
        ("carried", e, c): extrapolated(epochs[e], epochs[last], c)
        for e in sorted(epochs)
        if e != last
        for c in FACTORS
    }
    ranking, _, _ = rank.ranking_quality(runs, cer, "loss")
    taus = {r["search"]: r["by_metric"] for r in ranking}
    return {
        "networks": next(r["archs"] for r in ranking if r["search"] == ("epoch", last)),
        "last_epoch": last,
        "by_epoch": [
            {"epoch": k[1], **{m: taus[k].get(m) for m in MEASURES}} for k in runs if k[0] == "epoch"
        ],
        "extrapolated": [
            {"from_epoch": k[1], "factor": k[2], **{m: taus[k].get(m) for m in MEASURES}}
            for k in runs
            if k[0] == "carried"
        ],
    }


def lines(analysis: dict) -> list[str]:
    def f(value):
        return "-" if value is None else f"{value:.3f}"

    out = [
        f"# The supernet's ranking along its training ({analysis['networks']} retrained networks)", "",
        "Kendall tau of each checkpoint's score against the retrained dev CER (the target is 0.5):", "",
        "| supernet epoch | tau, dev loss | tau, dev CER |", "|---|---|---|",
        *(f"| {r['epoch']} | {f(r['loss'])} | {f(r['cer'])} |" for r in analysis["by_epoch"]),
        "", f"Each path's curve carried on from epoch e to {analysis['last_epoch']} by c times its late change:", "",
        "| from epoch | c | tau, dev loss | tau, dev CER |", "|---|---|---|---|",
        *(f"| {r['from_epoch']} | {r['factor']:g} | {f(r['loss'])} | {f(r['cer'])} |" for r in analysis["extrapolated"]),
    ]  # fmt: skip
    return out


def figure(plt, analysis: dict, alone: dict | None):
    """Tau by epoch of the supernet's score, beside a stand-alone retrain's own (rank_by_epoch)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    epochs = [r["epoch"] for r in analysis["by_epoch"]]
    for m, style in zip(MEASURES, ("o-", "s--")):
        ax.plot(
            epochs,
            [r[m] for r in analysis["by_epoch"]],
            style,
            label=f"supernet's score, dev {m} ({analysis['networks']} networks)",
        )
    if alone:
        points = [
            (r["epoch"], r["tau_other_seed"])
            for r in alone["by_epoch"]
            if r.get("tau_other_seed") is not None
        ]
        label = f"one stand-alone retrain's dev CER ({alone.get('networks_other_seed', '?')} networks)"
        ax.plot(*zip(*points), "^:", label=label)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="target 0.5")
    ax.set_xlabel("epochs trained (the supernet's, or one stand-alone retrain's)")
    ax.set_ylabel("Kendall tau vs retrained dev CER")
    ax.legend(fontsize=8)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", type=Path, help="score_by_epoch.py's score_by_epoch.json")
    parser.add_argument("--rank-by-epoch", type=Path, help="rank_by_epoch.py's JSON, drawn beside it")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    analysis = analyse(json.loads(args.result.read_text()))
    alone = json.loads(args.rank_by_epoch.read_text()) if args.rank_by_epoch else None
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "score_by_epoch_report.json", analysis)
    text = "\n".join(lines(analysis)) + "\n"
    (args.out / "score_by_epoch.md").write_text(text)
    if can_plot("score_by_epoch.png"):
        report.save_figure(figure(pyplot(), analysis, alone), args.out / "score_by_epoch.png")
    print(text)


if __name__ == "__main__":
    main()
