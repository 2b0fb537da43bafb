"""Duration-bucketed batches under a cap on padded frames, deterministic and DDP-sharded.

Utterances are sorted by length and cut into about `num_buckets` buckets of similar count. Each bucket has a
fixed batch size, `max_frames // longest item in the bucket`, so every batch keeps
`batch size x longest item <= max_frames` and the number of batches is the same every epoch (Lightning
counts batches once). Each epoch reshuffles the items inside each bucket and the order of the batches
with a generator seeded by `seed + epoch`, so every rank draws the same list and takes its own slice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DistributedSampler, Sampler


def _distributed_defaults(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} outside [0, {num_replicas})")
    return num_replicas, rank


class DurationBucketSampler(BatchSampler):
    """Yields lists of dataset indices whose padded size `len(batch) * max(frames)` is `<= max_frames`.

    `frame_counts[i]` is item i's length in feature frames. `sampler` is accepted only so that
    Lightning can hand in its `DistributedSampler` under DDP (its `num_replicas`/`rank` are used;
    nothing else of it). Otherwise `num_replicas`/`rank` default to the `torch.distributed` state.

    Every rank gets the same number of batches: when the total is not a multiple of the number of
    ranks, the largest batches are split in two (still under the cap, nothing repeated); only when
    every batch holds a single item are batches repeated (`repeated_batches` says how many).
    """

    def __init__(
        self,
        frame_counts: Sequence[int],
        max_frames: int,
        sampler: Sampler | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_buckets: int = 16,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        if isinstance(sampler, DistributedSampler):
            num_replicas, rank = sampler.num_replicas, sampler.rank
        self.num_replicas, self.rank = _distributed_defaults(num_replicas, rank)
        self.frame_counts = [int(n) for n in frame_counts]
        if not self.frame_counts:
            raise ValueError("DurationBucketSampler: no items")
        too_long = [(i, n) for i, n in enumerate(self.frame_counts) if n > max_frames]
        if too_long:
            index, frames = too_long[0]
            raise ValueError(
                f"DurationBucketSampler: {len(too_long)} item(s) longer than max_frames={max_frames} "
                f"(e.g. item {index}: {frames} frames); raise max_frames or drop them from the manifest"
            )
        self.max_frames = int(max_frames)
        self.shuffle, self.seed = shuffle, int(seed)
        self.epoch = 0
        self.buckets = self._make_buckets(num_buckets)
        self.bucket_batch_sizes = [
            self.max_frames // max(self.frame_counts[i] for i in bucket) for bucket in self.buckets
        ]
        self.repeated_batches = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def _make_buckets(self, num_buckets: int) -> list[list[int]]:
        """Contiguous runs of the length-sorted items, about `n / num_buckets` each, but never less than
        one full batch (so a small corpus gets few buckets rather than batches of one)."""
        order = sorted(range(len(self.frame_counts)), key=lambda i: (self.frame_counts[i], i))
        target = math.ceil(len(order) / max(1, num_buckets))
        buckets, current = [], []
        for index in order:
            current.append(index)
            if len(current) >= max(target, self.max_frames // self.frame_counts[index]):
                buckets.append(current)
                current = []
        if current:
            buckets.append(current)
        return buckets

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def sampler(self) -> DurationBucketSampler:
        """Itself: Lightning sets the epoch of ``loader.sampler`` and ``loader.batch_sampler.sampler``
        (``_set_sampler_epoch``), never of the batch sampler itself, so without this every epoch
        replayed epoch 0's order. (Re-instantiation under DDP uses the saved init arguments.)"""
        return self

    def _all_batches(self, epoch: int) -> list[list[int]]:
        """The batches of every rank for `epoch` (the same list on every rank)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        generator = torch.Generator().manual_seed(self.seed + epoch)
        batches: list[list[int]] = []
        for bucket, size in zip(self.buckets, self.bucket_batch_sizes):
            if self.shuffle:
                bucket = [bucket[i] for i in torch.randperm(len(bucket), generator=generator).tolist()]
            batches.extend(bucket[i : i + size] for i in range(0, len(bucket), size))
        batches = self._make_divisible(batches)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        self._cache = (epoch, batches)
        return batches

    def _make_divisible(self, batches: list[list[int]]) -> list[list[int]]:
        target = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
        while len(batches) < target:
            largest = max(range(len(batches)), key=lambda i: (len(batches[i]), -i))
            if len(batches[largest]) < 2:
                break
            batch = batches.pop(largest)
            half = len(batch) // 2
            batches[largest:largest] = [batch[:half], batch[half:]]
        self.repeated_batches = target - len(batches)
        return batches + [batches[i % len(batches)] for i in range(self.repeated_batches)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches(self.epoch)[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return len(self._all_batches(self.epoch)) // self.num_replicas

    @property
    def padding_fraction(self) -> float:
        """Share of the padded frames of this epoch's batches (all ranks) that are padding."""
        padded = real = 0
        for batch in self._all_batches(self.epoch):
            frames = [self.frame_counts[i] for i in batch]
            padded += len(frames) * max(frames)
            real += sum(frames)
        return 1.0 - real / padded

    def describe(self) -> str:
        batches = self._all_batches(self.epoch)
        mean_size = sum(len(b) for b in batches) / len(batches)
        return (
            f"{len(self)} batches/epoch per rank ({self.num_replicas} rank(s)), mean batch {mean_size:.1f}, "
            f"padding {100 * self.padding_fraction:.1f}% (max_frames={self.max_frames})"
        )
