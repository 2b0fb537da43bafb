"""A CSV logger that keeps a resumed run's earlier rows.

Lightning's CSV writer deletes ``metrics.csv`` when its folder exists, so a run resumed from its
checkpoint (``--ckpt_path``, an interrupted study) kept only the epochs after the resume. A run
folder holds one run (``run_folder.claim`` refuses another; ``--overwrite`` clears it first), so
a file already there is this run's earlier part: keep it, and write on after it under its header.
Module-level classes, imported only when a CSV logger is made: ``ddp_spawn`` pickles the logger.
"""

from __future__ import annotations

import csv

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment


class KeptWriter(ExperimentWriter):
    """Lightning's writer, keeping ``metrics.csv``: its header becomes the known keys, so new rows
    append under it (a new key widens it, Lightning's own rewrite keeping every row)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = KeptWriter(log_dir=self.log_dir)
        return self._experiment
