"""Per-chunk latency of stateful streaming (``supernet.deploy.streaming``) on this CPU, beside what a
streaming latency table times for the same chunk and a full-utterance pass over the whole audio.

    OMP_NUM_THREADS=1 python scripts/stream_latency.py --arch tdnn_d --arch conformer_s --chunk-ms 160 320 640

Per architecture and chunk length, random weights and features (latency does not depend on them):
``stream``: each ``accept`` of one chunk of an utterance of ``--seconds``, timed by wall clock and
by the thread's CPU time (which does not grow when other processes take the core; with one thread
it is the latency of an idle machine), median and 90th percentile over ``--utterances``
utterances after one untimed; ``state``: the most a stream keeps between chunks; ``table``: the
network as a streaming latency table times it (``supernet profile --chunk-ms``: every op on one
chunk plus its look-ahead, no caches; ``supernet.latency.measure_networks``, CPU clock);
``full``: one full-utterance pass over the whole utterance, what re-running a growing prefix costs
at its end. ``conformer_s`` reads whole utterances (relative-position attention): it is timed as
``conformer_s-chunk``, its layers with chunked attention (``--conformer-layer``).

With ``--onnx`` the fixed-shape chunk step (``supernet export --streaming``,
``supernet.deploy.onnx_streaming``) is exported for each chunk length and timed in onnxruntime
(CPU, ``--threads`` intra-op threads): ``onnx``, each ``session.run`` of one chunk over the same
utterances (flush chunks included), wall and thread CPU time, median (p90); ``onnx chunk`` is the
step's chunk (rounded up to whole output frames) and ``onnx delay`` what its caches delay an output
beyond its chunk.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from supernet.archspec import ArchSpec
from supernet.deploy.streaming import StreamingRecognizer, chunk_frames
from supernet.derived import DerivedNet
from supernet.latency import make_settings, measure_networks

CHUNKED_CONFORMER = "conformer-k15-f4-h4-chunk-c4-w32"  # 160 ms attention chunks, 1.28 s left context


def streamable(arch: str, conformer_layer: str) -> ArchSpec:
    """The shipped baseline, or for conformer_s its chunked-attention variant."""
    spec = ArchSpec.from_yaml(arch)
    if spec.streamable:
        return spec
    layers = [conformer_layer if layer.startswith("conformer-") else layer for layer in spec.layers]
    return ArchSpec.from_dict({**spec.to_dict(), "name": f"{spec.name}-chunk", "layers": layers})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stream_times(
    recognizer: StreamingRecognizer, features: torch.Tensor, chunk: int
) -> tuple[list, list, int]:
    """Wall and CPU ms of each chunk's ``accept`` of one utterance, and the largest state (numbers)."""
    recognizer.reset()
    wall, cpu, state = [], [], 0
    for start in range(0, len(features), chunk):
        w, c = time.perf_counter(), time.thread_time()
        recognizer.accept(features[start : start + chunk])
        cpu.append(1000 * (time.thread_time() - c))
        wall.append(1000 * (time.perf_counter() - w))
        state = max(state, recognizer.state_numel())
    recognizer.finish()
    return wall, cpu, state


def full_pass_ms(net: DerivedNet, features: torch.Tensor, repeats: int) -> float:
    """CPU ms of one full-utterance pass (median)."""
    x, lengths = features[None], torch.tensor([len(features)])
    net(x, lengths)
    times = []
    for _ in range(repeats):
        began = time.thread_time()
        net(x, lengths)
        times.append(1000 * (time.thread_time() - began))
    return statistics.median(times)


def measured_lookahead(recognizer: StreamingRecognizer, features: torch.Tensor, stride: int) -> int:
    """Input frames past its own first frame that an output waited for, at most, fed one frame at
    a time (the declared look-ahead adds up the ops'; chunked attention layers share one chunk)."""
    recognizer.reset()
    emitted, most = 0, 0
    for t in range(len(features)):
        new = recognizer.accept(features[t : t + 1]).shape[0]
        if new:
            most = max(most, t - emitted * stride)  # the first new frame waited longest
        emitted += new
    recognizer.finish()
    return most


