"""Retrain extra architectures with a study's recipe, beside its own runs: a pick rule checked on
the GPU without a new study (issue 16, ``extract --pick depth``).

Each ARCH x the study's retrain seeds runs as the study runs its own retrains (``plan.retrain_run``,
``execute``) under WORK/retrain/NAME/seedS (a folder of its own: the study's stays as it ran), so a
stopped call resumes on the warm machine, and the rows compare with the study's (same corpus,
recipe and seeds: the shipped config's, 24 epochs since session 12; the kept
``docs/study/h200_three/study.json`` was retrained for 12, so give
``docs/study/h200_three/study.yaml`` as CONFIG, or ``--retrain-option trainer.max_epochs=12``, to
compare with it). Prints dev and test CER (mean +- std over the seeds) and writes
``$OUT/retrain_archs.json``, with each seed's dev CER after every epoch (is the recipe long
enough?).

``--retrain-option KEY=VALUE`` changes the study's retrain recipe (a longer one:
``trainer.max_epochs=24``) and ``--seeds`` its seeds (one seed alone, for a time with the GPU to
itself); use a WORK folder of its own for each recipe.

    bash -c 'source scripts/device/setup.sh && python3 scripts/device/retrain_archs.py \
        h200_three /tmp/depth_check docs/study/h200_three/depth/*.yaml --parallel 6'
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from study_pieces import study_with  # scripts/device, beside this file

from supernet.archspec import ArchSpec
from supernet.study import plan
from supernet.study.execute import execute
from supernet.study.pipeline import check_test_sets
from supernet.study.report import cer_by_seed, cer_by_set, dev_cer_by_epoch, in_epoch_order, read_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the study's config (a shipped name or a YAML path)")
    parser.add_argument("work", help="a folder for these retrains (not the study's own)")
    parser.add_argument("archs", nargs="+", help="ArchSpec YAMLs (their names name the runs)")
    parser.add_argument("--parallel", type=int, default=6)
    parser.add_argument("--retrain-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", type=int, nargs="+", help="instead of the study's retrain seeds")
    args = parser.parse_args()
    study, out = study_with(args.config, args.retrain_option, "retrain"), Path(args.work)
    if args.seeds:
        study["retrain"]["seeds"] = args.seeds
    data = plan.prepare_corpus(study)
    sets = ["dev", *check_test_sets(data, study["test_sets"])]
    specs = [ArchSpec.load(a) for a in args.archs]
    runs = {
        spec.name: [
            plan.retrain_run(study, out, data, plan.write_arch(out, spec), spec.name, seed)
            for seed in study["retrain"]["seeds"]
        ]
        for spec in specs
    }
    execute([run for these in runs.values() for run in these], args.parallel, "retrain")
    rows = []
    for spec in specs:
        metrics = [read_metrics(run.out) for run in runs[spec.name] if (run.out / "metrics.json").is_file()]
        if not metrics:
            rows.append({"name": spec.name, "retrain_seeds": 0})
            continue
        cer, cer_std = cer_by_set(metrics, sets)
        rows.append({
            "name": spec.name, "params": metrics[0]["params"], "retrain_seeds": len(metrics),
            "cer": cer, "cer_std": cer_std, "cer_by_seed": cer_by_seed(metrics, sets),
            "train_seconds": [m.get("train_seconds") for m in metrics], "arch": spec.to_dict(),
            "dev_cer_by_epoch": [
                in_epoch_order(dev_cer_by_epoch(run.out))
                for run in runs[spec.name]
                if (run.out / "metrics.json").is_file()
            ],
        })  # fmt: skip
    for row in rows:
        figures = (
            "  ".join(f"{s} {100 * row['cer'][s]:.1f}±{100 * row['cer_std'][s]:.1f}" for s in sets)
            if row["retrain_seeds"]
            else "no finished seed"
        )
        print(f"{row['name']:40s} seeds {row['retrain_seeds']}  {figures}")
    target = Path(os.environ.get("OUT", "/tmp/out")) / "retrain_archs.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({
        "config": args.config, "retrain": study["retrain"], "corpus": str(data), "rows": rows,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
