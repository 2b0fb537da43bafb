"""A path's CER with a trained supernet's inherited weights (``supernet select``, ``supernet study``).

Inherited weights are shared by every path, so a path's BatchNorm running statistics are the mix
of all paths trained; they are reset and re-estimated on ``batches`` train batches of the path
alone (as single-path one-shot NAS does) before its CER is measured on one held-out split:
``arch`` (the search's held-out part of train) when the corpus gives one, else ``dev``. Test sets
never choose anything.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import torch
from torch import nn

from supernet.data.tokenizer import normalize_text


class SupernetScorer:
    """``scorer(path) -> CER`` (lower is better) of the search checkpoint ``ckpt`` on ``data``.

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
    ):
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

    def _features(self, batch: dict) -> dict:
        from supernet.asr_module import move_batch

        return self.datamodule.featurize(move_batch(batch, self.device), augment=False)

    @torch.no_grad()
    def __call__(self, path: dict[str, int]) -> float:
        from torchmetrics.text import CharErrorRate

        net = self.module.net
        net.fix_path({name: int(index) for name, index in path.items()})
        if self.norms and self.batches:
            for norm in self.norms:
                norm.reset_running_stats()
                norm.momentum = None  # a plain average over the recalibration batches
                norm.train()
            for batch in islice(self.datamodule.loader("train"), self.batches):
                batch = self._features(batch)
                net(batch["features"], batch["feature_lengths"])
            net.eval()
        cer = CharErrorRate()
        for batch in self.datamodule.loader(self.split):
            batch = self._features(batch)
            hyps = self.module.decode(*net(batch["features"], batch["feature_lengths"]))
            cer.update(hyps, [normalize_text(t) for t in batch["texts"]])
        return float(cer.compute())
