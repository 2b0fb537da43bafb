"""The choices inside ``supernet.deploy.quantize``, each undone once: what it costs in agreement
with fp32 and in speed. The figures of docs/deploy.md's int8 bullets and the profile under
"int8: static against dynamic".

    python scripts/int8_ablation.py CKPT [CKPT ...] --test corpus/test.jsonl --out /tmp/ablation \
        [--seconds 4] [--repeats 30] [--profile static] [--json out.json]

Variants of one fp32 waveform export (``export_asr_module``), every one made by the project's own
``quantize_int8`` with one setting changed while it runs (nothing is copied):

- ``static`` / ``dynamic``: as ``supernet export --int8`` writes them;
- ``static-full-range``: static with ``reduce_range=False`` (full 8-bit weights);
- ``static-head-int8``: static with the CTC head quantised too (``ctc_head`` excludes nothing);
- ``dynamic-conv``: dynamic with ``Conv`` added to ``QUANTISED_OPS`` (``ConvInteger``);
- ``fp32-preprocessed``: onnxruntime's ``quant_pre_process(skip_symbolic_shape=True)`` of fp32.

Per variant: greedy frames that agree with fp32's (arg-max over valid frames) on the test
utterances and on one synthetic utterance of ``--seconds``; the characters of fp32's greedy
transcripts that change (``char_error_rate``); the median ms of one thread, batch 1, over
interleaved rounds (each round runs every variant once, in rotating order). ``--profile`` names
variants to run under onnxruntime's profiler: the mean ms per run of the costliest nodes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from supernet.decoding import greedy_ctc_ids
from supernet.deploy import quantize
from supernet.deploy.agreement import char_error_rate
from supernet.deploy.calibration import calibration_feeds, calibration_utterances, checkpoint_calibration
from supernet.deploy.checkpoint import load_module
from supernet.deploy.export import export_asr_module, model_inputs
from supernet.deploy.inputs import load_waveform, read_inputs, synthetic_waveforms
from supernet.deploy.metadata import read_metadata
from supernet.deploy.runtime import OnnxCTC, pad_waveforms


@contextlib.contextmanager
def full_range():
    """``quantize_static`` with ``reduce_range=False`` whatever ``_quantize_static`` passes."""
    import onnxruntime.quantization as q

    original = q.quantize_static
    with mock.patch.object(
        q, "quantize_static", lambda *a, **k: original(*a, **{**k, "reduce_range": False})
    ):
        yield


def variants(fp32: Path, feeds: list) -> dict[str, Path]:
    """The models, written beside ``fp32``."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    stem = fp32.with_suffix("")
    made = {"fp32": fp32}
    made["static"] = quantize.quantize_int8(fp32, f"{stem}.static.onnx", "static", feeds)
    made["dynamic"] = quantize.quantize_int8(fp32, f"{stem}.dynamic.onnx", "dynamic")
    with full_range():
        made["static-full-range"] = quantize.quantize_int8(fp32, f"{stem}.fullrange.onnx", "static", feeds)
    with mock.patch.object(quantize, "ctc_head", lambda model: []):
        made["static-head-int8"] = quantize.quantize_int8(fp32, f"{stem}.headint8.onnx", "static", feeds)
    with mock.patch.object(quantize, "QUANTISED_OPS", [*quantize.QUANTISED_OPS, "Conv"]):
        made["dynamic-conv"] = quantize.quantize_int8(fp32, f"{stem}.dynconv.onnx", "dynamic")
    pre = Path(f"{stem}.pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    made["fp32-preprocessed"] = _with_props_of(fp32, pre)  # it adds a non-JSON value of its own
    return made


def _with_props_of(source: Path, path: Path) -> Path:
    import onnx

    model = onnx.load_model(str(path))
    onnx.helper.set_model_props(model, {p.key: p.value for p in onnx.load_model(str(source)).metadata_props})
    onnx.save_model(model, str(path))
    return path


def outputs(model: OnnxCTC, batches: list[list[torch.Tensor]]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [tuple(t.numpy() for t in model.log_probs(*pad_waveforms(b))) for b in batches]


def agreement(ref: list, got: list, tokenizer) -> dict[str, float]:
    """Greedy frames equal to fp32's (share of valid frames), and fp32's transcripts' characters
    that change."""
    same = total = 0
    ref_texts, got_texts = [], []
    for (rl, rn), (gl, gn) in zip(ref, got, strict=True):
        valid = np.arange(rl.shape[1])[None, :] < rn[:, None]
        same += int((rl.argmax(-1) == gl.argmax(-1))[valid].sum())
        total += int(valid.sum())
        for texts, (lp, n) in ((ref_texts, (rl, rn)), (got_texts, (gl, gn))):
            ids = greedy_ctc_ids(torch.from_numpy(lp), torch.from_numpy(n))
            texts += [tokenizer.decode(row) for row in ids]
    return {
        "frames_agree": same / total,
        "frames": total,
        "chars_changed": char_error_rate(ref_texts, got_texts),
    }


def time_variants(paths: dict[str, Path], inputs, lengths, warmup: int, repeats: int) -> dict[str, float]:
    """Median ms per variant over interleaved rounds, one thread."""
    models = {k: OnnxCTC(p, threads=1) for k, p in paths.items()}
    names = list(models)
    times: dict[str, list[float]] = defaultdict(list)
    for r in range(warmup + repeats):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            models[k].run(inputs, lengths)
            if r >= warmup:
                times[k].append(1000 * (time.perf_counter() - start))
    return {k: statistics.median(times[k]) for k in names}


def profile(path: Path, inputs, lengths, runs: int, top: int) -> dict[str, list]:
    """``nodes``: ``(node, op type, mean ms per run)`` of the ``top`` costliest nodes; ``ops``:
    ``(op type, nodes, mean ms per run)`` summed over each op type; one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = dict(zip([i.name for i in session.get_inputs()], (inputs, lengths)))
    for _ in range(runs + 2):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[(e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))].append(
                e["dur"] / 1000
            )
    rows = [(n, op, sum(d[2:]) / runs) for (n, op), d in per_node.items()]  # the first 2 runs: warm-up
    by_op: dict[str, list[float]] = defaultdict(list)
    for _, op, ms in rows:
        by_op[op].append(ms)
    ops = sorted(((op, len(v), sum(v)) for op, v in by_op.items()), key=lambda r: -r[2])
    return {"nodes": sorted(rows, key=lambda r: -r[2])[:top], "ops": ops[:top]}


def run_checkpoint(ckpt: Path, args, items) -> dict:
    module = load_module(ckpt)
    name = module.spec.name
    fp32 = args.out / f"{name}.onnx"
    export_asr_module(module, fp32, input_kind="waveform")
    min_length = read_metadata(fp32)["min_input_length"]
    calibration = checkpoint_calibration(ckpt)
    feeds = calibration_feeds(module, "waveform", calibration_utterances(calibration), min_length)
    paths = variants(fp32, feeds)
    rate = OnnxCTC(fp32).sample_rate
    test = [load_waveform(i.audio_filepath, rate).samples for i in items]
    synthetic = synthetic_waveforms((args.seconds,), rate, seed=0)
    sets = {"test": [test[i : i + 8] for i in range(0, len(test), 8)], "synthetic": [synthetic]}
    result: dict = {
        "checkpoint": str(ckpt),
        "arch": name,
        "bytes": {k: p.stat().st_size for k, p in paths.items()},
    }
    for set_name, batches in sets.items():
        ref = outputs(OnnxCTC(fp32, 1), batches)
        result[set_name] = {
            k: agreement(ref, outputs(OnnxCTC(p, 1), batches), module.tokenizer) for k, p in paths.items()
        }
    inputs, lengths = (t.numpy() for t in model_inputs(module, "waveform", synthetic, min_length))
    torch.set_num_threads(1)
    load = [os.getloadavg()[0]]
    result["median_ms"] = time_variants(paths, inputs, lengths, args.warmup, args.repeats)
    result["load"] = load + [os.getloadavg()[0]]
    result["profile"] = {k: profile(paths[k], inputs, lengths, args.repeats, args.top) for k in args.profile}
    return result


def print_tables(results: list[dict], seconds: float) -> None:
    print(
        f"| model | variant | test frames = fp32 | test chars changed | {seconds:g} s frames = fp32 | ms (1 thread, {seconds:g} s) | MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        for k, ms in r["median_ms"].items():
            t, s = r["test"][k], r["synthetic"][k]
            print(
                f"| {r['arch']} | {k} | {100 * t['frames_agree']:.2f}% | {100 * t['chars_changed']:.2f}% | "
                f"{100 * s['frames_agree']:.2f}% | {ms:.1f} | {r['bytes'][k] / 2**20:.2f} |"
            )
        print(
            f"(load average {r['load'][0]:.1f} -> {r['load'][1]:.1f}; test: {r['test']['fp32']['frames']} frames)"
        )
    for r in results:
        for k, prof in r["profile"].items():
            print(f"\n{r['arch']} {k}: costliest nodes, mean ms per run\n| node | op | ms |\n|---|---|---|")
            for node, op, ms in prof["nodes"]:
                print(f"| {node} | {op} | {ms:.2f} |")
            print(f"\n{r['arch']} {k}: by op type, mean ms per run\n| op | nodes | ms |\n|---|---|---|")
            for op, n, ms in prof["ops"]:
                print(f"| {op} | {n} | {ms:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--test", type=Path, required=True, help="manifest: agreement on its utterances")
    parser.add_argument("--test-files", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True, help="folder for the ONNX models")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--profile", nargs="*", default=["static"], help="variants to profile")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    items = read_inputs([args.test])[: args.test_files]
    results = [run_checkpoint(ckpt, args, items) for ckpt in args.checkpoints]
    print_tables(results, args.seconds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
