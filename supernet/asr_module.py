"""ASRModule: trains a fixed network with CTC and scores it with greedy decoding (WER, CER).

The module holds the recipe (loss, optimiser, schedule, decoding, metrics); the Trainer holds
the engineering (precision, clipping, devices). A search module subclasses it: the network is
``self.net`` and the steps are split into small methods (``ctc_loss``, ``decode``,
``_eval_step``) that it can override or call with another network.

Model selection: ``dev/score = (WER + CER) / 2``. In the first epochs of CTC training WER often
sits at 100% while CER already falls; the mean counts that progress, and WER dominates once
words come out right. Checkpointing and early stopping monitor it by default (configurable).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torchmetrics.text import CharErrorRate, WordErrorRate

from losses.ctc import ctc_loss, use_triton
from supernet.archspec import ArchSpec
from supernet.data.tokenizer import BLANK, UNKNOWN, normalize_text, tokenizer_from_vocab
from supernet.decoding import greedy_ctc_decode
from supernet.derived import DerivedNet
from supernet.divergence import Finding, FiniteWatch, nonfinite_tensors
from supernet.errors import NonFiniteError, UserError

SCHEDULES = ("cosine", "noam", "constant")


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Linear warm-up from ~0 to 1 over ``warmup_steps``, then ``cosine`` decay to ``min_ratio`` at
    ``total_steps``, ``noam`` decay (``sqrt(warmup / step)``), or ``constant``.
    """
    step = step + 1
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if step <= warmup_steps:
        return step / max(1, warmup_steps)
    if schedule == "constant":
        return 1.0
    if schedule == "noam":
        return math.sqrt(max(1, warmup_steps) / step)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@functools.cache
def _load_triton_ctc() -> bool:
    """Import ``supernet.accel.ctc_triton``, which registers the Triton CTC with ``losses.ctc``;
    False where Triton does not import (``"auto"`` then means PyTorch's)."""
    try:
        import supernet.accel.ctc_triton  # noqa: F401
    except ImportError:
        return False
    return True


def ctc_host_lengths(batch: dict[str, Any], net: nn.Module, implementation: str, device: torch.device):
    """``(output lengths, target lengths)`` on the host, from the lists ``SpeechDataModule`` keeps
    in ``batch["host_lengths"]``, for PyTorch's CTC; None when the Triton CTC runs (it reads the
    lengths on the device) or the batch has no host lengths. Call it before ``ctc_loss``: on CUDA
    it registers the Triton CTC that ``"auto"`` and ``"triton"`` choose."""
    if device.type == "cuda" and implementation in ("auto", "triton"):
        _load_triton_ctc()
    host = batch.get("host_lengths")
    if host is None or use_triton(implementation, device):
        return None
    return net.host_out_lengths(host["features"]), torch.tensor(host["targets"], dtype=torch.long)


def logs_written_now(trainer: pl.Trainer | None) -> bool:
    """Whether Lightning writes this training step's logs (every ``log_every_n_steps``). A
    ``self.log`` costs the host about 0.5 ms (the value's bookkeeping and device moves), which a
    step bound by the host feels; a value logged at any other step reaches no logger (only the
    callbacks' metrics: see ``CTCModule.monitored``)."""
    if trainer is None:  # a bare module, outside a Trainer
        return True
    return trainer._logger_connector.should_update_logs


def monitored_metrics(trainer: pl.Trainer | None) -> set[str]:
    """The metrics the trainer's callbacks monitor (``ModelCheckpoint``, ``EarlyStopping``, ...):
    a training metric among them is logged at every step, since those callbacks read the latest
    step's values whether or not a logger writes them."""
    if trainer is None:
        return set()
    return {m for cb in trainer.callbacks if isinstance(m := getattr(cb, "monitor", None), str)}


def move_batch(batch: Any, device: torch.device) -> Any:
    """Every tensor of ``batch`` (dicts, lists and tuples of them) on ``device``, copied without
    blocking the host except to the CPU and MPS (as Lightning's ``move_data_to_device``); a list or
    tuple with no tensor, dict, list or tuple in it is returned as it is."""
    device = torch.device(device)
    return _move(batch, device, device.type not in ("cpu", "mps"))


