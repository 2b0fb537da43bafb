"""The Lightning plumbing of ``SearchModule``, kept apart from the search's recipe.

What the Trainer needs and the search's meaning does not: a host copy of the step counter (the
buffer is read once after a load, not every step), logging only where the host reads anyway,
precision-aware clipping, checkpoint state of the objective and the method, the refusal of a
``DistributedDataParallel`` wrapper, evaluation on the current best path, and what the first
non-finite value says (``supernet.divergence``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from supernet.divergence import Finding
from supernet.errors import UserError


class SearchHooks:
    """Mixed into ``SearchModule`` (before ``CTCModule``); reads its ``search``, ``arch``, ``net``."""

    run_name = "search"  # the command, as the divergence messages name it
    _host_step: int | None = None
    _eval_path: dict[str, int] | None = None  # the path evaluated, read once per evaluation

    # --- the step counter on the host ---------------------------------------------------------
    def host_step(self) -> int:
        """The ``search_step`` buffer, read from the device once after each load."""
        if self._host_step is None:
            self._host_step = int(self.search_step)
        return self._host_step

    def advance_step(self) -> None:
        self.search_step += 1
        self._host_step = self.host_step() + 1

    # --- logging ------------------------------------------------------------------------------
    def log_now(self, step: int) -> bool:
        """Lightning writes the logs of steps with (step + 1) % log_every_n_steps == 0; a bare
        module (no Trainer) logs always."""
        trainer = self._trainer
        return trainer is None or (step + 1) % max(1, trainer.log_every_n_steps) == 0

    def log_values(self, values: dict[str, Any], log_now: bool, batch: dict[str, Any], prog_bar=()) -> None:
        """Values go to the log at log steps (a host read) and where a callback monitors them."""
        for name, value in values.items():
            if log_now or name in self.monitored:
                self.log(name, value, prog_bar=name in prog_bar, batch_size=batch["targets"].size(0))

    def clip(self, optimizer) -> None:
        """Lightning's clipping (it unscales fp16 gradients first)."""
        self.clip_gradients(
            optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm"
        )

    # --- fit, checkpoints ---------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._host_step = None  # DDP broadcasts rank 0's buffers before this hook
        self.finite_watch.forget()
        self.check_finite("at the start of the search (the checkpoint or the initial values)")
        if isinstance(self.trainer.strategy.model, DistributedDataParallel):
            raise UserError(
                "SearchModule cannot run under a DistributedDataParallel wrapper (two passes a step, "
                "unsampled candidates): use --trainer.strategy search_ddp (`supernet search` picks it)"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["objective"] = self.search.objective.state_dict()  # `supernet extract` needs no table
        checkpoint["relaxation"] = self.search.relaxation.state_dict(self.arch)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "pick" not in checkpoint.get("hyper_parameters", {}):  # searched before model.pick: argmax,
            self.hparams.pick = "argmax"  # as `supernet extract` reads it, also when it resumes
        self._host_step = None
        self.search.relaxation.load_state_dict(checkpoint.get("relaxation", {}))

    def forget_loaded_state(self, incompatible_keys=None) -> None:
        """After ``load_state_dict``: the step and the host copies of older alphas are stale."""
        self._host_step = None
        self.arch.forget_host_copies()

    # --- evaluation: the current best path, with the shared weights --------------------------
    def on_validation_epoch_start(self) -> None:
        self._eval_path = self.chosen_path()  # once per evaluation: it reads the alphas back

    on_test_epoch_start = on_validation_epoch_start

    def _eval_step(self, batch: dict[str, Any], split: str) -> torch.Tensor:
        self.net.fix_path(self._eval_path or self.chosen_path())
        return super()._eval_step(batch, split)

    # --- divergence: what the first non-finite value says -------------------------------------
    def divergence_step(self) -> int:
        return self._host_step if self._host_step is not None else int(self.search_step)

    def weight_advice(self) -> str:
        hp = self.hparams
        return (
            f"the weights diverged; lower --model.lr (now {hp.lr}) or --model.grad_clip (now {hp.grad_clip})"
        )

    def alpha_advice(self) -> str:
        return f"the alphas diverged; lower --model.arch_lr (now {self.hparams.arch_lr})"

    def divergence_message(self, finding: Finding) -> str:
        when = f"at step {finding.step} (epoch {finding.epoch})"
        if finding.kind == "alpha":
            return f"search: alpha {finding.part!r} became {finding.value_name} {when}: {self.alpha_advice()}"
        if finding.kind == "alpha gradient":
            return (
                f"search: the gradient of alpha {finding.part!r} became {finding.value_name} {when} while the "
                f"arch-step loss was finite: a candidate's output is not finite, so {self.weight_advice()}"
            )
        return f"search: the {finding.kind} became {finding.value_name} {when}: {self.weight_advice()}"

    def nonfinite_state(self, when: str) -> str | None:
        """The alphas (which the evaluation's path and ``arch.yaml`` come from), then the weights."""
        edges = self.arch.nonfinite_edges()
        if edges:
            return f"alpha {edges[0]!r} holds NaN/inf {when}: {self.alpha_advice()}"
        return super().nonfinite_state(when)
