"""Issue 17's "beat random after retraining": each strategy's picks, one per search seed, retrained
with a study's recipe, against random selection's picks.

A strategy's figure is the mean over its search seeds of each pick's CER (itself the mean over the
retrain seeds), so a lucky seed counts once, as in ``select_strategies.py``'s ``beat_random``:
how many of a strategy's seeds end below random's mean, and an exact permutation p-value over the
search seeds (one-sided: the strategy's picks are better). Picks are matched to rows by name:
``pick-STRATEGY-sSEED`` (``pick-STRATEGY`` is seed 0, as ``strategies_gpu.sh`` first named them).
The decision split is dev; test is reported beside it, never chosen on.

    python3 scripts/strategies_retrained.py strategies.json retrain_archs.json [more.json] --out DIR

More search seeds from a second benchmark of the same budget (``SEEDS="3 4 5"``) join with
``--also other/strategies.json``; a (strategy, seed) found twice is refused, not averaged.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from supernet.study.permutation import permutation_p


def pick_name(strategy: str, seed: int) -> str:
    return f"pick-{strategy}-s{seed}"


def _cer_of(rows: dict[str, dict], strategy: str, seed: int) -> dict | None:
    row = rows.get(pick_name(strategy, seed)) or (rows.get(f"pick-{strategy}") if seed == 0 else None)
    return row["cer"] if row and row.get("retrain_seeds") else None


def compare(strategies: dict, rows: list[dict], split: str = "dev") -> dict[str, dict]:
    """Per strategy: supernet score and retrained CER of each seed's pick, their means, and how
    many seeds beat random's mean on ``split``."""
    by_name = {row["name"]: row for row in rows}
    table: dict[str, dict] = {}
    for pick in strategies["picks"]:
        cer = _cer_of(by_name, pick["strategy"], pick["seed"])
        if cer is None:
            continue
        entry = table.setdefault(pick["strategy"], {"seeds": [], "score": [], "cer": [], "benchmark": []})
        entry["seeds"].append(pick["seed"])
        entry["benchmark"].append(pick.get("benchmark", 0))
        entry["score"].append(pick["score"])
        entry["cer"].append(cer)
    for entry in table.values():
        entry["mean"] = {s: statistics.mean(c[s] for c in entry["cer"]) for s in entry["cer"][0]}
        entry["std"] = {s: statistics.pstdev(c[s] for c in entry["cer"]) for s in entry["cer"][0]}
        entry["mean_score"] = statistics.mean(entry["score"])
    if "random" in table:
        random_mean = table["random"]["mean"][split]
        for name, entry in table.items():
            if name != "random":
                entry["beat_random"] = sum(c[split] < random_mean for c in entry["cer"])
                entry["vs_random"] = entry["mean"][split] - random_mean
                entry["p_vs_random"] = permutation_p(
                    [c[split] for c in entry["cer"]], [c[split] for c in table["random"]["cer"]]
                )
    return table


def merge_benchmarks(benchmarks: list[dict], names: list[str]) -> dict:
    """One strategies.json of several benchmarks' picks at one budget, so their search seeds pool."""
    merged = dict(benchmarks[0], picks=[])
    seen: dict[tuple[str, int], str] = {}
    for index, (benchmark, name) in enumerate(zip(benchmarks, names)):
        if benchmark.get("budget") != merged.get("budget"):
            raise ValueError(
                f"{name}: budget {benchmark.get('budget')}, not {merged.get('budget')} as {names[0]}"
            )
        for pick in benchmark["picks"]:
            key = (pick["strategy"], pick["seed"])
            if key in seen:
                raise ValueError(f"{name}: {key[0]} seed {key[1]} is already in {seen[key]}")
            seen[key] = name
            merged["picks"].append(dict(pick, benchmark=index))  # its supernet may differ: the plot tells
    return merged


