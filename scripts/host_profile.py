"""Where the host's time goes in one training step, when the step is bound by the host.

At batch 32 x 8 s the GPU finishes a step's kernels faster than Python issues them. This runs the
bench's bare steps (derived model, ST weight, ST arch; bf16) under cProfile and prints, per step:
the wall time, the kernels launched (torch.profiler) and the Python functions with the most time
of their own. One device call: ``python3 scripts/host_profile.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

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
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    print(
        f"\n## {name}: {wall_ms:.2f} ms per step, {kernels:.0f} kernels per step "
        f"({1e3 * wall_ms / max(kernels, 1):.1f} us of host per kernel)"
    )
    body = text.getvalue()
    print(body[body.find("   ncalls") :].replace(str(Path.cwd()) + "/", ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=800)
    parser.add_argument("--dim", type=int, default=640)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--cuda_graphs", action="store_true", help="replay the ops as CUDA graphs")
    args = parser.parse_args(argv)
    bench.CUDA_GRAPHS = args.cuda_graphs
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
        profile(f"st {phase}", lambda i, p=phase: step(i, "st", False, p), args.steps, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
