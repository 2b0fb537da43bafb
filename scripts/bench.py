"""GPU benchmark of the search: step time, peak memory and throughput per relaxation, against the
derived model, on the ST-NAS WSJ super-network shape; then a whole short search against a retrain.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 scripts/bench.py single --out $OUT/bench.json
    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 scripts/bench.py ddp --devices 2 --out $OUT/ddp2.json

Shape: 6 searching blocks of TDNN candidates (4: tdnn-k{3,5}-d{1,2}; 8: add k7-d{1,2}, k3-d3,
k5-d3), hidden 640, a stride-3 TDNN after block 3, batch 32 x 800 frames of 80-d fbank (8 s
utterances), CTC over a 70-token vocabulary. Each relaxation's step is the search's own
(``supernet.search.step.SearchStep``: its ``arch_step``/``weight_step``, as ``SearchModule`` runs
them) without Lightning, so each step is timed alone; ``single`` also times the real Lightning
search (``SearchModule``, with its warm-up epochs) against a retrain of the derived model
(``ASRModule``) on batches kept on the GPU, profiles how busy the GPU is during the search and
counts the host syncs of a search step (``torch.cuda.set_sync_debug_mode``). ``--legacy_tdnn``
re-times the derived and ST arch steps with the pre-channels-last TDNN forward in the same process
(an A/B on one host); ``--kernels`` splits each step's GPU time by kernel kind. ``ddp`` runs that
search on ``--devices`` GPUs under ``SearchDDPStrategy`` (one process per GPU, launched by
Lightning) and reports throughput and whether every rank ended with the same weights and alphas.

For single-path relaxations (st, gumbel hard) the alphas are peaked on the "typical" derived path,
so the path the sampler draws is that path and the ratio to the derived model is like for like.
Imports only ``ops``, ``losses`` and ``supernet`` modules with no wandb/jiwer.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import pytorch_lightning as pl
import torch

from losses.ctc import ctc_loss
from ops.tdnn import TDNN
from supernet.accel.cuda_graphs import use_cuda_graphs
from supernet.accel.ddp import SearchDDPStrategy
from supernet.archspec import ArchSpec
from supernet.asr_module import ASRModule, ctc_host_lengths
from supernet.data.tokenizer import BLANK, UNKNOWN
from supernet.derived import DerivedNet
from supernet.latency import HardwareObjective
from supernet.search.arch_params import ArchParams
from supernet.search.module import SearchModule
from supernet.search.network import Supernet
from supernet.search.relaxations import build
from supernet.search.step import SearchStep
from supernet.space import SearchSpace

CANDIDATES = {
    4: ["tdnn-k3-d1", "tdnn-k3-d2", "tdnn-k5-d1", "tdnn-k5-d2"],
    8: [
        "tdnn-k3-d1",
        "tdnn-k3-d2",
        "tdnn-k5-d1",
        "tdnn-k5-d2",
        "tdnn-k7-d1",
        "tdnn-k7-d2",
        "tdnn-k3-d3",
        "tdnn-k5-d3",
    ],
}
TYPICAL = [
    "tdnn-k3-d1",
    "tdnn-k5-d2",
    "tdnn-k3-d2",
    "tdnn-k5-d1",
    "tdnn-k3-d2",
    "tdnn-k5-d2",
]  # mean kernel 4
LARGEST = {4: ["tdnn-k5-d2"] * 6, 8: ["tdnn-k7-d2"] * 6}
VOCAB = [BLANK, UNKNOWN] + [chr(0x4E00 + i) for i in range(68)]  # 70 tokens, as a WSJ character set
FRAME_RATE = 100
# bf16 dense tensor-core peaks (TFLOP/s) from the datasheets: SXM parts; PCIe H100 756. TF32 (the
# fp32 rows, TF32 on) is half of it.
PEAK_BF16 = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0}
GUMBEL = {"tau_start": 1.0}  # the temperature stays at tau_start: no schedule runs in a bare step
SOFT, HARD = GUMBEL, {**GUMBEL, "hard": True}
# (name, method, method_options, phase): a row of the per-step table, one SearchStep phase
RELAXATIONS = [
    ("darts weight", "darts", {}, "weight"),
    ("darts arch", "darts", {}, "arch"),
    ("gumbel soft weight", "gumbel", SOFT, "weight"),
    ("gumbel soft arch", "gumbel", SOFT, "arch"),
    ("gumbel hard weight", "gumbel", HARD, "weight"),
    ("gumbel hard arch", "gumbel", HARD, "arch"),
    ("st weight", "st", {}, "weight"),
    ("st arch", "st", {}, "arch"),
    ("uniform", "uniform", {}, "weight"),
]


# --- the TDNN before the channels-last rewrite, for a same-run A/B -------------------------------
def legacy_tdnn_forward(self, x, lengths):
    """``ops.tdnn.TDNN.forward`` before the channels-last rewrite (now its CPU path)."""
    return TDNN.forward_channels_first(self, x, lengths)


@contextlib.contextmanager
def tdnn_impl(legacy: bool):
    """Run every TDNN with the legacy forward inside the block (same modules, same parameters)."""
    current = TDNN.forward
    if legacy:
        TDNN.forward = legacy_tdnn_forward
    try:
        yield
    finally:
        TDNN.forward = current


# --- shapes -------------------------------------------------------------------------------
def space_dict(k: int, dim: int) -> dict:
    block = CANDIDATES[k]
    layers = [{"name": f"block{i}", "choice": block} for i in (1, 2, 3)]
    layers += ["tdnn-k3-d1-s3"] + [{"name": f"block{i}", "choice": block} for i in (4, 5, 6)]
    return stnas_fields(f"stnas_wsj_k{k}", dim, layers)


def derived_spec(path: list[str], dim: int) -> ArchSpec:
    layers = path[:3] + ["tdnn-k3-d1-s3"] + path[3:]
    return ArchSpec.from_dict(stnas_fields("derived", dim, layers))


def stnas_fields(name: str, dim: int, layers: list) -> dict:
    """The ST-NAS WSJ layout's fixed fields around ``layers`` (choices or op specs)."""
    return {
        "name": name,
        "features": "fbank",
        "feature_dim": 80,
        "dim": dim,
        "input": "linear",
        "layers": layers,
        "head": "linear",
        "dropout": 0.1,
    }


