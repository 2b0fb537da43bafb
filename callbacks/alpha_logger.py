"""What the search believes, every epoch: per-edge probabilities, entropy, the argmax path.

Writes ``RUN/alpha_history.jsonl`` (one line an epoch), ``RUN/alphas/epoch_NNN.png`` (a heatmap),
``RUN/arch_epoch_NNN.yaml`` and, once the search stage runs, ``RUN/arch.yaml`` (the current argmax
ArchSpec), and sends the table and the image to W&B when the run logs there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl

from supernet.loggers import can_plot, pyplot
from supernet.outputs import atomic_write_text


def plot_alpha_heatmap(
    probs: dict[str, list[float]], labels: dict[str, list[str]], path: Path, title: str
) -> None:
    import numpy as np

    plt = pyplot()

    width = max(len(v) for v in probs.values())
    grid = np.full((len(probs), width), np.nan)
    for row, values in enumerate(probs.values()):
        grid[row, : len(values)] = values
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * width, 0.8 + 0.45 * len(probs)))
    ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for row, name in enumerate(probs):
        for col, (label, p) in enumerate(zip(labels[name], probs[name])):
            ax.text(
                col,
                row,
                f"{label}\n{p:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if p < 0.6 else "black",
            )
    ax.set_yticks(range(len(probs)), list(probs))
    ax.set_xticks([])
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _epoch_of(line: str) -> int | None:
    """A history line's epoch; None for a line cut short by a kill mid-append."""
    try:
        return int(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None


class AlphaLogger(pl.Callback):
    """Logs and writes the architecture distribution at the end of every training epoch."""

    def __init__(self, heatmap: bool = True):
        self.heatmap = heatmap

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A resumed run drops the lines of epochs after its checkpoint (a run killed between
        writing an epoch's line and saving its checkpoint would otherwise list that epoch twice).
        Without matplotlib (the ``plots`` extra) the heatmaps are skipped, said in one line."""
        picks = getattr(pl_module, "picks_architecture", True)
        if self.heatmap and picks and trainer.is_global_zero and not can_plot("alpha heatmaps (RUN/alphas/)"):
            self.heatmap = False
        history = Path(trainer.default_root_dir) / "alpha_history.jsonl"
        if not trainer.is_global_zero or not history.is_file():
            return
        lines = history.read_text().splitlines()
        kept = [
            line for line in lines if _epoch_of(line) is not None and _epoch_of(line) < trainer.current_epoch
        ]
        if len(kept) != len(lines):
            atomic_write_text(history, "".join(line + "\n" for line in kept))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not getattr(pl_module, "picks_architecture", True):
            return  # uniform: the alphas never learn, so there is nothing to show
        arch = pl_module.arch
        epoch = trainer.current_epoch
        probs = {name: p.detach().float().cpu().tolist() for name, p in arch.probs().items()}
        spec = pl_module.current_archspec()
        entropy = arch.mean_normalised_entropy()
        pl_module.log("search/entropy", entropy, on_step=False, on_epoch=True, sync_dist=False)
        if not trainer.is_global_zero:
            return
        run = Path(trainer.default_root_dir)
        record = {
            "epoch": epoch,
            "stage": pl_module.stage,
            "probs": probs,
            "labels": arch.labels,
            "argmax": arch.argmax_labels(),
            "entropy": entropy,
            "params": spec.params(pl_module.vocab_size),
            "parameter_free": spec.parameter_free_count,
        }
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "alpha_history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        spec.to_yaml(run / f"arch_epoch_{epoch:03d}.yaml")
        if pl_module.stage == "search":  # in warm-up the alphas have not moved: a tie-break, not a result
            spec.to_yaml(run / "arch.yaml")
        image = run / "alphas" / f"epoch_{epoch:03d}.png"
        if self.heatmap:
            plot_alpha_heatmap(probs, arch.labels, image, f"alpha probabilities, epoch {epoch}")
        self._send_to_wandb(trainer, arch, image if self.heatmap else None)

    @staticmethod
    def _send_to_wandb(trainer: pl.Trainer, arch, image: Path | None) -> None:
        for logger in trainer.loggers:
            if type(logger).__name__ != "WandbLogger":
                continue
            rows = arch.table()
            logger.log_table(
                "search/alphas",
                columns=["edge", "candidate", "prob"],
                data=[[r["edge"], r["candidate"], r["prob"]] for r in rows],
            )
            if image is not None:
                logger.log_image("search/alpha_heatmap", [str(image)])