def _move(batch: Any, device: torch.device, non_blocking: bool) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {key: _move(value, device, non_blocking) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)) and any(
        isinstance(v, (torch.Tensor, dict, list, tuple)) for v in batch
    ):
        moved = [_move(value, device, non_blocking) for value in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


class CTCModule(pl.LightningModule):
    """The recipe shared by retraining and search: a tokenizer, CTC on ``self.net``, greedy
    decoding, and WER/CER per dev and test set. Subclasses build ``self.net`` and the optimizers.

    ``ctc_implementation``: ``"auto"`` (Triton on a GPU, PyTorch on the CPU) or ``"torch"``;
    benchmarks set it on an instance to compare the two."""

    ctc_implementation = "auto"
    op_graphs = None  # this fit's ``supernet.accel.cuda_graphs.OpGraphs`` (``hparams.cuda_graphs``)
    test_decoder = None  # the test sets' decoder (``supernet.decoding``, retrain's --decoder); None: greedy

    def __init__(self, vocab: list[str] | None):
        super().__init__()
        if vocab is None:
            raise ValueError(
                f"{type(self).__name__} needs the tokenizer's vocab (the command links it from the data)"
            )
        if list(vocab[:2]) != [BLANK, UNKNOWN]:
            raise ValueError(f"vocab must start with {BLANK!r}, {UNKNOWN!r}; got {list(vocab[:2])}")
        self.tokenizer = tokenizer_from_vocab(vocab)  # characters, or subword pieces (decode only)
        self.cmvn = None  # global CMVN statistics of a loaded checkpoint (``on_load_checkpoint``)
        self.vocab_size = len(self.tokenizer)
        self.metrics = nn.ModuleDict()  # split key -> ModuleDict(wer, cer), made on first use
        self.monitored: set[str] = set()  # metrics the callbacks monitor, read at each fit's start
        self.ctc_report: dict | None = None  # set by check_ctc_feasible before training
        self.finite_watch = FiniteWatch()  # this epoch's losses (and alphas), read at log steps
        self._finite_read_due = False  # a log step: read the watch once the step is done

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A subword model encodes (``evaluate``'s targets, ``select``'s CTC loss) only with its
        sentencepiece model, and a model trained with global CMVN is fed features normalised with
        its statistics (``cmvn``: evaluate, transcribe, export), with the FFT size they were made with
        (``checkpoint_n_fft``; None: saved before it was recorded): the checkpoint's data-module state
        carries them, read here with the checkpoint itself. A resumed fit's data module gets that FFT
        size here too when the checkpoint has no data-module state (Lightning then restores none)."""
        from supernet.data.datamodule import (
            SpeechDataModule,
            checkpoint_cmvn,
            checkpoint_n_fft,
            checkpoint_tokenizer,
        )

        super().on_load_checkpoint(checkpoint)
        self.tokenizer = checkpoint_tokenizer(checkpoint, self.tokenizer)
        # beside the network, not a submodule: it is no part of the state_dict being loaded
        vars(self)["cmvn"] = checkpoint_cmvn(checkpoint)
        vars(self)["checkpoint_n_fft"] = checkpoint_n_fft(checkpoint)
        datamodule = getattr(self._trainer, "datamodule", None)
        if isinstance(datamodule, SpeechDataModule) and SpeechDataModule.__qualname__ not in checkpoint:
            datamodule.load_state_dict({})

    def check_feature_dim(self, expected: int, source: str, what: str) -> None:
        """A clear error when the data module's features do not fit the network's input."""
        feature_dim = getattr(getattr(self.trainer, "datamodule", None), "feature_dim", None)
        if feature_dim is not None and feature_dim != expected:
            raise UserError(
                f"{source}: dim mismatch: {what} expects feature_dim {expected}, "
                f"the data module makes {feature_dim}-d features"
            )

    def check_ctc_feasible(self, stride: int, what: str) -> None:
        """Before the first step: training on utterances too short for their transcripts at this
        stride would be CTC losses zeroed in silence (``SpeechDataModule.check_ctc`` refuses or
        drops them, and counts them in ``ctc_report``)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if hasattr(datamodule, "check_ctc"):
            self.ctc_report = datamodule.check_ctc(stride, what)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        return self.net(features, lengths)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Lightning's default visits every element of every list (host lengths, texts) through
        ``apply_to_collection``: about 1 ms of host time a search step at batch 32, where the host
        bounds the step. ``move_batch`` treats lists without tensors as leaves."""
        return move_batch(batch, device)

    def on_train_start(self) -> None:
        """CUDA graphs for the training steps (``hparams.cuda_graphs``), made anew for each fit;
        the metrics the callbacks monitor (``monitored_metrics``)."""
        self.op_graphs = None
        if self.hparams.get("cuda_graphs") and self.device.type == "cuda":
            from supernet.accel.cuda_graphs import use_cuda_graphs  # lazily: the model imports no accel

            self.op_graphs = use_cuda_graphs(self.net)
        else:
            self.net.set_runner(None)
        self.monitored = monitored_metrics(self._trainer)

    def on_train_end(self) -> None:
        if self.op_graphs is not None:
            rank_zero_info(f"CUDA graphs: {self.op_graphs.summary()}")
        self.op_graphs = None
        self.net.set_runner(None)  # eager again: frees the graphs' memory pools and buffers
        self.check_finite(f"at the end of training (step {self.divergence_step()})")

    # --- divergence: a non-finite loss, weight or alpha stops the run (supernet.divergence) -----
    run_name = "training"  # the command, as the messages name it

    def watch_finite(self, kind: str, values: torch.Tensor, step: int, read_now: bool, segments=None) -> None:
        """Keep a step's value for the next check (no device work, no host wait); ``read_now``: the
        host reads this step's logs anyway, so the check runs once the step is done."""
        if self._trainer is None:  # a bare module: nothing would ever read the records
            return
        self.finite_watch.record(kind, values, step, self.current_epoch, segments)
        self._finite_read_due = self._finite_read_due or read_now

    def check_finite(self, when: str) -> None:
        """Raise ``NonFiniteError`` on the first non-finite value recorded since the last check,
        else on the current state (``nonfinite_state``). One copy to the host: call it only where
        the host waits for the device anyway."""
        self._finite_read_due = False
        finding = self.finite_watch.first_nonfinite()
        if finding is not None:
            raise NonFiniteError(self.divergence_message(finding))
        problem = self.nonfinite_state(when)
        if problem is not None:
            raise NonFiniteError(f"{self.run_name}: {problem}")

    def nonfinite_state(self, when: str) -> str | None:
        """What of the module's state is not finite now (its weights), or None."""
        bad = nonfinite_tensors(self.net.named_parameters(prefix="net"))
        if not bad:
            return None
        count = f"{len(bad)} tensors hold" if len(bad) > 1 else "1 tensor holds"
        return f"weights: {count} NaN/inf {when}, first {bad[0]}: {self.weight_advice()}"

    def divergence_message(self, finding: Finding) -> str:
        """The error for the first non-finite recorded value (subclasses name their own kinds)."""
        return (
            f"{self.run_name}: the {finding.kind} became {finding.value_name} at step {finding.step} "
            f"(epoch {finding.epoch}): {self.weight_advice()}"
        )

    def weight_advice(self) -> str:
        return "the weights diverged; lower --model.lr"

    def divergence_step(self) -> int:
        """The step number the messages give (the logs' step)."""
        return self.global_step

    def _when(self) -> str:
        return f"after step {self.divergence_step()} (epoch {self.current_epoch})"

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The check at log steps (the host reads the logged values there anyway) and at every
        epoch's last batch, before callbacks write the epoch's results (``AlphaLogger``)."""
        trainer = self._trainer
        last = trainer is not None and trainer.is_last_batch
        if self._finite_read_due or last or self.finite_watch.full:
            self.check_finite(self._when())

    def on_train_epoch_end(self) -> None:
        self.check_finite(self._when())  # an epoch whose last batch was not known as such

    def on_validation_start(self) -> None:
        """No dev result from a model that diverged: NaN weights would score as an ordinary WER of 1."""
        self.check_finite(f"before validation ({self._when()})")

    def on_test_start(self) -> None:
        self.check_finite(f"before testing ({self._when()})")

    def ctc_loss(self, batch: dict[str, Any], net: nn.Module | None = None):
        """CTC loss of ``net`` (default ``self.net``) on a batch; also returns its outputs."""
        net = self.net if net is None else net
        log_probs, out_lengths = net(batch["features"], batch["feature_lengths"])
        loss = ctc_loss(
            log_probs,
            out_lengths,
            batch["targets"],
            batch["target_lengths"],
            host_lengths=ctc_host_lengths(batch, net, self.ctc_implementation, log_probs.device),
            implementation=self.ctc_implementation,
        )
        return loss, log_probs, out_lengths

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return greedy_ctc_decode(log_probs, lengths, self.tokenizer)

    def split_metrics(self, split: str) -> nn.ModuleDict:
        """WER and CER accumulators of one split (``dev``, ``test/<name>``)."""
        key = split.replace("/", "__").replace(".", "_")
        if key not in self.metrics:
            self.metrics[key] = nn.ModuleDict({"wer": WordErrorRate(), "cer": CharErrorRate()}).to(
                self.device
            )
        return self.metrics[key]

    def weight_adamw(self, params, lr: float | None = None) -> torch.optim.AdamW:
        """AdamW over the trainable ``params`` at ``lr`` (default ``hparams.lr``), weight decay on
        matrices only, not biases and norms."""
        params = [p for p in params if p.requires_grad]
        return torch.optim.AdamW(
            [
                {"params": [p for p in params if p.dim() >= 2], "weight_decay": self.hparams.weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            ],
            lr=self.hparams.lr if lr is None else lr,
        )

    def weight_optimizer(self, params) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
        """AdamW over ``params`` (weight decay on matrices only, not biases and norms) and its
        per-step schedule: warm-up, then ``hparams.schedule`` decay over the run's steps.

        Not the fused AdamW: Lightning refuses to clip its gradients (it assumes fused optimizers
        unscale fp16 gradients themselves), and it saved only 7 of 316 kernels a step on an H200."""
        hp = self.hparams
        optimizer = self.weight_adamw(params)
        total = self.trainer.estimated_stepping_batches  # inf without a step/epoch limit: no decay
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, hp.warmup_steps, total, hp.schedule, hp.min_lr_ratio)
        )
        return optimizer, scheduler

    # --- evaluation -----------------------------------------------------------------------
    def _eval_step(self, batch: dict[str, Any], split: str) -> torch.Tensor:
        loss, log_probs, out_lengths = self.ctc_loss(batch)
        testing = self.test_decoder is not None and split.startswith("test/")
        hyps = (self.test_decoder if testing else self.decode)(log_probs, out_lengths)
        refs = [normalize_text(t) for t in batch["texts"]]
        metrics = self.split_metrics(split)
        metrics["wer"].update(hyps, refs)
        metrics["cer"].update(hyps, refs)
        # each DDP rank evaluates its shard of the split: the epoch's loss is their mean
        self.log(f"{split}/loss", loss, batch_size=len(refs), add_dataloader_idx=False, sync_dist=True)
        return loss

    def _log_split(self, split: str, prog_bar: bool = False) -> dict[str, float]:
        metrics = self.split_metrics(split)
        if not metrics["wer"].update_called:
            return {}
        values = {name: float(metric.compute()) for name, metric in metrics.items()}
        for name, metric in metrics.items():  # compute() already gathered every rank's counts:
            self.log(f"{split}/{name}", values[name], prog_bar=prog_bar, sync_dist=True)  # equal on all
            metric.reset()
        return values

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self._eval_step(batch, "dev")

    def on_validation_epoch_end(self) -> None:
        values = self._log_split("dev", prog_bar=True)
        if values:
            self.log("dev/score", (values["wer"] + values["cer"]) / 2, sync_dist=True)

    def test_names(self) -> list[str]:
        datamodule = getattr(self.trainer, "datamodule", None)
        return list(getattr(datamodule, "test_names", []) or [])

    def test_split(self, dataloader_idx: int) -> str:
        names = self.test_names()
        name = names[dataloader_idx] if dataloader_idx < len(names) else f"set{dataloader_idx}"
        return f"test/{name}"

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self._eval_step(batch, self.test_split(dataloader_idx))

    def on_test_epoch_end(self) -> None:
        names = self.test_names() or [f"set{i}" for i in range(len(self.trainer.num_test_batches))]
        for name in names:
            self._log_split(f"test/{name}")


class ASRModule(CTCModule):
    """CTC training of the network an ArchSpec describes.

    Args:
        arch: an ArchSpec YAML path or its dict; stored as a dict in the checkpoint, so
            ``ASRModule.load_from_checkpoint(ckpt)`` needs no file.
        vocab: the tokenizer's vocabulary (blank, unknown, characters or subword pieces);
            the retrain command links it from the data module.
        lr: peak learning rate of AdamW. warmup_steps: linear warm-up length in optimizer steps.
        weight_decay: AdamW decay, on weight matrices only (not on biases and norms).
        schedule: ``cosine`` (to ``min_lr_ratio * lr`` at the last step), ``noam`` or ``constant``.
        cuda_graphs: on a GPU, replay each op's training forward and backward as CUDA graphs
            (``supernet.accel.cuda_graphs``): fewer host launches where they bind the step; costs a
            capture per op and batch shape (pad features with ``data.pad_frames`` to keep few).
    """

    def __init__(
        self,
        arch: str | dict,
        vocab: list[str] | None = None,
        lr: float = 1e-3,
        warmup_steps: int = 500,
        weight_decay: float = 0.01,
        schedule: str = "cosine",
        min_lr_ratio: float = 0.05,
        cuda_graphs: bool = False,
    ):
        super().__init__(vocab)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule: unknown {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        self.spec = ArchSpec.load(arch)
        self.save_hyperparameters(
            {
                "arch": self.spec.to_dict(),
                "vocab": list(vocab),
                "lr": lr,
                "warmup_steps": warmup_steps,
                "weight_decay": weight_decay,
                "schedule": schedule,
                "min_lr_ratio": min_lr_ratio,
                "cuda_graphs": cuda_graphs,
            }
        )
        self.net = self.build_net()

    # --- pieces a subclass overrides ------------------------------------------------------
    def build_net(self) -> nn.Module:
        return DerivedNet(self.spec, len(self.tokenizer))

    def setup(self, stage: str) -> None:
        self.check_feature_dim(self.spec.feature_dim, self.spec.source, f"architecture {self.spec.name!r}")
        self.check_ctc_feasible(self.spec.total_stride, f"architecture {self.spec.name!r}")

    # --- training -------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self.ctc_loss(batch)
        log_now = logs_written_now(self._trainer)
        self.watch_finite("training loss", loss, self.global_step, read_now=log_now)
        if "train/loss" in self.monitored or log_now:
            self.log("train/loss", loss, prog_bar=True, batch_size=batch["targets"].size(0))
        return loss

    # --- divergence -----------------------------------------------------------------------
    run_name = "retrain"

    def weight_advice(self) -> str:
        clip = getattr(self._trainer, "gradient_clip_val", None)
        clip = (
            f"lower --trainer.gradient_clip_val (now {clip})" if clip else "set --trainer.gradient_clip_val"
        )
        return f"the weights diverged; lower --model.lr (now {self.hparams.lr}) or {clip}"

    # --- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer, scheduler = self.weight_optimizer(self.net.parameters())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