def make_batch(batch: int, frames: int, device, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    units = max(2, frames // 8)  # ~100 tokens in 8 s, well under the 267 output frames
    return {
        "features": torch.randn(batch, frames, 80, generator=gen).to(device),
        "feature_lengths": torch.full((batch,), frames, dtype=torch.long).to(device),
        "targets": torch.randint(2, len(VOCAB), (batch, units), generator=gen).to(device),
        "target_lengths": torch.full((batch,), units, dtype=torch.long).to(device),
        # as SpeechDataModule hands them over: the lengths CTC needs, kept on the host
        "host_lengths": {"features": [frames] * batch, "targets": [units] * batch},
    }


# --- the loss and the derived model's step, as ASRModule runs it ------------------------------
CTC_IMPLEMENTATION = "auto"  # --ctc: "auto" (Triton on the GPU) or "torch" (PyTorch's CUDA CTC)
CUDA_GRAPHS = False  # --cuda_graphs: every network here replays its ops as CUDA graphs


def loss_of(net, batch, bf16: bool):
    with torch.autocast(batch["features"].device.type, dtype=torch.bfloat16, enabled=bf16):
        # a new lengths tensor every step, as each batch brings (the ops' masks are made per tensor)
        log_probs, lengths = net(batch["features"], batch["feature_lengths"].clone())
        host_lengths = ctc_host_lengths(batch, net, CTC_IMPLEMENTATION, log_probs.device)
        return ctc_loss(
            log_probs,
            lengths,
            batch["targets"],
            batch["target_lengths"],
            host_lengths=host_lengths,
            implementation=CTC_IMPLEMENTATION,
        )


def clip_gradients(opt) -> None:
    """Clip the optimizer's parameters, as Lightning's ``clip_gradients`` takes them (what
    ``SearchModule`` and ``ASRModule`` clip with): walking a supernet's modules for its parameters
    every step would cost the host ~1 ms the module never spends."""
    params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
    torch.nn.utils.clip_grad_norm_(params, 5.0)


def derived_step(net, opt, batch, bf16: bool) -> None:
    """One training step of a derived model (no search): forward, CTC, backward, clip, AdamW."""
    loss = loss_of(net, batch, bf16)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(opt)
    opt.step()


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(step_fn, device, warmup: int, steps: int, graphs=None) -> dict:
    """Median wall time of ``step_fn(i)`` (synchronised), and the peak memory of one step; with
    CUDA graphs (``graphs``, the network's ``OpGraphs``), also what they hold: their pools, which
    ``max_memory_allocated`` does not see while replays use them, and their buffers."""
    for i in range(warmup):
        step_fn(i)
    sync(device)
    resident = peak = 0
    if device.type == "cuda":
        resident = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup, warmup + steps):
        start = time.perf_counter()
        step_fn(i)
        sync(device)
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    held = graphs.memory_bytes() if graphs is not None else {"pools": 0, "buffers": 0}
    return {
        "ms": 1e3 * statistics.median(times),
        "ms_min": 1e3 * min(times),
        "peak_gib": peak / 2**30,
        "resident_gib": resident / 2**30,
        "graph_pools_gib": held["pools"] / 2**30,
        "graph_buffers_gib": held["buffers"] / 2**30,
    }


def adamw(params):
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, foreach=True)


def fill_adam_state(opt, params) -> None:
    """Give every parameter its AdamW state, as after a warm-up that visited every candidate."""
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)


