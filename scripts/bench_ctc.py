"""CTC loss on the GPU: PyTorch's against the Triton kernels, on the search bench's shapes.

Prints, per implementation: the forward + backward time with the GPU given a full queue (median of
CUDA-event timings), the host time to issue one call (what a host-bound step pays), the host
syncs per call (``torch.cuda.set_sync_debug_mode``), and the loss and logit-gradient differences
between the two. One device call: ``python3 scripts/bench_ctc.py``.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
import warnings

import torch

import supernet.accel.ctc_triton  # noqa: F401  (registers the Triton CTC with losses.ctc)
from losses.ctc import ctc_loss


def make_inputs(batch: int, frames: int, vocab: int, units: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, vocab, generator=gen)
    lengths = torch.randint(frames * 3 // 4, frames + 1, (batch,), generator=gen)
    lengths[0] = frames
    labels = torch.randint(units // 2, units + 1, (batch,), generator=gen)
    labels[0] = units
    targets = torch.randint(1, vocab, (batch, units), generator=gen)
    return logits.cuda(), lengths, targets.cuda(), labels


def loss_and_grad(implementation, logits, lengths, targets, labels):
    logits = logits.detach().requires_grad_()
    host = (lengths, labels) if implementation == "torch" else None
    loss = ctc_loss(
        logits.log_softmax(-1),
        lengths.cuda(non_blocking=True),
        targets,
        labels.cuda(non_blocking=True),
        host_lengths=host,
        implementation=implementation,
    )
    loss.backward()
    return loss.detach(), logits.grad


def count_syncs(fn) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def time_gpu(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_host(fn, repeats: int) -> float:
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    torch.cuda.synchronize()
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=267, help="output frames (800 input frames / 3)")
    parser.add_argument("--vocab", type=int, default=40)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    inputs = make_inputs(args.batch, args.frames, args.vocab, args.units)
    results, outputs = [], {}
    for implementation in ("torch", "triton"):
        call = functools.partial(loss_and_grad, implementation, *inputs)
        for _ in range(3):
            outputs[implementation] = call()  # compile, warm the allocator
        results.append(
            {
                "implementation": implementation,
                "gpu_ms": time_gpu(call, args.repeats),
                "host_ms": time_host(call, args.repeats),
                "syncs": count_syncs(call),
            }
        )
    (loss_t, grad_t), (loss_k, grad_k) = outputs["torch"], outputs["triton"]
    diff = {
        "loss_torch": loss_t.item(),
        "loss_triton": loss_k.item(),
        "grad_max_abs_diff": (grad_t - grad_k).abs().max().item(),
        "grad_max_abs": grad_t.abs().max().item(),
    }
    print(f"{torch.cuda.get_device_name()}  batch {args.batch} x {args.frames} frames, {args.units} labels")
    print("| CTC | fwd+bwd GPU ms | host ms per call | host syncs |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['implementation']} | {r['gpu_ms']:.3f} | {r['host_ms']:.3f} | {r['syncs']} |")
    print(json.dumps(diff))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results, "agreement": diff}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
