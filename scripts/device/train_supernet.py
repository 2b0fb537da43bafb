"""Train the study's uniform supernet alone (h200_three's recipe, KEY=VALUE search options on top)
and print its checkpoint; a trained one is skipped, an interrupted one resumes on the warm machine.

    python3 scripts/device/train_supernet.py WORK TABLE [trainer.max_epochs=20 ...]

A script file, not ``python3 -`` on stdin: the corpus's spawned render workers cannot import
'<stdin>'. Its ``search.json`` (beside the checkpoint folder) holds ``search_seconds``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from study_pieces import study_with  # scripts/device, beside this file

from supernet.study import pipeline, plan
from supernet.study.execute import execute


def train(work: Path, table: Path, options: list[str]) -> tuple[Path, Path]:
    """The uniform supernet's checkpoint (trained now unless it was) and the corpus it read."""
    study = study_with("h200_three", options)  # as alone_costs.py --search-option reads them
    data = plan.prepare_corpus(study)
    work.mkdir(parents=True, exist_ok=True)
    space, baselines = plan.space(study), plan.baselines(study)
    planned = pipeline._plan_searches(study, work, data, space, baselines, table_path=table)
    run = next(run for (method, _, _), run in planned.searches.items() if method == "uniform")
    execute([run], 1, "search")
    return Path(run.checkpoint), Path(data)


def main() -> None:
    ckpt, _ = train(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
    print(ckpt)


if __name__ == "__main__":
    main()