def peak_tflops(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in ("H100 PCIe", "H100", "H200"):
        if key in name:
            return PEAK_BF16[key]
    return None


# --- the per-step table --------------------------------------------------------------------
def bench_steps(args, device, rows: list) -> None:
    batch_size, frames, dim = args.batch, args.frames, args.dim
    audio_s = batch_size * frames / FRAME_RATE
    batches = [make_batch(batch_size, frames, device, seed) for seed in range(2)]
    peak = peak_tflops(device)

    def record(name, k, precision, result, params, spec=None, **extra):
        row = step_row(name, k, precision, result, params, audio_s, **extra)
        if spec is not None:
            add_mfu(row, spec, audio_s, peak)
        rows.append(row)
        print(
            f"  {name:22s} k={k} {precision:5s} {result['ms']:8.2f} ms  {result['peak_gib']:6.2f} GiB  "
            f"{row['audio_s_per_s']:9.0f} s/s",
            flush=True,
        )

    for k in args.candidates:
        space = SearchSpace(space_dict(k, dim))
        for precision in args.precisions:
            bf16 = precision == "bf16"
            derived = [("derived typical", TYPICAL, False), ("derived largest", LARGEST[k], False)]
            if args.legacy_tdnn:
                derived.append(("derived typical (legacy tdnn)", TYPICAL, True))
            for label, path, legacy in derived:
                spec = derived_spec(path, dim)
                with tdnn_impl(legacy):
                    result, params = time_derived(spec, batches, bf16, args, device)
                record(label, k, precision, result, params, spec, path=path)
            for label, result, params, single in time_relaxations(space, batches, bf16, args, device):
                record(label, k, precision, result, params, derived_spec(TYPICAL, dim) if single else None)
            if args.legacy_tdnn and "st arch" in args.relaxations:
                with tdnn_impl(True):
                    timed = list(time_relaxations(space, batches, bf16, args, device, only=("st arch",)))
                for label, result, params, _ in timed:
                    record(f"{label} (legacy tdnn)", k, precision, result, params, derived_spec(TYPICAL, dim))
            if device.type == "cuda":
                torch.cuda.empty_cache()


def bench_interleaved(args, device, out: dict) -> None:
    """ST step / derived step time ratios from rounds that alternate the three steps.

    The hosts of these machines drift by 30-50% over a minute at batch 32, where the steps are
    bound by the host; timing each step in its own stretch makes the ratios follow the drift. Each
    round times ``--steps`` of every step back to back, in an order that rotates, and the ratios
    are taken within the round: the median over rounds, and the range."""
    out["interleaved"] = {}
    for precision in args.precisions:
        ratios, rounds = interleaved_ratios(args, device, precision == "bf16")
        out["interleaved"][precision] = {
            "rounds": rounds,
            **{f"{name} ratio": statistics.median(v) for name, v in ratios.items()},
            **{f"{name} ratio range": [v[0], v[-1]] for name, v in ratios.items()},
        }
        summary = ", ".join(
            f"{name} {statistics.median(v):.2f}x ({v[0]:.2f}-{v[-1]:.2f})" for name, v in ratios.items()
        )
        print(f"  interleaved {precision}: {summary} over {args.interleave} rounds", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def interleaved_ratios(args, device, bf16: bool) -> tuple[dict, list]:
    batches = [make_batch(args.batch, args.frames, device, seed) for seed in range(2)]
    derived_step, _ = derived_stepper(derived_spec(TYPICAL, args.dim), batches, bf16, device)
    st_step, _ = relaxation_stepper(
        SearchSpace(space_dict(args.candidates[0], args.dim)), batches, bf16, device
    )
    steps = {
        "derived": derived_step,
        "st weight": lambda i: st_step(i, "st weight"),
        "st arch": lambda i: st_step(i, "st arch"),
    }
    names, rounds = list(steps), []
    for r in range(args.interleave):
        order = names[r % len(names) :] + names[: r % len(names)]
        rounds.append({name: measure(steps[name], device, 1, args.steps)["ms"] for name in order})
    ratios = {name: sorted(row[name] / row["derived"] for row in rounds) for name in names[1:]}
    return ratios, rounds


def step_row(name: str, k: int, precision: str, result: dict, params: int, audio_s: float, **extra) -> dict:
    """One row of the per-step table: ``measure``'s result, throughput and the issue's memory
    measure (the step's own peak above what was resident, plus the stepped network's fp32
    parameters)."""
    return {
        "name": name,
        "candidates": k,
        "precision": precision,
        **result,
        "params": params,
        "audio_s_per_s": audio_s / (result["ms"] / 1e3),
        # with CUDA graphs, their pools and buffers too (the buffers are part of the resident)
        "step_mem_gib": result["peak_gib"]
        - result["resident_gib"]
        + 4 * params / 2**30
        + result.get("graph_pools_gib", 0)
        + result.get("graph_buffers_gib", 0),
        **extra,
    }


def derived_stepper(spec: ArchSpec, batches: list, bf16: bool, device, compile_: bool = False):
    """``(step(i), params)``: one training step of the derived model on batch ``i % 2``, as
    ``ASRModule`` runs it (forward, CTC, backward, clip, AdamW); compiled when ``compile_``."""
    torch.manual_seed(0)
    net = DerivedNet(spec, len(VOCAB)).to(device).train()
    graphs = use_cuda_graphs(net, CUDA_GRAPHS and not compile_)
    opt = adamw(net.parameters())
    model = torch.compile(net) if compile_ else net

    def step(i):
        derived_step(model, opt, batches[i % 2], bf16)

    step.graphs = graphs
    return step, sum(p.numel() for p in net.parameters())


def time_derived(spec: ArchSpec, batches: list, bf16: bool, args, device, compile_: bool = False):
    """``measure`` of the derived model's step, and the time of its first step (the compile)."""
    step, params = derived_stepper(spec, batches, bf16, device, compile_)
    start = time.perf_counter()
    step(0)
    sync(device)
    first_s = time.perf_counter() - start
    result = measure(step, device, args.warmup, args.steps, step.graphs)
    return {**result, "first_step_s": first_s}, params


def add_mfu(row: dict, spec: ArchSpec, audio_s: float, peak: float | None) -> None:
    """Model FLOPs (forward + backward = 3 forwards, a multiply-add = 2 FLOPs) of a step, and their
    rate against the dense tensor-core peak of the row's precision (bf16; TF32 for fp32 = half)."""
    row["flops_per_step"] = spec.flops_per_second() * 2 * 3 * audio_s
    if peak:
        rate = row["flops_per_step"] / (row["ms"] / 1e3)
        row["mfu_bf16_peak"] = rate / (peak * 1e12)
        row["mfu"] = rate / (peak * 1e12 * (1.0 if row["precision"] == "bf16" else 0.5))


def relaxation_stepper(space: SearchSpace, batches: list, bf16: bool, device):
    """``(step(i, name), supernet params)``: step ``i`` of the ``RELAXATIONS`` row ``name``, the
    search's own ``SearchStep.arch_step`` or ``weight_step`` (no penalty), on a supernet whose
    alphas draw the typical path, with every parameter's AdamW state in place."""
    torch.manual_seed(0)
    net = Supernet(space, len(VOCAB)).to(device).train()
    graphs = use_cuda_graphs(net, CUDA_GRAPHS)
    arch = ArchParams(space.edges, seed=0).to(device)
    with torch.no_grad():
        for i, choice in enumerate(space.choices):
            arch.alphas[choice.name][list(choice.candidates).index(TYPICAL[i])] = (
                30.0  # draw the typical path
            )
    opt = adamw(net.parameters())
    fill_adam_state(opt, list(net.parameters()))
    arch_opt = torch.optim.Adam(arch.parameters(), lr=1e-3, betas=(0.5, 0.999))
    objective = HardwareObjective.from_options(space, len(VOCAB))  # penalty "none"
    loss_fn = functools.partial(loss_of, net, bf16=bf16)
    rows = {
        name: (SearchStep(net, arch, build(method, options), objective, loss_fn, clip=clip_gradients), phase)
        for name, method, options, phase in RELAXATIONS
    }
    # as SearchModule, one read of the alphas a step (ST's): an arch row reads them before each of
    # its steps (the copy its last update started); a weight row reuses one read, since weight
    # steps never change the alphas, and reads nothing itself
    weight_probs = {name: search.host_probs() for name, (search, phase) in rows.items() if phase == "weight"}

    def step(i, name):
        search, phase = rows[name]
        if phase == "arch":
            search.arch_step(batches[i % 2], i, arch_opt, search.host_probs())
        else:
            search.weight_step(batches[i % 2], i, opt, weight_probs[name])

    step.graphs = graphs
    return step, sum(p.numel() for p in net.parameters())


def time_relaxations(space: SearchSpace, batches: list, bf16: bool, args, device, only=None):
    """``(label, result, supernet params, single path)`` of each relaxation's weight or arch step."""
    step, params = relaxation_stepper(space, batches, bf16, device)
    for label, method, options, _ in RELAXATIONS:
        if label not in (only or args.relaxations):
            continue
        result = measure(lambda i, n=label: step(i, n), device, args.warmup, args.steps, step.graphs)
        yield label, result, params, method == "st" or options.get("hard", False)


# --- where the GPU time goes ---------------------------------------------------------------
KERNEL_KINDS = (  # first match wins; names of cuDNN / cuBLAS / ATen kernels
    ("ctc", ("ctc",)),
    ("conv", ("conv", "xmma", "implicit", "dgrad", "wgrad", "fprop", "nhwc", "nchw")),
    ("gemm", ("gemm", "cutlass", "sm90", "cublas")),
    ("norm", ("layer_norm", "batch_norm", "LayerNorm", "welford")),
    ("optimizer", ("multi_tensor", "foreach", "adam")),
    ("reduce", ("reduce",)),
    ("copy/layout", ("copy", "transpose", "pad", "cat", "Memcpy", "memcpy")),
)


def kernel_kind(name: str) -> str:
    low = name.lower()
    for kind, keys in KERNEL_KINDS:
        if any(k.lower() in low for k in keys):
            return kind
    return "elementwise/other"


def kernel_profile(step_fn, device, steps: int = 5, top: int = 8) -> dict:
    """GPU time per step by kernel kind and the top kernels, over ``steps`` profiled steps."""
    if device.type != "cuda":
        return {}
    for i in range(3):
        step_fn(i)
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for i in range(3, 3 + steps):
            step_fn(i)
        torch.cuda.synchronize()
    names: dict[str, list] = {}
    for evt in prof.events():
        if is_gpu_work(evt):
            entry = names.setdefault(evt.name, [0.0, 0])
            entry[0] += evt.time_range.end - evt.time_range.start
            entry[1] += 1
    total = sum(t for t, _ in names.values()) or 1.0
    kinds: dict[str, float] = {}
    for name, (t, _) in names.items():
        kinds[kernel_kind(name)] = kinds.get(kernel_kind(name), 0.0) + t
    busy = gpu_busy(prof)
    return {
        **busy,
        "gpu_ms_per_step": total / 1e3 / steps,
        "kernels_per_step": sum(n for _, n in names.values()) / steps,
        "by_kind_ms_per_step": {k: t / 1e3 / steps for k, t in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "top": [
            {"kernel": name[:100], "ms_per_step": t / 1e3 / steps, "calls_per_step": n / steps}
            for name, (t, n) in sorted(names.items(), key=lambda kv: -kv[1][0])[:top]
        ],
    }


def bench_kernels(args, device, out: dict) -> None:
    """Kernel breakdown of the derived step (new and legacy TDNN) and of the ST steps, bf16 and fp32."""
    batches = [make_batch(args.batch, args.frames, device, seed) for seed in range(2)]
    spec = derived_spec(TYPICAL, args.dim)
    space = SearchSpace(space_dict(args.candidates[0], args.dim))
    result = {}
    for precision in args.precisions:
        bf16 = precision == "bf16"
        for legacy in (False, True) if args.legacy_tdnn else (False,):
            with tdnn_impl(legacy):
                name = f"derived typical{' (legacy tdnn)' if legacy else ''} {precision}"
                result[name] = kernel_profile(derived_stepper(spec, batches, bf16, device)[0], device)
        step, _ = relaxation_stepper(space, batches, bf16, device)
        for phase in ("weight", "arch"):
            result[f"st {phase} {precision}"] = kernel_profile(
                lambda i, p=phase, f=step: f(i, f"st {p}"), device
            )
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out["kernels"] = result
    for name, r in result.items():
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in r.get("by_kind_ms_per_step", {}).items())
        print(
            f"  {name:34s} GPU {r.get('gpu_ms_per_step', 0):6.2f} ms/step, busy {r.get('gpu_busy', 0):.0%}, "
            f"{r.get('kernels_per_step', 0):.0f} kernels: {kinds}",
            flush=True,
        )


def bench_compiled(args, device, rows: list) -> None:
    """The typical derived model under ``torch.compile`` (default mode), beside its eager figures."""
    audio_s = args.batch * args.frames / FRAME_RATE
    batches = [make_batch(args.batch, args.frames, device, seed) for seed in range(2)]
    spec = derived_spec(TYPICAL, args.dim)
    peak = peak_tflops(device)
    for precision in args.precisions:
        result, params = time_derived(spec, batches, precision == "bf16", args, device, compile_=True)
        row = step_row("derived typical compiled", 0, precision, result, params, audio_s)
        add_mfu(row, spec, audio_s, peak)
        rows.append(row)
        print(
            f"  compiled {precision}: {result['ms']:.2f} ms ({row['audio_s_per_s']:.0f} s/s), "
            f"first step {result['first_step_s']:.0f} s",
            flush=True,
        )


# --- the Lightning runs ------------------------------------------------------------------
def fresh(batch: dict) -> dict:
    """The batch with a new lengths tensor, as a transfer makes for every real batch: the ops' masks
    are made once per lengths tensor, and reusing one tensor for every step would skip them."""
    return {**batch, "feature_lengths": batch["feature_lengths"].clone()}


class GPUBatches:
    """``steps`` batches a epoch, made once on this rank's device (features need no transfer)."""

    def __init__(self, args, search: bool, steps: int):
        self.args, self.search, self.batches = args, search, None
        # the search trains the weights on (1 - arch_fraction) of the corpus, the retrain on all of it
        self.steps = max(1, round(steps * (1 - args.arch_fraction))) if search else steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        if self.batches is None:
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
            rank = int(os.environ.get("LOCAL_RANK", 0)) + 100 * int(os.environ.get("NODE_RANK", 0))
            self.batches = [
                make_batch(self.args.batch, self.args.frames, device, 10 * rank + s) for s in range(4)
            ]
        for i in range(self.steps):
            b = self.batches
            yield {"train": fresh(b[i % 2]), "arch": fresh(b[2 + i % 2])} if self.search else fresh(b[i % 2])


class Timer(pl.Callback):
    """Epoch wall times (synchronised) and the host time spent waiting between batches."""

    def __init__(self):
        self.epochs, self.wait, self.busy_cpu, self._last = [], 0.0, 0.0, None

    def on_train_epoch_start(self, trainer, pl_module):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._epoch_start, self._last = time.perf_counter(), None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.perf_counter()
        if self._last is not None:
            self.wait += now - self._last
        self._batch_start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._last = time.perf_counter()
        self.busy_cpu += self._last - self._batch_start

    def on_train_epoch_end(self, trainer, pl_module):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.epochs.append(time.perf_counter() - self._epoch_start)


class BusyProbe(pl.Callback):
    """Profiles ``count`` training steps from ``start`` and keeps the fraction of wall time in which
    a GPU kernel or copy ran (union of their intervals over the window's span)."""

    def __init__(self, start: int, count: int, cpu_table: int = 0):
        self.start, self.count, self.prof, self.result = start, count, None, {}
        self.cpu_table, self.table = cpu_table, ""  # cpu_table > 0: keep that many ops by host self time

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches = getattr(self, "batches", -1) + 1
        if self.batches == self.start and torch.cuda.is_available():
            torch.cuda.synchronize()
            acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            self.prof = torch.profiler.profile(activities=acts)
            self.prof.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.prof is None or self.batches < self.start + self.count - 1:
            return
        self._stop()

    def on_train_end(self, trainer, pl_module):
        if self.prof is not None:  # the fit ended inside the window: keep what was profiled
            self._stop()

    def _stop(self):
        torch.cuda.synchronize()
        self.prof.stop()
        try:
            self.result = gpu_busy(self.prof)
            if self.cpu_table:
                averages = self.prof.key_averages()
                self.table = averages.table(sort_by="self_cpu_time_total", row_limit=self.cpu_table)
        except Exception as err:  # the profiler's event API moves between releases
            self.result = {"error": repr(err)}
        self.prof = None


class SyncProbe(pl.Callback):
    """Counts the CUDA calls that synchronise with the host (``torch.cuda.set_sync_debug_mode``) in
    ``count`` training steps from ``start``, by call site: the innermost frame of this repository
    and the innermost frame of all."""

    OURS = ("/supernet/", "/ops/", "/losses/", "/callbacks/", "/scripts/")

    def __init__(self, start: int, count: int):
        self.start, self.count, self.batches, self.sites, self.filters = start, count, -1, Counter(), None

    def _record(self, message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return
        stack = traceback.extract_stack()[:-1]
        ours = [f for f in stack if any(d in f.filename for d in self.OURS) and "bench.py" not in f.filename]
        here = f"{ours[-1].filename.split('/main/')[-1]}:{ours[-1].lineno} {ours[-1].line}" if ours else "?"
        self.sites[f"{here}  <-  {filename.split('site-packages/')[-1]}:{lineno}"] += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches += 1
        if self.batches == self.start and torch.cuda.is_available():
            self.filters = warnings.catch_warnings()
            self.filters.__enter__()
            warnings.simplefilter("always")
            warnings.showwarning = self._record
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.filters is not None and self.batches == self.start + self.count - 1:
            torch.cuda.set_sync_debug_mode(0)
            self.filters.__exit__(None, None, None)
            self.filters = None

    @property
    def result(self) -> dict:
        return {site: n / self.count for site, n in self.sites.most_common()}


def is_gpu_work(evt) -> bool:
    """A kernel, copy or memset on the GPU timeline; not a user annotation (``Optimizer.step#...``
    spans every kernel of ``optimizer.step(closure)``, idle gaps included: counting it made the
    automatically optimised retrain look 95% busy)."""
    if evt.device_type != torch.autograd.DeviceType.CUDA or getattr(evt, "is_user_annotation", False):
        return False
    return not evt.name.startswith(("Optimizer.", "ProfilerStep", "## "))


HOST_WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def gpu_busy(prof) -> dict:
    gpu, span, nccl_us, host_wait_us = [], [float("inf"), 0.0], 0.0, 0.0
    for evt in prof.events():
        start, end = evt.time_range.start, evt.time_range.end
        span = [min(span[0], start), max(span[1], end)]
        if is_gpu_work(evt):
            gpu.append((start, end))
            if "nccl" in evt.name.lower():  # collectives: partly waiting for the other ranks
                nccl_us += end - start
        elif evt.name in HOST_WAITS:
            host_wait_us += end - start
    gpu.sort()
    busy, cur_start, cur_end = 0.0, None, None
    for start, end in gpu:
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                busy += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        busy += cur_end - cur_start
    return {
        "gpu_busy": busy / max(1e-9, span[1] - span[0]),
        "kernels": len(gpu),
        "span_ms": (span[1] - span[0]) / 1e3,
        "nccl_ms": nccl_us / 1e3,
        "host_wait_ms": host_wait_us / 1e3,
    }


def gpu_ms_per_step(result: dict, steps: int) -> float | None:
    """GPU work per profiled step from a ``BusyProbe`` result (None if the profile failed)."""
    return result["gpu_busy"] * result["span_ms"] / steps if "gpu_busy" in result else None


def trainer_for(args, epochs: int, callbacks: list, devices: int = 1, strategy="auto") -> pl.Trainer:
    return pl.Trainer(
        accelerator="auto",
        devices=devices,
        strategy=strategy,
        max_epochs=epochs,
        precision="bf16-mixed",
        gradient_clip_val=None,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        benchmark=True,
    )


def search_module(args, k: int, warmup_epochs: int) -> SearchModule:
    # no latency table on a synthetic run: no penalty, and the cost logged is the expected size
    model = SearchModule(
        space_dict(k, args.dim),
        vocab=VOCAB,
        method="st",
        method_options={"sample_ahead": args.sample_ahead},
        warmup_epochs=warmup_epochs,
        warmup_steps=10,
        seed=0,
        penalty_target="params",
        cuda_graphs=CUDA_GRAPHS,
    )
    model.ctc_implementation = CTC_IMPLEMENTATION
    return model


def fit_search(
    args, k: int, warmup_epochs: int, search_epochs: int, callbacks: list, devices=1, strategy="auto"
):
    model = search_module(args, k, warmup_epochs)
    trainer = trainer_for(args, warmup_epochs + search_epochs, callbacks, devices, strategy)
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=GPUBatches(args, search=True, steps=args.epoch_steps))
    return time.perf_counter() - start, model, trainer


def fit_retrain(args, epochs: int, callbacks: list) -> float:
    model = ASRModule(
        derived_spec(TYPICAL, args.dim).to_dict(), vocab=VOCAB, warmup_steps=10, cuda_graphs=CUDA_GRAPHS
    )
    model.ctc_implementation = CTC_IMPLEMENTATION
    trainer = trainer_for(args, epochs, callbacks)
    trainer.gradient_clip_val = 5.0  # as SearchModule clips
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=GPUBatches(args, search=False, steps=args.epoch_steps))
    return time.perf_counter() - start


def bench_search_vs_retrain(args, out: dict) -> None:
    """Warm-up + search (SearchModule, st, bf16) against retraining the typical derived model for as
    many epochs, each after one throwaway epoch (cudnn autotuning, allocator warm-up)."""
    w, s = args.warmup_epochs, args.search_epochs
    k = args.candidates[0]
    fit_search(args, k, 0, 1, [])
    fit_retrain(args, 1, [])
    search_timer = Timer()
    search_s, model, _ = fit_search(args, k, w, s, [search_timer])
    retrain_timer = Timer()
    retrain_s = fit_retrain(args, w + s, [retrain_timer])
    search_epoch_steps = GPUBatches(args, True, args.epoch_steps).steps
    # profiled apart (the profiler slows the steps it watches), in the second search epoch and the
    # second retrain epoch: the first ones still capture graphs (ST captures a whole edge's scores
    # per sampled candidate as it is first drawn), which would count as the steps' GPU work
    probe, retrain_probe = (
        BusyProbe(2 * search_epoch_steps + 2, args.profile_steps),
        BusyProbe(args.epoch_steps + 2, args.profile_steps),
    )
    fit_search(args, k, 1, 2, [probe])
    fit_retrain(args, 2, [retrain_probe])
    syncs = SyncProbe(2 * search_epoch_steps + 2, args.profile_steps)  # after the captures, too
    fit_search(args, k, 1, 2, [syncs])
    steps = (w + s) * search_epoch_steps

    def busy_unprofiled(result: dict, epochs: list, epoch_steps: int) -> float | None:
        """GPU work per step from the profile over the step time of the unprofiled run (a search
        epoch has ``search_epoch_steps`` steps, fewer than the retrain's: the held-out arch split)."""
        work_ms = gpu_ms_per_step(result, args.profile_steps)
        return None if work_ms is None else work_ms / (1e3 * statistics.median(epochs) / epoch_steps)

    out["search_vs_retrain"] = {
        "candidates": k,
        "warmup_epochs": w,
        "search_epochs": s,
        "steps_per_epoch": args.epoch_steps,
        "arch_fraction": args.arch_fraction,
        "search_steps_per_epoch": search_epoch_steps,
        "search_wall_s": search_s,
        "retrain_wall_s": retrain_s,
        "ratio": search_s / retrain_s,
        # the same ratio if the search's epochs were as long as the retrain's (no held-out split)
        "ratio_equal_epoch_steps": search_s / retrain_s * args.epoch_steps / search_epoch_steps,
        "search_epoch_s": search_timer.epochs,
        "retrain_epoch_s": retrain_timer.epochs,
        "ratio_epoch_sum": sum(search_timer.epochs) / sum(retrain_timer.epochs),
        "host_wait_fraction_search": search_timer.wait / max(1e-9, search_timer.wait + search_timer.busy_cpu),
        "audio_s_per_s_search_epoch": search_epoch_steps  # weight-step audio; the arch batches' not counted
        * args.batch
        * args.frames
        / FRAME_RATE
        / statistics.median(search_timer.epochs[w:]),
        "profile": probe.result,
        "profile_retrain": retrain_probe.result,
        "gpu_busy_unprofiled_search": busy_unprofiled(
            probe.result, search_timer.epochs[w + 1 :] or search_timer.epochs[w:], search_epoch_steps
        ),
        "gpu_busy_unprofiled_retrain": busy_unprofiled(
            retrain_probe.result, retrain_timer.epochs, args.epoch_steps
        ),
        "syncs_per_search_step": syncs.result,
        "search_steps": int(model.search_step),
        "expected_steps": steps,
    }
    r = out["search_vs_retrain"]
    print(
        f"  search {search_s:.1f} s vs retrain {retrain_s:.1f} s: {r['ratio']:.2f}x (epoch sums "
        f"{r['ratio_epoch_sum']:.2f}x); GPU busy (profiled) search {probe.result.get('gpu_busy', 0):.0%}, "
        f"retrain {retrain_probe.result.get('gpu_busy', 0):.0%}; GPU work / unprofiled step time: search "
        f"{r['gpu_busy_unprofiled_search'] or 0:.0%}, retrain {r['gpu_busy_unprofiled_retrain'] or 0:.0%}",
        flush=True,
    )
    print(f"  search epochs s: {[round(e, 3) for e in search_timer.epochs]}", flush=True)
    for site, n in syncs.result.items():
        print(f"  sync {n:5.2f}/step  {site}", flush=True)
    out["busy_by_batch"] = [busy_at_batch(args, k, batch) for batch in args.busy_batches]


def busy_at_batch(args, k: int, batch: int) -> dict:
    """GPU busy during search and retrain at a batch size: one warm-up and four search epochs (the
    first autotunes the arch step's shapes, the last is profiled), and a four-epoch retrain (the
    last profiled); busy = GPU work per profiled step over the median unprofiled step time of the
    two epochs before the profiled one. (``--no_lightning --busy_batches 32`` runs only this.)"""
    args = argparse.Namespace(**{**vars(args), "batch": batch})
    search_steps = GPUBatches(args, True, args.epoch_steps).steps
    timer, probe = Timer(), BusyProbe(4 * search_steps + 2, args.profile_steps)
    fit_search(args, k, 1, 4, [timer, probe])
    retrain_timer, retrain_probe = Timer(), BusyProbe(3 * args.epoch_steps + 2, args.profile_steps)
    fit_retrain(args, 4, [retrain_timer, retrain_probe])
    search_ms = 1e3 * statistics.median(timer.epochs[2:4]) / search_steps
    retrain_ms = 1e3 * statistics.median(retrain_timer.epochs[1:3]) / args.epoch_steps

    search_work = gpu_ms_per_step(probe.result, args.profile_steps)
    retrain_work = gpu_ms_per_step(retrain_probe.result, args.profile_steps)
    row = {
        "batch": batch,
        "audio_s_per_step": batch * args.frames / FRAME_RATE,
        "search_step_ms": search_ms,
        "retrain_step_ms": retrain_ms,
        "search_epoch_s": timer.epochs,
        "retrain_epoch_s": retrain_timer.epochs,
        "search_gpu_ms_per_step": search_work,
        "retrain_gpu_ms_per_step": retrain_work,
        "search_busy_profiled": probe.result.get("gpu_busy"),
        "retrain_busy_profiled": retrain_probe.result.get("gpu_busy"),
        "search_busy_unprofiled": search_work / search_ms if search_work else None,
        "retrain_busy_unprofiled": retrain_work / retrain_ms if retrain_work else None,
    }
    print(
        f"  batch {batch}: search {search_ms:.2f} ms/step (GPU {search_work or 0:.2f} ms, busy "
        f"{row['search_busy_unprofiled'] or 0:.0%}), retrain {retrain_ms:.2f} ms/step (GPU "
        f"{retrain_work or 0:.2f} ms, busy {row['retrain_busy_unprofiled'] or 0:.0%})",
        flush=True,
    )
    return row


class RankCheck(pl.Callback):
    """At the end, every rank's weights, alphas and argmax path, compared across ranks."""

    def __init__(self):
        self.result = {}

    def on_train_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().float().reshape(-1) for p in pl_module.parameters()])
        digest = torch.stack(
            [flat.sum(), (flat * torch.arange(flat.numel(), device=flat.device) % 9973).sum()]
        )
        path = torch.tensor(list(pl_module.arch.argmax().values()), device=flat.device, dtype=torch.float)
        mine = torch.cat([digest, path])
        every = trainer.strategy.all_gather(mine)
        every = every.reshape(trainer.world_size, -1) if trainer.world_size > 1 else every.reshape(1, -1)
        self.result = {
            "identical_on_all_ranks": bool((every == every[0]).all()),
            "world_size": trainer.world_size,
            "arch": pl_module.current_archspec().layers,
        }


