"""How far exported graphs are from PyTorch: the figures of docs/deploy.md's "Why the STFT is a
convolution" and "LSTM and BLSTM" bullets, from one command on the CPU (~100 s here, one thread).

    python scripts/deploy_agreement.py [--n-fft 400 512] [--out agreement.json]

- front-end: the log-mels of torchaudio's ``MelSpectrogram`` exported as is (``aten::stft`` ->
  ONNX ``STFT``) and of ``ConvFeatures`` (the DFT as a Conv1d, what ``supernet export`` writes),
  each run in onnxruntime against PyTorch's log-mels, 20 mels, at each ``--n-fft``;
- tiny networks (dim 32, 20 mels, random weights as ``tests/test_export.py`` makes them): the
  waveform graph with each front-end, log-prob difference over valid frames (``check_parity``);
- the shipped ``blstm`` (random weights, waveform input) as ``supernet export`` writes it.

Audio: ``supernet export``'s own synthetic check utterances (2.33, 0.61, 1.57 s). The graphs are
built by the project's exporter (``export_module``); nothing here re-implements a front-end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from supernet.asr_module import ASRModule
from supernet.data.features import FeatureExtractor
from supernet.data.tokenizer import CharTokenizer
from supernet.deploy.export import check_waveforms, export_asr_module, model_inputs, trace_waveforms
from supernet.deploy.frontend import ConvFeatures
from supernet.deploy.graph import INPUT_NAMES, OUTPUT_NAMES, WaveformCTC, deploy_module, feature_pipeline
from supernet.deploy.onnx_export import export_module, save
from supernet.deploy.parity import as_if_trained, check_parity, max_valid_diff
from supernet.deploy.runtime import pad_waveforms
from supernet.deploy.session import ort_session
from supernet.shipped import shipped_path

TOKENIZER = CharTokenizer.build(["abcdefgh ijklmno"])
# attention networks (what the ONNX STFT's log-prob figures are about) and a TDNN for contrast
NETWORKS = {
    "conformer-rel": ["conformer-k15-f2-h4-rel"],
    "res-conformer-e16": ["tdnn-k3-d2-s3", "res-conformer-k15-f2-h4-rel-e16"],
    "ebranchformer": ["res-down2-ebranchformer-k15-f2-rel"],
    "tdnn": ["tdnn-k5-d2-s2"],
}
OPSET = 18


def tiny_module(layers: list[str], n_fft: int, seed: int = 0) -> ASRModule:
    """A random tiny network as tests/test_export.py builds one (non-trivial BatchNorm statistics,
    a confident head), its features at ``n_fft`` (a checkpoint's ``checkpoint_n_fft``)."""
    arch = {"name": "tiny", "features": "fbank", "feature_dim": 20, "dim": 32, "input": "linear"}
    arch |= {"layers": layers, "head": "linear", "dropout": 0.0}
    torch.manual_seed(seed)
    module = ASRModule(arch, vocab=TOKENIZER.vocab).eval()
    module.checkpoint_n_fft = n_fft
    return as_if_trained(module)


def exported_session(model: torch.nn.Module, example, folder: Path, name: str):
    proto, _ = export_module(model, example, INPUT_NAMES["waveform"], OUTPUT_NAMES, OPSET)
    save(proto, folder / f"{name}.onnx")
    return ort_session(folder / f"{name}.onnx", threads=1)


def front_end_diffs(n_fft: int, folder: Path) -> dict[str, float]:
    """Max |log-mel| difference, onnxruntime against PyTorch, of each front-end's graph."""
    extractor = FeatureExtractor("fbank", n_mels=20, n_fft=n_fft).eval()
    example = pad_waveforms(trace_waveforms(tiny_module(["linear"], n_fft)))
    audio, lengths = pad_waveforms(check_waveforms(tiny_module(["linear"], n_fft), None))
    with torch.no_grad():
        ref, frames = (t.numpy() for t in extractor(audio, lengths))
    out = {}
    for name, graph in (("onnx_stft", extractor), ("conv_dft", ConvFeatures(extractor).eval())):
        session = exported_session(graph, example, folder, f"frontend_{name}_{n_fft}")
        got = session.run(None, {"audio": audio.numpy(), "lengths": lengths.numpy()})[0]
        out[name] = max_valid_diff(got, ref, frames)[0]
    return out


def network_diffs(layers: list[str], n_fft: int, folder: Path) -> dict[str, float]:
    """Max log-prob difference of the tiny network's waveform graph with each front-end."""
    module = tiny_module(layers, n_fft)
    reference = deploy_module(module, "waveform")  # PyTorch as `supernet evaluate` runs it
    example = model_inputs(module, "waveform", trace_waveforms(module))
    inputs, lengths = model_inputs(module, "waveform", check_waveforms(module, None))
    pipeline = feature_pipeline(module)
    graphs = {
        "onnx_stft": WaveformCTC(pipeline.extractor, module.net, pipeline.cmvn).eval(),
        "conv_dft": deploy_module(module, "waveform", for_export=True),
    }
    out = {}
    for name, graph in graphs.items():
        session = exported_session(graph, example, folder, f"net_{name}_{n_fft}")
        out[name] = check_parity(session, reference, inputs, lengths, module.tokenizer).max_abs_diff
    return out


def blstm_parity(folder: Path) -> dict:
    """The shipped blstm, random weights, exported as `supernet export` does (waveform input)."""
    torch.manual_seed(0)
    module = ASRModule(str(shipped_path("arch", "blstm")), vocab=TOKENIZER.vocab).eval()
    report = export_asr_module(module, folder / "blstm.onnx", input_kind="waveform")
    parity = report["parity"]
    return {"max_abs_diff": parity["max_abs_diff"], "same_transcripts": parity["same_transcripts"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-fft", type=int, nargs="+", default=[400, 512])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--no-blstm", action="store_true", help="skip the shipped blstm export")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    result: dict = {"torch": torch.__version__, "front_end": {}, "networks": {}}
    with tempfile.TemporaryDirectory(prefix="agreement-") as tmp:
        folder = Path(tmp)
        for n_fft in args.n_fft:
            result["front_end"][n_fft] = front_end_diffs(n_fft, folder)
            for name in args.networks:
                result["networks"][f"{name} @ {n_fft}"] = network_diffs(NETWORKS[name], n_fft, folder)
        if not args.no_blstm:
            result["blstm"] = blstm_parity(folder)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print("| graph | n_fft | ONNX STFT | Conv1d DFT (exported) |\n|---|---|---|---|")
    for n_fft, d in result["front_end"].items():
        print(f"| log-mels (20) | {n_fft} | {d['onnx_stft']:.2e} | {d['conv_dft']:.2e} |")
    for key, d in result["networks"].items():
        name, n_fft = key.split(" @ ")
        print(f"| {name} log-probs | {n_fft} | {d['onnx_stft']:.2e} | {d['conv_dft']:.2e} |")
    if "blstm" in result:
        b = result["blstm"]
        texts = "identical" if b["same_transcripts"] else "DIFFERENT"
        print(f"\nshipped blstm (random weights, waveform): {b['max_abs_diff']:.2e}, transcripts {texts}")
    print(f"({result['seconds']} s)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
