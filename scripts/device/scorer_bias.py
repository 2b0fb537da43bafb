"""Why does the supernet under-rate networks with full-rate attention blocks? (issue 16)

Across six selects at 0.841 ms (sessions 13-14) the 20-epoch uniform supernet scored candidates
with a full-rate attention block (conformer or E-Branchformer at the full frame rate) 0.04-0.08
worse in dev loss than those without, while retrained for 24 epochs they were better (dev CER 19.9
against 22.1). Drawing those blocks three times as often did not remove it (session 11). This
trains that supernet once (or reuses it on the warm machine) and scores every retrained network of
the given reports under each scorer setting: BatchNorm re-estimated on 0, 4 or 32 train batches,
with the trained weights (or the averaged ones, when the search kept an average). For each it
prints Kendall tau of dev loss and dev CER against the retrained dev CER, and the mean residual of
the networks by their number of full-rate attention blocks (score minus the straight line fitted
through all, in standard deviations of the score: positive means rated worse than their retrained
CER says). A setting whose residuals flatten is the fix to ship; none that does says the cause is
in the training. Measured in session 15 (docs/results.md): no setting flattens them; the
supernet's own statistics (0 batches) rank best, at tau 0.22 by loss and 0.26 by CER.

    bash -c 'source scripts/device/setup.sh && python3 scripts/device/scorer_bias.py /tmp/bias \
        docs/study/h200_three/latency.json docs/study/h200_three/retrain_length/report_24_epochs.json \
        docs/study/h200_three/finalists/retrain_archs.json \
        docs/study/h200_three/finalists_halving/retrain_archs.json'

Writes ``$OUT/scorer_bias.json``. A script file (spawned corpus workers cannot import '<stdin>').
"""

from __future__ import annotations

import re
import statistics
import time

from study_pieces import retrained, scorer_parser, write_result  # scripts/device, beside this file
from train_supernet import train

from supernet.archspec import ArchSpec
from supernet.study import rank

FULL_RATE_ATTENTION = re.compile(r"^(conformer|ebranchformer)-")  # not res-down2-..., not res-...-e96


def attention_blocks(spec: ArchSpec) -> int:
    return sum(bool(FULL_RATE_ATTENTION.match(layer)) for layer in spec.layers)


def residuals_by_count(score: dict[str, float], cer: dict[str, float], counts: dict[str, int]) -> dict:
    """Mean residual of the score against the least-squares line through (retrained CER, score),
    in standard deviations of the score, by number of full-rate attention blocks."""
    names = sorted(score)
    x, y = [cer[n] for n in names], [score[n] for n in names]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
    spread = statistics.pstdev(y) or 1.0
    residual = {n: (score[n] - (my + slope * (cer[n] - mx))) / spread for n in names}
    out = {}
    for count in sorted(set(counts[n] for n in names)):
        group = [residual[n] for n in names if counts[n] == count]
        out[str(count)] = {"networks": len(group), "mean_residual": statistics.fmean(group)}
    return out


def main() -> None:
    parser = scorer_parser(__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[0, 4, 32])
    parser.add_argument(
        "--weights", nargs="+", default=["trained"], choices=["trained", "average"],
        help="average needs a search that kept one: --search-option model.weight_average=0.995",
    )  # fmt: skip
    parser.add_argument(
        "--search-option", action="append", metavar="KEY=VALUE",
        default=["trainer.max_epochs=20", "model.warmup_epochs=10"],  # the 2x route's supernet
        help="search options applied after the 20-epoch route's (later ones win)",
    )  # fmt: skip
    args = parser.parse_args()
    ckpt, data = train(args.work, args.table, args.search_option)
    specs, cer, _ = retrained(*args.reports)
    counts = {n: attention_blocks(s) for n, s in specs.items()}
    settings = []
    for weights in args.weights:
        for batches in args.batches:
            if weights == "average" and batches == 0:
                continue  # averaged weights carry no BatchNorm statistics of their own
            began = time.perf_counter()
            scores = rank.supernet_scores(ckpt, data, specs, batches, weights=weights)
            kept = {n: s for n, s in scores.items() if n in cer}
            entry = {
                "weights": weights, "batches": batches, "networks": len(kept),
                "seconds": round(time.perf_counter() - began, 1), "scores": kept,
            }  # fmt: skip
            for measure in ("loss", "cer"):
                by = {n: s[measure] for n, s in kept.items()}
                entry[f"tau_{measure}"] = rank.kendall_tau([by[n] for n in by], [cer[n] for n in by])
                entry[f"residuals_{measure}"] = residuals_by_count(by, cer, counts)
            settings.append(entry)
            residual = ", ".join(
                f"{k} blocks ({v['networks']}): {v['mean_residual']:+.2f}"
                for k, v in entry["residuals_loss"].items()
            )
            print(
                f"{weights:8s} batches {batches:3d}: tau loss {entry['tau_loss']:.3f}, cer {entry['tau_cer']:.3f} "
                f"over {len(kept)}; loss residual by full-rate attention blocks: {residual}",
                flush=True,
            )
    result = {"ckpt": str(ckpt), "reports": [str(r) for r in args.reports], "attention_blocks": counts,
              "retrained_dev_cer": cer, "settings": settings}  # fmt: skip
    write_result("scorer_bias.json", result)


if __name__ == "__main__":
    main()
