"""Parallel test workers (pytest-xdist, see pyproject's addopts): each worker takes its share of
the machine's cores for torch's threads, so that N workers do not each start a thread per core."""

from __future__ import annotations

import os

import torch

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORKERS))
