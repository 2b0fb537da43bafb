"""The two ways to run a retrained model on waveforms: an exported ONNX model in onnxruntime (with
nothing but its metadata), or the checkpoint in PyTorch. Both give ``log_probs`` and texts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from supernet.data.tokenizer import CharTokenizer
from supernet.decoding import greedy_ctc_ids
from supernet.deploy.session import ort_session
from supernet.errors import UserError


def pad_waveforms(waveforms: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, S)`` float32 padded with zeros (as the data loader pads) and the lengths ``(B,)``."""
    lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.long)
    audio = torch.nn.utils.rnn.pad_sequence([w.float() for w in waveforms], batch_first=True)
    return audio, lengths


def pad_time(inputs: torch.Tensor, length: int) -> torch.Tensor:
    """``inputs (B, T, ...)`` padded with zeros to at least ``length`` steps (the exported graph's
    shortest time axis); the lengths stay as they are, so the padding changes no valid output."""
    short = length - inputs.shape[1]
    if short <= 0:
        return inputs
    return torch.nn.functional.pad(inputs, (0, 0) * (inputs.dim() - 2) + (0, short))


class CTCModel:
    """``sample_rate``, ``tokenizer``, ``log_probs(audio, lengths)`` and greedy ``transcribe``."""

    sample_rate: int
    tokenizer: CharTokenizer

    def log_probs(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def transcribe(self, waveforms: list[torch.Tensor]) -> list[str]:
        log_probs, out_lengths = self.log_probs(*pad_waveforms(waveforms))
        return [self.tokenizer.decode(ids) for ids in greedy_ctc_ids(log_probs, out_lengths)]


class OnnxCTC(CTCModel):
    """An exported model in onnxruntime; features are computed here when it takes features."""

    def __init__(self, path: str | Path, threads: int = 0):
        from supernet.deploy.metadata import from_props, tokenizer_of

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: model not found")
        try:
            self.session = ort_session(path, threads)
        except UserError:
            raise
        except Exception as err:  # onnxruntime's own error kinds: an unreadable or invalid model
            raise UserError(f"{path}: onnxruntime cannot load it ({str(err).splitlines()[0]})") from err
        self.metadata = from_props(self.session.get_modelmeta().custom_metadata_map, str(path))
        self.tokenizer = tokenizer_of(self.metadata)
        self.sample_rate = int(self.metadata["features"]["sample_rate"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.pipeline = None if self.metadata["input"] == "waveform" else _pipeline(self.metadata["features"])

    def run(self, inputs: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's own inputs (waveforms or features, by its metadata) -> numpy outputs."""
        feeds = dict(zip(self.input_names, (inputs.astype(np.float32), lengths.astype(np.int64))))
        log_probs, out_lengths = self.session.run(None, feeds)
        return log_probs, out_lengths

    def log_probs(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = audio
        if self.pipeline is not None:
            inputs, lengths = self.pipeline(audio, lengths)
        inputs = pad_time(inputs, int(self.metadata.get("min_input_length", 0)))
        log_probs, out_lengths = self.run(inputs.numpy(), lengths.numpy())
        return torch.from_numpy(log_probs), torch.from_numpy(out_lengths)


def _pipeline(settings: dict):
    """The feature pipeline a features-input model's metadata describes (its normalisation: per
    utterance, or the global statistics it carries)."""
    from supernet.data.features import FeaturePipeline, GlobalCMVN, n_fft_of

    rate = settings["sample_rate"]
    frames = {}
    if settings["kind"] != "raw":
        frames = {
            "n_mels": settings["n_mels"],
            "win_ms": 1000 * settings["win_length"] / rate,
            "hop_ms": 1000 * settings["hop_length"] / rate,
            "n_fft": n_fft_of(settings["kind"], settings.get("n_fft"), settings["win_length"]),
        }
    if settings["kind"] == "mfcc":
        frames["n_mfcc"] = settings["n_mfcc"]
    norm = settings.get("normalisation", {})
    pipeline = FeaturePipeline(
        settings["kind"], spec_augment=False, sample_rate=rate,
        normalisation="global" if "mean" in norm else "utterance", **frames,
    )  # fmt: skip
    if "mean" in norm:
        pipeline.cmvn = GlobalCMVN(torch.tensor(norm["mean"]), torch.tensor(norm["std"]))
    return pipeline


class TorchCTC(CTCModel):
    """A retrain checkpoint in PyTorch (CPU), scored as ``supernet evaluate`` scores it."""

    def __init__(self, checkpoint: str | Path):
        from supernet.deploy.checkpoint import load_module
        from supernet.deploy.graph import deploy_module, sample_rate_of

        self.module = load_module(checkpoint)
        self.model = deploy_module(self.module, "waveform")
        self.tokenizer = self.module.tokenizer
        self.sample_rate = sample_rate_of(self.model.features)

    @torch.no_grad()
    def log_probs(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(audio, lengths)


def load_model(path: str | Path, threads: int = 0) -> CTCModel:
    """An ``.onnx`` file in onnxruntime, anything else as a retrain checkpoint."""
    return OnnxCTC(path, threads) if Path(path).suffix == ".onnx" else TorchCTC(path)