def onnx_step_times(net: DerivedNet, spec: ArchSpec, chunk_ms: float, features: torch.Tensor, args):
    """Wall and CPU ms of each onnxruntime run of the exported chunk step over ``args.utterances``
    streams of ``features`` (after one untimed), the step's chunk and its delay (ms)."""
    import math
    import tempfile
    from pathlib import Path

    import numpy as np

    from supernet.deploy.onnx_streaming import StreamingStep, export_step, step_frames
    from supernet.deploy.session import ort_session

    step = StreamingStep(net, step_frames(spec, chunk_ms)).eval()
    example = (torch.randn(1, step.chunk, spec.feature_dim), torch.tensor(step.chunk), *step.initial_state(1))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "step.onnx"
        path.write_bytes(export_step(step, example, 18).SerializeToString())
        session = ort_session(path, args.threads)
    inputs = [i.name for i in session.get_inputs()]
    x = features.numpy()
    chunks = math.ceil(len(x) / step.chunk)
    wall, cpu = [], []
    for utterance in range(args.utterances + 1):
        state = [t.numpy() for t in step.initial_state(1)]
        for k in range(chunks + step.flush_chunks):
            part = x[k * step.chunk : (k + 1) * step.chunk]
            chunk = np.zeros((1, step.chunk, spec.feature_dim), np.float32)
            chunk[0, : len(part)] = part
            feeds = dict(zip(inputs, [chunk, np.array(len(part), np.int64), *state]))
            w, c = time.perf_counter(), time.thread_time()
            _, _, *state = session.run(None, feeds)
            if utterance:  # the first is untimed
                cpu.append(1000 * (time.thread_time() - c))
                wall.append(1000 * (time.perf_counter() - w))
    frame_ms = 1000 / spec.input_rate
    return wall, cpu, step.chunk * frame_ms, step.delay_frames * frame_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", default=None, help="shipped name or YAML (repeatable)")
    parser.add_argument("--chunk-ms", type=float, nargs="+", default=[160, 320, 640])
    parser.add_argument("--seconds", type=float, default=8.0, help="audio per utterance")
    parser.add_argument("--utterances", type=int, default=5, help="timed utterances per chunk length")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vocab", type=int, default=64, help="output tokens (as the latency tables)")
    parser.add_argument("--conformer-layer", default=CHUNKED_CONFORMER)
    parser.add_argument(
        "--table-repeats", type=int, default=20, help="timed passes of the table's measurement"
    )
    parser.add_argument("--onnx", action="store_true", help="also time the exported ONNX chunk step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for arch in args.arch or ["tdnn_d", "conformer_s"]:
        spec = streamable(arch, args.conformer_layer)
        net = DerivedNet(spec, args.vocab).eval()
        recognizer = StreamingRecognizer(net)
        features = torch.randn(round(args.seconds * spec.input_rate), spec.feature_dim)
        with torch.inference_mode():
            full = full_pass_ms(net, features, 5)
            waited = measured_lookahead(recognizer, features[: 4 * spec.input_rate], spec.total_stride)
            frame_ms = 1000 / spec.input_rate
            for chunk_ms in args.chunk_ms:
                chunk = chunk_frames(spec, chunk_ms)
                stream_times(recognizer, features, chunk)  # untimed: first shapes, allocations
                wall, cpu, state = [], [], 0
                for _ in range(args.utterances):
                    w, c, s = stream_times(recognizer, features, chunk)
                    wall, cpu, state = wall + w, cpu + c, max(state, s)
                settings = make_settings(
                    "cpu",
                    threads=args.threads,
                    chunk_ms=chunk_ms,
                    vocab=args.vocab,
                    clock="cpu" if args.threads == 1 else "wall",
                )
                table = measure_networks([spec], settings, warmup=3, repeats=args.table_repeats)[0]
                rows.append(
                    {
                        "arch": spec.name,
                        "chunk": f"{chunk_ms:g}",
                        "chunks": len(wall) // args.utterances,
                        "wall": f"{statistics.median(wall):.2f} ({percentile(wall, 0.9):.2f})",
                        "cpu": f"{statistics.median(cpu):.2f} ({percentile(cpu, 0.9):.2f})",
                        "rtf": f"{statistics.median(cpu) / chunk_ms:.3f}",
                        "state": f"{4 * state / 1024:.0f}",
                        "table": f"{table:.2f}",
                        "full": f"{full:.1f}",
                        "lookahead": f"{spec.total_lookahead * frame_ms:g} / {waited * frame_ms:g}",
                    }
                )
                if args.onnx:
                    w, c, step_ms, delay_ms = onnx_step_times(net, spec, chunk_ms, features, args)
                    rows[-1].update(
                        onnx=f"{statistics.median(w):.2f} ({percentile(w, 0.9):.2f}) / "
                        f"{statistics.median(c):.2f} ({percentile(c, 0.9):.2f})",
                        onnx_chunk=f"{step_ms:g}",
                        onnx_delay=f"{delay_ms:g}",
                    )
    print(
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, {args.seconds:g} s utterances, "
        f"{args.utterances} timed a chunk length; ms"
    )
    onnx = (
        " onnx step per chunk, wall / CPU: median (p90) | onnx chunk ms | onnx delay ms |"
        if args.onnx
        else ""
    )
    print(
        "| arch | chunk ms | chunks | stream per chunk, wall: median (p90) | CPU: median (p90) | CPU / audio "
        "| state KiB | table per chunk (stateless, CPU) | full pass, CPU | look-ahead ms declared / measured |"
        + onnx
    )
    print("|---" * len(rows[0]) + "|")
    for row in rows:
        print("| " + " | ".join(str(value) for value in row.values()) + " |")


if __name__ == "__main__":
    main()
