"""Where static int8's calibration audio comes from, settled before any export: the training split
of the checkpoint's corpus (or ``--calibration DATA``), a few utterances spread over it, never dev
or test, turned into the exported model's own inputs. Apart from ``supernet.deploy.quantize``, which
only quantises graphs, so that the latency tables (``supernet.latency.ort``) quantise ops the same
way without reaching into corpora, checkpoints or the model's export code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supernet.deploy.quantize import MODES
from supernet.errors import UserError

CALIBRATION_UTTERANCES = 8


@dataclass(frozen=True)
class Calibration:
    """Where static int8 reads its calibration audio: the training split of ``data``."""

    data: Path
    langs: tuple[str, ...] | None = None  # the languages the model was trained on (None: all)
    source: str = "--calibration"  # how it was chosen, for the error when it cannot be read

    def describe(self) -> str:
        return f"{self.source} {self.data}"


def checkpoint_calibration(checkpoint: str | Path) -> Calibration | None:
    """The training data a ``supernet retrain`` checkpoint records (its data module's ``data``
    and ``langs``), or None when it records none."""
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    hparams = saved.get("datamodule_hyper_parameters") or {}
    if not hparams.get("data"):
        return None
    langs = hparams.get("langs")
    return Calibration(
        Path(hparams["data"]), tuple(langs) if langs else None, "the checkpoint's training data"
    )


def calibration_utterances(calibration: Calibration, count: int = CALIBRATION_UTTERANCES) -> list:
    """``count`` utterances of the training split of ``calibration.data`` (a corpus folder: its
    ``train.jsonl``; one manifest: the 90% that training uses), spread evenly over it; never dev
    or test. A ``UserError`` naming the path when it cannot be read."""
    from supernet.data.datamodule import resolve_splits

    if count < 1:
        raise UserError(f"int8 calibration needs at least 1 utterance, got {count}")
    langs = list(calibration.langs) if calibration.langs else None
    try:
        train = resolve_splits(calibration.data, arch_fraction=0.0, langs=langs)["fit"]["train_all"]
    except (OSError, UserError) as err:
        raise UserError(
            f"int8 calibration: {calibration.describe()} cannot be read ({err}); pass --calibration "
            "DATA (a corpus folder or manifest), or --int8-mode dynamic"
        ) from err
    if not train:
        raise UserError(f"int8 calibration: {calibration.describe()} has no training utterances")
    step = max(1, len(train) // count)
    return train[::step][:count]


@dataclass(frozen=True)
class Int8Plan:
    """What ``--int8`` will do, settled before the fp32 export so that unreadable calibration data
    fails at once: the mode, and for ``static`` the calibration data and utterances."""

    mode: str
    calibration: Calibration | None = None
    utterances: tuple = ()

    def calibration_report(self) -> dict[str, Any] | None:
        if self.calibration is None:
            return None
        return {"data": str(self.calibration.data), "ids": [u.id for u in self.utterances]}


def int8_plan(
    mode: str = "auto",
    calibration: str | Path | Calibration | None = None,
    count: int = CALIBRATION_UTTERANCES,
) -> Int8Plan:
    """``mode`` ``auto`` is ``static`` when there is calibration data (a path: a corpus folder or
    manifest), else ``dynamic``; ``static`` without calibration data is a ``UserError``."""
    if mode not in ("auto", *MODES):
        raise UserError(f"int8 mode must be auto, {' or '.join(MODES)}; got {mode!r}")
    if isinstance(calibration, str | Path):
        calibration = Calibration(Path(calibration))
    if mode == "auto":
        mode = "dynamic" if calibration is None else "static"
    if mode == "dynamic":
        return Int8Plan("dynamic")
    if calibration is None:
        raise UserError(
            "static int8 needs calibration audio: the checkpoint records no training data; "
            "pass --calibration DATA (a corpus folder or manifest), or --int8-mode dynamic"
        )
    return Int8Plan("static", calibration, tuple(calibration_utterances(calibration, count)))


def calibration_feeds(module, kind: str, utterances: list, min_length: int) -> list[dict[str, Any]]:
    """The ``kind`` model's inputs for each utterance (one batch each), as onnxruntime feeds."""
    from supernet.deploy.export import model_inputs, sample_rate
    from supernet.deploy.graph import INPUT_NAMES
    from supernet.deploy.inputs import load_waveform

    rate = sample_rate(module)
    feeds = []
    for utt in utterances:
        inputs, lengths = model_inputs(
            module, kind, [load_waveform(utt.audio_filepath, rate).samples], min_length
        )
        feeds.append(dict(zip(INPUT_NAMES[kind], (inputs.numpy(), lengths.numpy()), strict=True)))
    return feeds
