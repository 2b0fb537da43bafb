"""Retrained searched picks of one budget grouped by what they hold (``ranking_breakdown.COUNTS``):
do the picks that hold some kind of block retrain worse? Why: the picks of one route differ from
supernet to supernet, and which ones miss a target says what the supernet or its select got
wrong (session 28: the picks holding the narrow e96 block; session 29: those with fewer than
three full-width attention blocks). Each group's mean dev CER against the rest's, with exact
one-sided permutation p-values over the picks (each pick's CER the mean of its retrain seeds).
Found after the results, such a split is a hypothesis for the next search, not a verdict.

    python scripts/picks_breakdown.py docs/study/h200_route/fullrate_*/seed*/retrain_archs.json \
        --budget budget_conformer_s
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ranking_breakdown import COUNTS  # scripts/, beside this file

from supernet.archspec import ArchSpec
from supernet.loggers import can_plot, pyplot
from supernet.study.permutation import permutation_p
from supernet.study.rank import parameter_count_ranking


def budget_picks(files: list[Path], budget: str) -> list[dict]:
    """Every row of ``retrain_archs.py``'s files picked for ``budget`` (named ``...-BUDGET``), named
    by its folder, with its ArchSpec and parameter count: the selects' own picks, not the size
    picks beside them (``...-size-BUDGET``, ``size_repick.py``), which are another rule's."""
    picks = []
    for path in files:
        for row in json.loads(path.read_text())["rows"]:
            if row["name"].endswith(f"-{budget}") and f"-size-{budget}" not in row["name"]:
                spec = ArchSpec.from_dict(row["arch"])
                name = f"{path.parent.parent.name}/{path.parent.name}"
                picks.append({"name": name, "cer": row["cer"], "params": row["params"], "spec": spec})
    return picks


def group_table(picks: list[dict], split: str = "dev") -> list[dict]:
    """For each grouping and count: the picks with that count, their mean CER and range, and the
    one-sided permutation p that they are lower (``p_lower``) or higher (``p_higher``) than the rest."""
    table = []
    for label, count in COUNTS.items():
        counts = [count(p["spec"]) for p in picks]
        for value in sorted(set(counts)):
            inside = [p["cer"][split] for p, c in zip(picks, counts) if c == value]
            rest = [p["cer"][split] for p, c in zip(picks, counts) if c != value]
            table.append(
                {
                    "grouping": label,
                    "count": value,
                    "picks": len(inside),
                    "mean": statistics.fmean(inside),
                    "range": (min(inside), max(inside)),
                    "rest_mean": statistics.fmean(rest) if rest else None,
                    "p_lower": permutation_p(inside, rest) if rest else None,
                    "p_higher": permutation_p(rest, inside) if rest else None,
                }
            )
    return table


def size_tau(picks: list[dict], split: str = "dev") -> float | None:
    """Kendall tau of the picks' parameter counts (more first) against their CER: how well size
    alone would have ordered what the selects picked (session 29: 0.55 over twelve 0.844 ms
    picks, where the supernet's own score under-rates the larger networks)."""
    params = {i: p["params"] for i, p in enumerate(picks)}  # by index: two picks may share a folder
    return parameter_count_ranking(params, {i: p["cer"][split] for i, p in enumerate(picks)})["kendall_tau"]


def plot(picks: list[dict], split: str, grouping: str, path: Path) -> None:
    """Each pick's CER against its parameter count, marked by its count of ``grouping`` and
    labelled by its folder: both splits that session 29 found (size, full-width attention) at a
    glance."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    counts = [COUNTS[grouping](p["spec"]) for p in picks]
    for value, marker in zip(sorted(set(counts)), "osD^v<>"):
        kept = [p for p, c in zip(picks, counts) if c == value]
        ax.scatter([p["params"] / 1e6 for p in kept], [100 * p["cer"][split] for p in kept], marker=marker,
                   s=50, label=f"{value} {grouping}")  # fmt: skip
        for p in kept:
            ax.annotate(p["name"], (p["params"] / 1e6, 100 * p["cer"][split]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel(f"{split} CER % (mean of the retrain seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    print(f"written: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", type=Path, nargs="+", help="retrain_archs.json files of searched picks")
    parser.add_argument("--budget", required=True, help="the study budget label the picks were made for")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--plot", type=Path, help="a PNG of the picks' CER against their parameters")
    parser.add_argument("--plot-grouping", default="plain attention blocks", choices=sorted(COUNTS))
    args = parser.parse_args()
    picks = budget_picks(args.files, args.budget)
    if len(picks) < 2:
        raise SystemExit(
            f"{len(picks)} picks named ...-{args.budget} in {len(args.files)} files: nothing to group"
        )
    for pick in sorted(picks, key=lambda p: p["cer"][args.split]):
        print(f"{100 * pick['cer'][args.split]:5.1f}  {pick['name']}  {' '.join(pick['spec'].layers)}")
    print(
        f"\n| what the pick holds | count | picks | mean {args.split} CER % | range | the rest | p lower | p higher |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in group_table(picks, args.split):
        low, high = row["range"]
        rest = "-" if row["rest_mean"] is None else f"{100 * row['rest_mean']:.2f}"
        p = ["-" if v is None else f"{v:.3f}" for v in (row["p_lower"], row["p_higher"])]
        print(
            f"| {row['grouping']} | {row['count']} | {row['picks']} | {100 * row['mean']:.2f} | "
            f"{100 * low:.1f}-{100 * high:.1f} | {rest} | {p[0]} | {p[1]} |"
        )
    tau = size_tau(picks, args.split)
    print(f"\nKendall tau of the parameters (more first) against {args.split} CER over the {len(picks)} picks: "
          + ("undefined" if tau is None else f"{tau:.3f}"))  # fmt: skip
    if args.plot and can_plot(f"the plot {args.plot}"):
        plot(picks, args.split, args.plot_grouping, args.plot)


if __name__ == "__main__":
    main()
