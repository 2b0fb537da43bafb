"""How long must a network train before its rank shows? Kendall tau between each network's dev CER
after epoch e of its stand-alone retrain and its final dev CER, for every e.

Any cheap score of a path (the supernet's inherited loss, a fine-tune of a few steps, the first
rung of successive halving) is a short training in disguise; this measures how well short
training can rank at all on the corpus and recipe at hand. Beside it, the noise ceiling: the tau
between two retrain seeds' final dev CER of the same networks (no score can rank the mean better
than one seed ranks another).

Reads ``retrain_archs.py`` JSONs (rows with ``dev_cer_by_epoch``: each seed's dev CER after every
epoch, then the final pass). A seed's curve counts only when it holds every epoch: a run resumed
before the CSV logger kept its earlier rows logged only the epochs after its resume. A network
named in several files is taken from the first.

    python scripts/rank_by_epoch.py docs/study/h200_three/retrain_length/retrain_side.json \
        docs/study/h200_three/finalists/retrain_archs.json --out docs/study/h200_three/rank_by_epoch
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from tau_from_select import bootstrap

from supernet.outputs import atomic_write_json
from supernet.study.rank import defined_mean, kendall_tau


def complete_curves(rows: list[dict]) -> dict[str, list[list[float]]]:
    """Each network's per-epoch dev CER curves (the final pass dropped) of the seeds that logged
    every epoch; the number of epochs is the longest curve's, and a network with none is left out."""
    epochs = max((len(c) - 1 for r in rows for c in r.get("dev_cer_by_epoch", [])), default=0)
    out: dict[str, list[list[float]]] = {}
    for row in rows:
        curves = [c[:-1] for c in row.get("dev_cer_by_epoch", []) if len(c) - 1 == epochs]
        if curves and row["name"] not in out:
            out[row["name"]] = curves
    return out


def taus_by_epoch(curves: dict[str, list[list[float]]]) -> list[dict]:
    """Per epoch e, two taus against final dev CER:
    - ``tau`` (with a bootstrap 90% interval): the seeds' mean dev CER after e against their mean
      after the last epoch: the same runs, so it flatters a short training;
    - ``tau_other_seed``: one seed's dev CER after e against another seed's final dev CER, mean over
      ordered pairs: what a short training run apart from the retrain (a proxy) could reach; its
      last epoch is the noise ceiling."""
    mean = {name: [sum(v) / len(v) for v in zip(*cs)] for name, cs in curves.items()}
    final = [m[-1] for m in mean.values()]
    seeds = min(map(len, curves.values()), default=0)
    out = []
    for epoch in range(len(next(iter(mean.values()), []))):
        now = [m[epoch] for m in mean.values()]
        low, high = bootstrap(now, final)
        across = [
            kendall_tau([cs[i][epoch] for cs in curves.values()], [cs[j][-1] for cs in curves.values()])
            for i, j in itertools.permutations(range(seeds), 2)
        ]
        out.append({
            "epoch": epoch + 1, "tau": kendall_tau(now, final), "low": low, "high": high,
            "tau_other_seed": defined_mean(across),
        })  # fmt: skip
    return out


def first_epoch(taus: list[dict], level: float | None, key: str) -> int | None:
    """The first epoch from which ``key``'s tau stays at or above ``level``."""
    if level is None:
        return None
    for i, row in enumerate(taus):
        if all(r[key] is not None and r[key] >= level for r in taus[i:]):
            return row["epoch"]
    return None


def report(files: list[Path]) -> dict:
    return {
        "files": [str(f) for f in files],
        **report_rows([r for f in files for r in json.loads(f.read_text())["rows"]]),
    }


def report_rows(rows: list[dict]) -> dict:
    curves = complete_curves(rows)
    taus = taus_by_epoch(curves)
    ceiling = taus[-1]["tau_other_seed"] if taus else None
    return {
        "networks": len(curves),
        "left_out": sorted({r["name"] for r in rows} - set(curves)),
        "epochs": len(taus),
        "seed_ceiling": ceiling,
        "first_epoch_at_0.5": first_epoch(taus, 0.5, "tau_other_seed"),
        "first_epoch_at_0.9_ceiling": first_epoch(
            taus, None if ceiling is None else 0.9 * ceiling, "tau_other_seed"
        ),
        "by_epoch": taus,
    }


def markdown(result: dict) -> list[str]:
    shown = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        "# How long must a network train before its rank shows?",
        "",
        f"{result['networks']} networks with every epoch logged ({len(result['left_out'])} left out:"
        " resumed runs that lost their first epochs). Kendall tau against final dev CER (after epoch"
        f" {result['epochs']}):",
        "- *another seed*: one retrain seed's dev CER after epoch e against another seed's final one,"
        " mean over pairs: what a short training apart from the retrain can reach;",
        "- *same runs*: the seeds' mean after epoch e against their mean at the end (flatters a short"
        " training: the runs are the same).",
        "",
        f"Noise ceiling (one seed's final dev CER against another's): {shown(result['seed_ceiling'])}."
        f" Against another seed, tau stays >= 0.5 from epoch {result['first_epoch_at_0.5']} and"
        f" >= 90% of the ceiling from epoch {result['first_epoch_at_0.9_ceiling']}.",
        "",
        "| epoch | another seed | same runs | 90% interval (same runs) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['epoch']} | {shown(r['tau_other_seed'])} | {shown(r['tau'])} | {shown(r['low'])} .. {shown(r['high'])} |"
        for r in result["by_epoch"]
    ]
    return lines


def plot(result: dict, out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in result["by_epoch"] if r["tau"] is not None and r["tau_other_seed"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["tau_other_seed"] for r in rows], marker="o", label="against another seed's final")
    ax.plot(epochs, [r["tau"] for r in rows], marker=".", alpha=0.6, label="same runs' final")
    ax.fill_between(epochs, [r["low"] for r in rows], [r["high"] for r in rows], alpha=0.15)
    if result["seed_ceiling"] is not None:
        ax.axhline(result["seed_ceiling"], color="tab:gray", ls="--", label="one seed against another")
    ax.axhline(0.5, color="tab:red", ls=":", label="issue 16's target, 0.5")
    ax.set(xlabel="epoch of the stand-alone retrain", ylabel="Kendall tau", ylim=(-0.3, 1.05))
    ax.set_title(f"How well a short training ranks {result['networks']} networks")
    ax.legend(loc="lower right")
    path = out / "rank_by_epoch.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", type=Path, nargs="+", help="retrain_archs.py JSONs")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = report(args.files)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "rank_by_epoch.json", result)
    text = "\n".join(markdown(result)) + "\n"
    (args.out / "rank_by_epoch.md").write_text(text)
    plot(result, args.out)
    print(text)


if __name__ == "__main__":
    main()