def render(table: dict[str, dict], split: str, budget: float | None) -> str:
    lines = [
        f"budget {budget} ms: retrained CER (%), mean over search seeds of each pick's mean over retrain seeds",
        f"{'strategy':12s} {'seeds':>5s} {'score':>7s} {split:>12s} {'test':>12s} {'vs random':>10s} {'beat_random':>11s} {'p':>5s}",
    ]
    for name, entry in table.items():
        m, s = entry["mean"], entry["std"]
        test = f"{100 * m['test']:.1f}±{100 * s['test']:.1f}" if "test" in m else "-"
        versus = f"{100 * entry['vs_random']:+.2f}" if "vs_random" in entry else "-"
        beat = f"{entry['beat_random']}/{len(entry['seeds'])}" if "beat_random" in entry else "-"
        p = f"{entry['p_vs_random']:.2f}" if "p_vs_random" in entry else "-"
        lines.append(
            f"{name:12s} {len(entry['seeds']):5d} {entry['mean_score']:7.4f} "
            f"{100 * m[split]:7.1f}±{100 * s[split]:.1f} {test:>12s} {versus:>10s} {beat:>11s} {p:>5s}"
        )
    return "\n".join(lines)


def plot(out: Path, table: dict[str, dict], split: str, budget: float | None) -> None:
    """Each seed's retrained CER per strategy, the mean as a bar: the spread is the point. Seeds of
    each benchmark (``--also``) have a colour of their own: another call may have trained another
    supernet."""
    from supernet.loggers import can_plot, pyplot

    if not can_plot("strategies_retrained.png"):
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:purple")
    for i, entry in enumerate(table.values()):
        for benchmark in sorted(set(entry["benchmark"])):
            values = [100 * c[split] for c, b in zip(entry["cer"], entry["benchmark"]) if b == benchmark]
            seeds = [str(seed) for seed, b in zip(entry["seeds"], entry["benchmark"]) if b == benchmark]
            label = f"seeds {' '.join(seeds)}" if i == 0 and len(set(entry["benchmark"])) > 1 else None
            ax.scatter(
                [i] * len(values), values, color=colours[benchmark % len(colours)], zorder=3, label=label
            )
        ax.hlines(100 * entry["mean"][split], i - 0.3, i + 0.3, color="tab:red")
    ax.set_xticks(range(len(table)), list(table))
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8)
    ax.set_ylabel(f"retrained {split} CER (%)")
    ax.set_title(f"budget {budget:.3g} ms: each search seed's pick (dots), their mean (bar)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "strategies_retrained.png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("strategies", type=Path, help="select_strategies.py's strategies.json")
    parser.add_argument("retrains", type=Path, nargs="+", help="retrain_archs.py's retrain_archs.json files")
    parser.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        help="another strategies.json of the same budget (more seeds)",
    )
    parser.add_argument("--split", default="dev", help="the split that decides (never a test set)")
    parser.add_argument("--out", type=Path, help="writes strategies_retrained.json and .png here")
    args = parser.parse_args(argv)
    if args.split.startswith("test"):
        parser.error(f"--split {args.split}: a test set reports, it does not decide (use dev or arch)")
    files = [args.strategies, *args.also]
    try:
        strategies = merge_benchmarks(
            [json.loads(path.read_text()) for path in files], [str(p) for p in files]
        )
    except ValueError as error:
        parser.error(str(error))
    rows = [row for path in args.retrains for row in json.loads(path.read_text())["rows"]]
    table = compare(strategies, rows, args.split)
    if not table:
        parser.error(f"no pick of {args.strategies} has a retrained row in {[str(p) for p in args.retrains]}")
    print(render(table, args.split, strategies.get("budget")))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        result = {"budget": strategies.get("budget"), "split": args.split, "strategies": table}
        (args.out / "strategies_retrained.json").write_text(json.dumps(result, indent=1))
        plot(args.out, table, args.split, strategies.get("budget"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
