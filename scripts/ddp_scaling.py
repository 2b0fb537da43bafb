"""1 -> 2 GPU search throughput in one device call: ``bench.py ddp`` for each variant on one and
two GPUs, in an interleaved order (1, 2, 2, 1, ...) so that a drift of the host shows up in the
repeats rather than in the ratio, then a table of audio s/s, scaling and per-rank profiles.

    python3 scripts/ddp_scaling.py OUT_DIR [--repeats 2] [--variants graphs graphs+ahead] [bench args]

A variant is ``+``-joined flags of ``bench.py``: ``graphs`` (--cuda_graphs), ``ahead``
(--sample_ahead), ``bind`` (--bind_cpus), ``after`` (--no_overlap: all-reduce after backward), ``eager``
(none). Other arguments go to every ``bench.py ddp`` run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

FLAGS = {
    "graphs": ["--cuda_graphs"],
    "ahead": ["--sample_ahead"],
    "bind": ["--bind_cpus"],
    "after": ["--no_overlap"],
    "eager": [],
}
DEFAULT_BENCH = [
    "--candidates", "4", "--batch", "32", "--epoch_steps", "100",
    "--warmup_epochs", "2", "--search_epochs", "4",
]  # fmt: skip


def variant_flags(variant: str) -> list[str]:
    flags = []
    for part in variant.split("+"):
        if part not in FLAGS:
            raise SystemExit(f"unknown variant part {part!r} in {variant!r}; use {', '.join(FLAGS)}")
        flags += FLAGS[part]
    return flags


def order(repeats: int) -> list[int]:
    """1, 2, 2, 1, 1, 2, ...: each device count runs as often early as late."""
    pattern = [1, 2, 2, 1]
    return [pattern[i % 4] for i in range(2 * repeats)]


def run(out_dir: Path, variant: str, devices: int, index: int, bench_args: list[str]) -> dict:
    out = out_dir / f"{variant}_ddp{devices}_{index}.json"
    command = [sys.executable, "scripts/bench.py", "ddp", "--devices", str(devices), "--out", str(out)]
    command += variant_flags(variant) + bench_args
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"bench.py failed ({done.returncode}): {' '.join(command)}")
    return json.loads(out.read_text())["ddp"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=2, help="runs per device count and variant")
    parser.add_argument("--variants", nargs="+", default=["graphs", "graphs+ahead"])
    args, bench_args = parser.parse_known_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    bench_args = bench_args or DEFAULT_BENCH
    results: dict[str, dict[int, list[dict]]] = {v: {1: [], 2: []} for v in args.variants}
    for i, devices in enumerate(order(args.repeats)):
        for variant in args.variants:  # variants interleaved too
            results[variant][devices].append(run(args.out_dir, variant, devices, i, bench_args))

    lines = [
        "| variant | GPUs | search audio s/s (runs) | median | scaling | identical | NCCL ms per rank | GPU busy per rank |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for variant, by_devices in results.items():
        medians = {
            d: statistics.median(r["search_audio_s_per_s"] for r in rs) for d, rs in by_devices.items()
        }
        scaling = medians[2] / medians[1]
        summary[variant] = {"median_s_per_s": medians, "scaling": scaling, "runs": by_devices}
        for devices, runs in by_devices.items():
            speeds = ", ".join(f"{r['search_audio_s_per_s']:,.0f}" for r in runs)
            nccl = "; ".join(
                "/".join(f"{p['nccl_ms']:.0f}" for p in r["profile_by_rank"]) for r in runs if devices > 1
            )
            busy = "; ".join(
                "/".join(
                    f"{p['gpu_busy']:.0%} ({p.get('cpus', float('nan')):.0f} cpus)"
                    for p in r["profile_by_rank"]
                )
                for r in runs
            )
            same = all(r["identical_on_all_ranks"] for r in runs)
            ratio = f"{scaling:.2f}x" if devices == 2 else ""
            lines.append(
                f"| {variant} | {devices} | {speeds} | {medians[devices]:,.0f} | {ratio} | {same} | {nccl} | {busy} |"
            )
    table = "\n".join(lines)
    print(table)
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out_dir / "summary.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
