"""A path's CER with a trained supernet's inherited weights (``supernet select``, ``supernet study``).

Inherited weights are shared by every path, so a path's BatchNorm running statistics are the mix
of all paths trained; they are reset and re-estimated on ``batches`` train batches of the path
alone (as single-path one-shot NAS does) before it is measured on one held-out split: ``arch``
(the search's held-out part of train) when the corpus gives one, else ``dev``. Test sets never
choose anything.

Two measures come from one pass: greedy CER, and the CTC loss per target token (averaged over utterances). A supernet early in
training decodes mostly blanks (CER near 100% for many paths), where CER ties and ranks nothing;
the loss still orders the paths.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import torch
from torch import nn

from supernet.data.tokenizer import normalize_text

METRICS = ("cer", "loss")


class SupernetScorer:
    """``scorer(path) -> score`` (lower is better) of the search checkpoint ``ckpt`` on ``data``:
    ``metric`` ``cer`` or ``loss`` (CTC loss per target token); ``scorer.measure(path)`` gives both.

    ``split``: ``"arch"`` or ``"dev"``; None picks ``arch`` when the corpus has a non-empty one
    (``arch_fraction`` of train, as the search held it out), else ``dev``."""

    def __init__(
        self,
        ckpt: str | Path,
        data: str | Path,
        batches: int = 4,
        split: str | None = None,
        arch_fraction: float = 0.1,
        max_frames: int = 20000,
        device: str | torch.device | None = None,
        metric: str = "cer",
    ):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        from supernet.data.datamodule import SpeechDataModule
        from supernet.search.module import SearchModule

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.module = SearchModule.load_from_checkpoint(ckpt, map_location=self.device).eval()
        self.space, fields = self.module.space, self.module.space.fields
        sizes = {"n_mels": fields["feature_dim"], "n_mfcc": fields["feature_dim"]}
        self.datamodule = SpeechDataModule(
            str(data), features=fields["features"], **sizes, arch_fraction=arch_fraction,
            max_frames=max_frames, spec_augment=False, num_workers=0, check_audio=False,
        )  # fmt: skip
        self.datamodule.tokenizer = self.module.tokenizer  # the search's own symbols
        if split is None:
            split = "arch" if self.datamodule.splits["fit"]["arch"] else "dev"
        if split not in ("arch", "dev"):
            raise ValueError(f"split must be 'arch' or 'dev' (test sets never choose), got {split!r}")
        self.split, self.batches = split, batches
        self.norms = [m for m in self.module.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self._batches: dict[str, list[dict]] = {}

    def batches_of(self, split: str) -> list[dict]:
        """The featurized batches on the device (``train``: the first ``batches`` of them), read
        once: every path is measured on the same ones, so reading and featurizing the audio again
        for each (most of a candidate's cost when scoring on a GPU) would only repeat work."""
        if split not in self._batches:
            from supernet.asr_module import move_batch

            limit = self.batches if split == "train" else None
            self._batches[split] = [
                self.datamodule.featurize(move_batch(batch, self.device), augment=False)
                for batch in islice(self.datamodule.loader(split), limit)
            ]
        return self._batches[split]

    def __call__(self, path: dict[str, int]) -> float:
        return self.measure(path)[self.metric]

    @torch.no_grad()
    def measure(self, path: dict[str, int]) -> dict[str, float]:
        """The path's CER and CTC loss per target token on the split, BatchNorm recalibrated."""
        from torchmetrics.text import CharErrorRate

        net = self.module.net
        net.fix_path({name: int(index) for name, index in path.items()})
        if self.norms and self.batches:
            for norm in self.norms:
                norm.reset_running_stats()
                norm.momentum = None  # a plain average over the recalibration batches
                norm.train()
            for batch in self.batches_of("train"):
                net(batch["features"], batch["feature_lengths"])
            net.eval()
        cer, loss, utterances = CharErrorRate(), 0.0, 0
        for batch in self.batches_of(self.split):
            mean_loss, log_probs, lengths = self.module.ctc_loss(batch, net)
            count = len(batch["texts"])  # the loss is a mean over utterances of loss / target length
            loss, utterances = loss + float(mean_loss) * count, utterances + count
            cer.update(self.module.decode(log_probs, lengths), [normalize_text(t) for t in batch["texts"]])
        return {"cer": float(cer.compute()), "loss": loss / max(utterances, 1)}
