"""Where the host's time goes in one training step, when the step is bound by the host.

At batch 32 x 8 s the GPU finishes a step's kernels faster than Python issues them. This runs the
bench's bare steps (derived model, ST weight, ST arch; bf16) under cProfile and prints, per step:
the wall time, the kernels launched (torch.profiler) and the Python functions with the most time
of their own. ``--lightning`` profiles the real Lightning search instead (``SearchModule``, st,
bf16-mixed, as ``bench.py single`` runs it): the search steps after one warm-up and one search
epoch, and the retrain's steps likewise. One device call: ``python3 scripts/host_profile.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the bench's steps, shapes and batches)

from supernet.space import SearchSpace  # noqa: E402


def kernels_per_step(step_fn, steps: int) -> float:
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for i in range(steps):
            step_fn(i)
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if bench.is_gpu_work(e)) / steps


def print_stats(profiler: cProfile.Profile, top: int) -> None:
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(top)
        body = text.getvalue()
        print(f"### by {order}")
        print(body[body.find("   ncalls") :].replace(str(Path.cwd()) + "/", ""))


class CProfileSteps(pl.Callback):
    """cProfile over ``count`` training steps from batch ``start`` (counted over the whole fit)."""

    def __init__(self, start: int, count: int):
        self.start, self.count, self.batches, self.profiler, self.wall = start, count, -1, None, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches += 1
        if self.batches == self.start:
            bench.sync(pl_module.device)
            self.profiler, self.t0 = cProfile.Profile(), time.perf_counter()
            self.profiler.enable()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.profiler is not None and self.batches == self.start + self.count - 1:
            bench.sync(pl_module.device)
            self.profiler.disable()
            self.wall = time.perf_counter() - self.t0


def profile_lightning(args) -> None:
    """The Lightning search's and retrain's steps under cProfile, with their unprofiled step times."""
    bench_args = bench.main_args(
        ["single", "--epoch_steps", str(args.steps), "--batch", str(args.batch)]
        + ["--frames", str(args.frames), "--dim", str(args.dim)]
    )
    bench_args.cuda_graphs = args.cuda_graphs
    search_steps = bench.GPUBatches(bench_args, True, bench_args.epoch_steps).steps
    # epoch 0 warm-up; search epoch 1 still captures graphs; epoch 2 timed; epoch 3 profiled
    timer, probe = bench.Timer(), CProfileSteps(3 * search_steps, search_steps)
    bench.fit_search(bench_args, 4, 1, 3, [timer, probe])
    print(
        f"\n## Lightning search: {1e3 * timer.epochs[2] / search_steps:.2f} ms per step unprofiled, "
        f"{1e3 * probe.wall / search_steps:.2f} profiled"
    )
    print_stats(probe.profiler, args.top)
    count = min(10, search_steps)
    torch_probe = bench.BusyProbe(2 * search_steps, count, cpu_table=args.top)
    bench.fit_search(bench_args, 4, 1, 2, [torch_probe])
    print(f"### torch.profiler, {count} search steps: {torch_probe.result}\n{torch_probe.table}")
    timer, probe = bench.Timer(), CProfileSteps(2 * args.steps, args.steps)
    bench.fit_retrain(bench_args, 3, [timer, probe])
    print(
        f"\n## Lightning retrain: {1e3 * timer.epochs[1] / args.steps:.2f} ms per step unprofiled, "
        f"{1e3 * probe.wall / args.steps:.2f} profiled"
    )
    print_stats(probe.profiler, args.top)


def profile(name: str, step_fn, steps: int, top: int) -> None:
    for i in range(3):
        step_fn(i)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step_fn(i)
    torch.cuda.synchronize()
    wall_ms = 1e3 * (time.perf_counter() - start) / steps
    kernels = kernels_per_step(step_fn, steps)
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(steps):
        step_fn(i)
    torch.cuda.synchronize()
    profiler.disable()
    print(
        f"\n## {name}: {wall_ms:.2f} ms per step, {kernels:.0f} kernels per step "
        f"({1e3 * wall_ms / max(kernels, 1):.1f} us of host per kernel)"
    )
    print_stats(profiler, top)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=800)
    parser.add_argument("--dim", type=int, default=640)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--cuda_graphs", action="store_true", help="replay the ops as CUDA graphs")
    parser.add_argument("--lightning", action="store_true", help="profile the Lightning search and retrain")
    args = parser.parse_args(argv)
    bench.CUDA_GRAPHS = args.cuda_graphs
    if args.lightning:
        profile_lightning(args)
        return 0
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    bf16 = args.precision == "bf16"
    batches = [bench.make_batch(args.batch, args.frames, device, seed) for seed in range(2)]
    derived_step, _ = bench.derived_stepper(
        bench.derived_spec(bench.TYPICAL, args.dim), batches, bf16, device
    )
    profile("derived typical", derived_step, args.steps, args.top)
    step, _ = bench.relaxation_stepper(SearchSpace(bench.space_dict(4, args.dim)), batches, bf16, device)
    for phase in ("weight", "arch"):
        profile(f"st {phase}", lambda i, p=phase: step(i, f"st {p}"), args.steps, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