PROBE_KEYS = ("gpu_busy", "span_ms", "nccl_ms", "host_wait_ms", "cpus")  # cpus: the rank's affinity


class ProbeGather(pl.Callback):
    """Every rank's ``BusyProbe`` figures, gathered before the strategy tears down."""

    def __init__(self, probe: BusyProbe):
        self.probe, self.result = probe, []

    def on_train_end(self, trainer, pl_module):
        mine = torch.tensor(
            [self.probe.result.get(k, float("nan")) for k in PROBE_KEYS[:-1]]
            + [len(os.sched_getaffinity(0))],
            device=pl_module.device,
        )
        every = trainer.strategy.all_gather(mine).reshape(-1, len(PROBE_KEYS))
        self.result = [dict(zip(PROBE_KEYS, row.tolist())) for row in every]


def bench_ddp(args, out: dict) -> None:
    """Search throughput on ``--devices`` GPUs; one more search epoch at the end is profiled on
    every rank (GPU busy, time in collectives, host waits) and left out of the throughput."""
    timer, check = Timer(), RankCheck()
    strategy = (
        SearchDDPStrategy(bind_cpus=args.bind_cpus, overlap=not args.no_overlap)
        if args.devices > 1
        else "auto"
    )
    k = args.candidates[0]
    w, s = args.warmup_epochs, args.search_epochs
    search_steps = GPUBatches(args, True, args.epoch_steps).steps
    probe = BusyProbe(search_steps * (w + s) + 2, min(args.profile_steps, search_steps - 3))
    gather = ProbeGather(probe)
    wall, model, trainer = fit_search(
        args, k, w, s + 1, [timer, check, probe, gather], args.devices, strategy
    )
    per_epoch_audio = trainer.world_size * search_steps * args.batch * args.frames / FRAME_RATE
    out["ddp"] = {
        "devices": trainer.world_size,
        "candidates": k,
        "epoch_s": timer.epochs,
        "wall_s": wall,
        "warmup_audio_s_per_s": per_epoch_audio / statistics.median(timer.epochs[1:w] or timer.epochs[:w]),
        "search_audio_s_per_s": per_epoch_audio / statistics.median(timer.epochs[w : w + s]),
        **check.result,
        "profile_by_rank": gather.result,
    }
    out["_write"] = trainer.is_global_zero
    print(f"  ddp x{trainer.world_size}: {out['ddp']}", flush=True)


