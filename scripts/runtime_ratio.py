"""Per-op cost of one space in two or more latency tables, side by side: how onnxruntime (fp32,
int8) prices the ops against PyTorch. The figures of docs/deploy.md's "It matters" bullet
(docs/latency.md's "Why it matters" table is an earlier comparison of the same kind, with sizes).

    supernet profile --space budget -o torch.json
    supernet profile --space budget --runtime onnxruntime -o ort.json
    supernet profile --space budget --runtime onnxruntime --int8 -o ort_int8.json
    python scripts/runtime_ratio.py torch.json ort.json ort_int8.json [--json out.json]

Each table's entries are matched by key (op, dims, frames); the ratio columns are each table's ms
over the first table's, and those of the third on over the second's (int8 over fp32). The entries' ``ms`` are the op's own
(marked) times; the tables should be profiled minutes apart on a quiet machine, or the machine's
drift shows up as a ratio.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from supernet.latency.table import LatencyTable


def name(table: LatencyTable) -> str:
    s = table.settings
    if s.get("runtime", "torch") == "torch":
        return "torch"
    return "ort int8 " + s.get("int8_mode", "dynamic") if s.get("int8") else "ort fp32"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", type=Path, help="the first is the reference")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    tables = [LatencyTable.load(p) for p in args.tables]
    names = [name(t) for t in tables]
    keys = [k for k in tables[0].entries if all(k in t.entries for t in tables[1:])]
    ratios = [f"{n} / {names[0]}" for n in names[1:]] + [f"{n} / {names[1]}" for n in names[2:]]
    print("| op | frames | " + " | ".join(f"{n} ms" for n in names) + " | " + " | ".join(ratios) + " |")
    print("|---|---|" + "---|" * (len(names) + len(ratios)))
    rows = []
    for key in keys:
        ms = [t.entries[key]["ms"] for t in tables]
        if min(ms) <= 0:  # skip, zero: nothing to compare
            continue
        r = [m / ms[0] for m in ms[1:]] + [m / ms[1] for m in ms[2:]]
        entry = tables[0].entries[key]
        label = entry["spec"] + (" (head)" if entry.get("head") else "")
        rows.append({"key": key, "ms": dict(zip(names, ms)), "ratios": dict(zip(ratios, r))})
        cells = " | ".join(f"{m:.2f}" for m in ms) + " | " + " | ".join(f"{x:.2f}" for x in r)
        print(f"| `{label}` | {entry['frames']} | {cells} |")
    if args.json:
        args.json.write_text(
            json.dumps({"tables": [str(p) for p in args.tables], "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
