"""Scoring candidates on several devices: each candidate's batches split across processes.

``supernet select --devices N`` starts N-1 follower processes beside the one that runs the
strategy, one per GPU (or N CPU processes, over gloo). The leader broadcasts each path; every
process recalibrates BatchNorm on its share of the train batches and measures its share of the
split, and ``all_reduce`` combines the statistics and the sums (``SupernetScorer``'s ``shard`` and
``reduce``). Every candidate is scored across all ranks, so the strategy and its picks do not
depend on the number of devices (same seed, same picks), only the time per candidate does.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from supernet.errors import UserError
from supernet.select.score import SupernetScorer

TIMEOUT = timedelta(minutes=30)  # a follower that died leaves the others waiting this long at most


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _device(rank: int, cuda: bool) -> torch.device:
    return torch.device(f"cuda:{rank}") if cuda else torch.device("cpu")


def _join(rank: int, world: int, port: int, cuda: bool) -> None:
    if cuda:
        torch.cuda.set_device(rank)
    else:  # the CPU processes share the cores instead of each taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(
        "nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=TIMEOUT,
    )  # fmt: skip


def _sum(tensor: torch.Tensor) -> None:
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def _scorer(rank: int, world: int, cuda: bool, ckpt, data, options: dict[str, Any]) -> SupernetScorer:
    """This rank's scorer, its batches read before the process group starts (``prepare``)."""
    device = _device(rank, cuda)
    return SupernetScorer(ckpt, data, device=device, shard=(rank, world), reduce=_sum, **options).prepare()


def _follow(
    rank: int, world: int, port: int, cuda: bool, ckpt: str, data: str, options: dict[str, Any]
) -> None:
    """A follower: score every path the leader broadcasts, until it sends None."""
    scorer = _scorer(rank, world, cuda, ckpt, data, options)
    _join(rank, world, port, cuda)
    try:
        while True:
            message = [None]
            dist.broadcast_object_list(message, src=0)
            if message[0] is None:
                break
            scorer.measure(message[0])
    finally:
        dist.destroy_process_group()


class DistributedScorer:
    """``SupernetScorer`` on ``devices`` processes (GPUs when CUDA is available, else CPU
    processes): use as a context manager, or call ``close``. ``options``: the scorer's keywords."""

    def __init__(self, ckpt: str | Path, data: str | Path, devices: int, **options: Any):
        cuda = torch.cuda.is_available()
        if devices < 2:
            raise UserError(f"--devices: a distributed scorer needs at least 2, got {devices}")
        if cuda and devices > torch.cuda.device_count():
            raise UserError(f"--devices {devices}: this machine has {torch.cuda.device_count()} GPU(s)")
        port, context = _free_port(), torch.multiprocessing.get_context("spawn")
        self.followers = [
            context.Process(target=_follow, args=(rank, devices, port, cuda, str(ckpt), str(data), options))
            for rank in range(1, devices)
        ]
        for process in self.followers:
            process.start()
        self.scorer = _scorer(0, devices, cuda, ckpt, data, options)
        self.threads = torch.get_num_threads()  # _join shares the CPU cores: given back on close
        _join(0, devices, port, cuda)
        self.split, self.space, self.metric = self.scorer.split, self.scorer.space, self.scorer.metric
        self.weights = self.scorer.weights

    def measure(self, path: dict[str, int]) -> dict[str, float]:
        dist.broadcast_object_list([dict(path)], src=0)
        return self.scorer.measure(path)

    def __call__(self, path: dict[str, int]) -> float:
        return self.measure(path)[self.metric]

    def close(self) -> None:
        if dist.is_initialized():
            dist.broadcast_object_list([None], src=0)
            dist.destroy_process_group()
        for process in self.followers:
            process.join()
        torch.set_num_threads(self.threads)

    def __enter__(self) -> DistributedScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
