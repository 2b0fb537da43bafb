"""DDP for the search: one process per device, no ``DistributedDataParallel`` wrapper.

Lightning's plain DDP wraps the module in ``DistributedDataParallel``, whose reducer expects one
backward per forward over every parameter; a search step runs two passes (``autograd.grad`` for the
alphas, then a backward for the weights) and leaves the unsampled candidates without gradients, so
plain DDP needs ``find_unused_parameters=True`` (a graph walk per step, and an all-reduce of zeros
for every unsampled candidate). This strategy does not wrap the module: rank 0's weights are
broadcast once, every rank samples the same path (the sampler depends on ``(seed, step)`` and on
alphas that stay identical), and the module averages the gradients that exist
(``supernet.accel.grad_sync``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from pytorch_lightning.overrides.distributed import _sync_module_states
from pytorch_lightning.strategies import DDPStrategy, StrategyRegistry

from supernet.accel.cpu_affinity import bind_rank
from supernet.accel.grad_sync import AllReduceSync, world_size
from supernet.search.step import GradientSync, SearchStep


class SearchDDPStrategy(DDPStrategy):
    """DDP for ``SearchModule``: one process per device, no ``DistributedDataParallel`` wrapper.

    It starts the processes, broadcasts rank 0's parameters and buffers before fitting, plugs the
    gradient all-reduce into the module's search step (``AllReduceSync``; ``overlap``: the weight
    gradients in buckets during backward, else in one pass after it), and broadcasts the buffers
    again before each validation (BatchNorm statistics, which are not gradients, would drift
    apart). ``bind_cpus=True`` pins each rank to its share of the cores next to its GPU
    (``supernet.accel.cpu_affinity``).
    """

    def __init__(self, *args: Any, bind_cpus: bool = False, overlap: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.bind_cpus, self.overlap = bind_cpus, overlap

    def setup_environment(self) -> None:
        super().setup_environment()
        if self.bind_cpus and self.root_device.type == "cuda":
            indices = [device.index for device in self.parallel_devices]
            bind_rank(self.local_rank, indices)

    def configure_ddp(self) -> None:
        _sync_module_states(self.model)
        search = getattr(self.lightning_module, "search", None)
        if isinstance(search, SearchStep) and world_size() > 1:
            search.sync = AllReduceSync(self.lightning_module.net.parameters(), overlap=self.overlap)

    def teardown(self) -> None:
        search = getattr(self.lightning_module, "search", None)
        if isinstance(search, SearchStep) and isinstance(search.sync, AllReduceSync):
            search.sync.remove()
            search.sync = GradientSync()
        super().teardown()

    def on_validation_start(self) -> None:
        if dist.is_available() and dist.is_initialized():
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)


StrategyRegistry.register(
    "search_ddp", SearchDDPStrategy, description="DDP for SearchModule (no reducer)", override=True
)
StrategyRegistry.register(
    "search_ddp_spawn",
    SearchDDPStrategy,
    description="DDP for SearchModule (no reducer), spawned processes",
    start_method="spawn",
    override=True,
)


DDP_START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}


def _device_count(trainer_config: dict) -> int:
    devices, accelerator = trainer_config.get("devices", "auto"), trainer_config.get("accelerator", "auto")
    gpus = torch.cuda.device_count() if accelerator in ("auto", "gpu", "cuda") else 0
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if str(devices) == "auto":
        return max(1, gpus)
    return gpus if int(devices) == -1 else int(devices)


def search_strategy(
    trainer_config: dict, bind_cpus: bool = False, overlap: bool = True
) -> SearchDDPStrategy | None:
    """``SearchDDPStrategy`` for any DDP run (named ``ddp*``, or ``auto`` on several devices or
    nodes), with the same start method; plain DDP cannot follow a search step (see
    ``supernet.search.module``). ``None`` keeps the trainer's own choice."""
    strategy = trainer_config.get("strategy", "auto")
    if not isinstance(strategy, str):
        return None
    base = strategy.replace("_find_unused_parameters_true", "").replace("_find_unused_parameters_false", "")
    if base in DDP_START_METHODS:
        return SearchDDPStrategy(start_method=DDP_START_METHODS[base], bind_cpus=bind_cpus, overlap=overlap)
    processes = _device_count(trainer_config) * int(trainer_config.get("num_nodes", 1) or 1)
    if base == "auto" and processes > 1:
        return SearchDDPStrategy(bind_cpus=bind_cpus, overlap=overlap)
    return None
