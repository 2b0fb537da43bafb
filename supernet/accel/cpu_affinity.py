"""Pin each DDP rank's process to CPU cores next to its GPU (``SearchDDPStrategy(bind_cpus=True)``).

At batch 32 a search step is bound by the host's kernel launches, and the ranks meet at every
all-reduce: a rank whose process the scheduler moves to the other socket, or onto the cores of
the other rank, is slower, and the other rank waits for it at every step. NVIDIA's advice for
such hosts is to bind each rank to the cores of its GPU's NUMA node (``numactl``); Lightning's
launchers do not, so the strategy does it after the processes start. The cores near a GPU come
from the kernel (``/sys/bus/pci/devices/<GPU>/local_cpulist``); ranks whose GPUs share a node
split its cores between them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

SYSFS_PCI = Path("/sys/bus/pci/devices")


def parse_cpulist(text: str) -> list[int]:
    """``"0-3,8,10-11"`` -> ``[0, 1, 2, 3, 8, 10, 11]`` (the kernel's cpulist format)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def gpu_local_cpus(device_index: int, sysfs: Path = SYSFS_PCI) -> list[int] | None:
    """The CPUs of the NUMA node of CUDA device ``device_index`` that this process may use; None
    when the kernel does not say (no sysfs entry, a container that hides it)."""
    props = torch.cuda.get_device_properties(device_index)
    bus = f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    path = sysfs / bus / "local_cpulist"
    if not path.exists():
        return None
    allowed = os.sched_getaffinity(0)
    return [cpu for cpu in parse_cpulist(path.read_text()) if cpu in allowed] or None


def share_of(cpus: list[int], local_rank: int, ranks_on_node: list[int]) -> list[int]:
    """The slice of ``cpus`` for ``local_rank`` when ``ranks_on_node`` (local ranks, this one
    among them) share them: contiguous, as even as possible, never empty."""
    position, count = ranks_on_node.index(local_rank), len(ranks_on_node)
    if count > len(cpus):
        return cpus
    start, end = position * len(cpus) // count, (position + 1) * len(cpus) // count
    return cpus[start:end]


def bind_rank(local_rank: int, device_indices: list[int]) -> list[int] | None:
    """Pin this process to its share of the cores next to ``device_indices[local_rank]``; returns
    the cores, or None (with a warning) when the topology is unknown."""
    nodes = [gpu_local_cpus(index) for index in device_indices]
    mine = nodes[local_rank]
    if mine is None:
        warnings.warn(
            f"bind_cpus: the kernel gives no local_cpulist for CUDA device {device_indices[local_rank]}; "
            "this rank runs unbound",
            stacklevel=2,
        )
        return None
    sharing = [rank for rank, cpus in enumerate(nodes) if cpus == mine]
    cores = share_of(mine, local_rank, sharing)
    os.sched_setaffinity(0, cores)
    torch.set_num_threads(max(1, len(cores)))
    return cores
