"""How well a supernet ranks architectures: each one scored with the supernet's inherited weights
(its path fixed, BatchNorm recalibrated) against its CER when trained alone; Kendall's tau.

Inherited weights are shared by every path, so a path's BatchNorm running statistics are the mix
of all paths trained; they are reset and re-estimated on ``batches`` train batches of the path
alone (as single-path one-shot NAS does) before its dev CER is measured. Dev only: test sets
never choose anything.
"""

from __future__ import annotations

import math
from itertools import islice
from pathlib import Path

import torch
from torch import nn

from supernet.archspec import ArchSpec
from supernet.data.tokenizer import normalize_text


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b (ties in either list are allowed, as scipy's default); None when undefined
    (fewer than two items, or every item tied in one list)."""
    concordance, untied_x, untied_y = 0, 0, 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            a = (x[i] > x[j]) - (x[i] < x[j])
            b = (y[i] > y[j]) - (y[i] < y[j])
            concordance, untied_x, untied_y = concordance + a * b, untied_x + (a != 0), untied_y + (b != 0)
    return concordance / math.sqrt(untied_x * untied_y) if untied_x and untied_y else None


def ranking_quality(
    scores: dict[str, dict[str, float]], standalone: dict[str, float]
) -> tuple[list[dict], float | None]:
    """Kendall's tau of each search's scores (``{search: {arch: dev CER}}``) against the stand-alone
    dev CER of the same architectures, and the mean of those that are defined."""
    ranking = []
    for search, score in scores.items():
        names = sorted(set(score) & set(standalone))
        tau = kendall_tau([score[n] for n in names], [standalone[n] for n in names])
        ranking.append({"search": search, "kendall_tau": tau, "archs": len(names)})
    taus = [r["kendall_tau"] for r in ranking if r["kendall_tau"] is not None]
    return ranking, sum(taus) / len(taus) if taus else None


def _features(datamodule, batch: dict, device: torch.device) -> dict:
    from supernet.asr_module import move_batch

    return datamodule.featurize(move_batch(batch, device), augment=False)


@torch.no_grad()
def supernet_cer(
    ckpt: str | Path, data: Path, archs: dict[str, ArchSpec], batches: int, max_frames: int = 20000
) -> dict[str, float]:
    """Dev CER of each architecture of ``archs`` that is a path of the search's space, with the
    weights of the search checkpoint ``ckpt`` (architectures outside the space are left out)."""
    from torchmetrics.text import CharErrorRate

    from supernet.data.datamodule import SpeechDataModule
    from supernet.search.module import SearchModule

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = SearchModule.load_from_checkpoint(ckpt, map_location=device).eval()
    space, fields = module.space, module.space.fields
    paths = {}
    for name, spec in archs.items():
        try:
            paths[name] = space.index_of(spec)
        except ValueError:
            continue
    sizes = {"n_mels": fields["feature_dim"], "n_mfcc": fields["feature_dim"]}
    datamodule = SpeechDataModule(
        str(data), features=fields["features"], **sizes, arch_fraction=0.0, max_frames=max_frames,
        spec_augment=False, num_workers=0, tokenizer_path=str(Path(ckpt).parents[1] / "tokenizer.json"),
        check_audio=False,
    )  # fmt: skip
    norms = [m for m in module.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    scores = {}
    for name, path in paths.items():
        module.net.fix_path(path)
        if norms and batches:
            for norm in norms:
                norm.reset_running_stats()
                norm.momentum = None  # a plain average over the recalibration batches
                norm.train()
            for batch in islice(datamodule.loader("train"), batches):
                batch = _features(datamodule, batch, device)
                module.net(batch["features"], batch["feature_lengths"])
            module.net.eval()
        cer = CharErrorRate()
        for batch in datamodule.loader("dev"):
            batch = _features(datamodule, batch, device)
            hyps = module.decode(*module.net(batch["features"], batch["feature_lengths"]))
            cer.update(hyps, [normalize_text(t) for t in batch["texts"]])
        scores[name] = float(cer.compute())
    return scores