# --- main ----------------------------------------------------------------------------------
def environment(argv: list[str]) -> dict:
    env = {
        "command": " ".join([os.path.basename(sys.executable), *argv]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32": True,
        "cudnn_benchmark": True,
    }
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name(0)
        env["device_count"] = torch.cuda.device_count()
        env["peak_bf16_tflops"] = peak_tflops(torch.device("cuda"))
    return env


def table(rows: list) -> str:
    base = {(r["candidates"], r["precision"]): r for r in rows if r["name"] == "derived typical"}
    lines = [
        "| step | K | prec | ms | ratio | peak GiB | mem ratio | step+params GiB | ratio | params | audio s/s | MFU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = base.get((r["candidates"], r["precision"])) or base.get((4, r["precision"]))
        mfu = f"{100 * r['mfu']:.0f}%" if "mfu" in r else ""
        mem = f"{r['peak_gib'] / b['peak_gib']:.2f}" if b and b["peak_gib"] else ""
        step_mem = f"{r['step_mem_gib'] / b['step_mem_gib']:.2f}" if b and b["peak_gib"] else ""
        lines.append(
            f"| {r['name']} | {r['candidates'] or '-'} | {r['precision']} | {r['ms']:.2f} | "
            f"{r['ms'] / b['ms']:.2f} | {r['peak_gib']:.2f} | {mem} | {r['step_mem_gib']:.2f} | {step_mem} | "
            f"{r['params'] / 1e6:.1f}M | {r['audio_s_per_s']:,.0f} | {mfu} |"
        )
    return "\n".join(lines)


def main_args(argv: list[str]) -> argparse.Namespace:
    """The bench's arguments (also what ``host_profile.py`` runs the Lightning search with)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["single", "ddp"])
    parser.add_argument("--out", default="bench.json")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--candidates", type=int, nargs="+", default=[4, 8], choices=[4, 8])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=800)
    parser.add_argument("--dim", type=int, default=640)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each measurement")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median)")
    parser.add_argument("--epoch_steps", type=int, default=20)
    parser.add_argument("--warmup_epochs", type=int, default=3)
    parser.add_argument("--search_epochs", type=int, default=5)
    parser.add_argument("--profile_steps", type=int, default=10)
    parser.add_argument(
        "--arch_fraction",
        type=float,
        default=0.1,
        help="held out for arch steps (search.yaml's data.arch_fraction)",
    )
    parser.add_argument(
        "--busy_batches", type=int, nargs="*", default=[], help="also GPU busy at these batch sizes"
    )
    parser.add_argument(
        "--relaxations",
        nargs="+",
        default=[r[0] for r in RELAXATIONS],
        choices=[r[0] for r in RELAXATIONS],
        metavar="NAME",
        help="rows of the per-step table (default all): " + ", ".join(r[0] for r in RELAXATIONS),
    )
    parser.add_argument(
        "--legacy_tdnn", action="store_true", help="also time the pre-channels-last TDNN (same run A/B)"
    )
    parser.add_argument("--kernels", action="store_true", help="GPU time by kernel kind (torch.profiler)")
    parser.add_argument("--no_compile", action="store_true")
    parser.add_argument("--no_steps", action="store_true", help="skip the per-step table")
    parser.add_argument("--no_lightning", action="store_true")
    parser.add_argument(
        "--no_overlap",
        action="store_true",
        help="ddp: all-reduce after backward, not during it (SearchDDPStrategy(overlap=False))",
    )
    parser.add_argument(
        "--interleave", type=int, default=0, help="ST/derived ratios from this many alternating rounds"
    )
    parser.add_argument(
        "--ctc", choices=["auto", "torch"], default="auto", help="torch: PyTorch's CUDA CTC (syncs the host)"
    )
    parser.add_argument(
        "--cuda_graphs", action="store_true", help="replay ops as CUDA graphs (supernet.accel.cuda_graphs)"
    )
    parser.add_argument(
        "--bind_cpus",
        action="store_true",
        help="ddp: pin each rank to cores next to its GPU (SearchDDPStrategy)",
    )
    parser.add_argument(
        "--sample_ahead",
        action="store_true",
        help="Lightning search runs: st samples from the alphas one update old "
        "(SearchModule(method_options={'sample_ahead': True}))",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = main_args(argv)
    global CTC_IMPLEMENTATION, CUDA_GRAPHS
    CTC_IMPLEMENTATION, CUDA_GRAPHS = args.ctc, args.cuda_graphs

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out: dict = {"env": environment(["scripts/bench.py", *argv]), "args": vars(args)}
    t0 = time.perf_counter()
    if args.mode == "single":
        rows: list = []
        print("per-step figures", flush=True)
        if not args.no_steps:
            bench_steps(args, device, rows)
        if not args.no_compile:
            bench_compiled(args, device, rows)
        if args.interleave:
            print("ratios from interleaved rounds", flush=True)
            bench_interleaved(args, device, out)
        if args.kernels:
            print("GPU time by kernel kind", flush=True)
            bench_kernels(args, device, out)
        out["steps"] = rows
        if not args.no_lightning:
            print("whole search vs retrain (Lightning)", flush=True)
            bench_search_vs_retrain(args, out)
        elif args.busy_batches:
            out["busy_by_batch"] = [busy_at_batch(args, args.candidates[0], b) for b in args.busy_batches]
        print(table(rows))
    else:
        bench_ddp(args, out)
    out["bench_seconds"] = time.perf_counter() - t0
    if out.pop("_write", True):
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
        print(f"written: {args.out} ({out['bench_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
