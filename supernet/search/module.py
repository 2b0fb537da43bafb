"""SearchModule: DARTS, SNAS (Gumbel) and ST-NAS on one supernet, by manual optimisation.

The recipe (CTC, decoding, WER/CER) is ``CTCModule``'s, shared with retraining; this module adds the two-optimizer
search loop, in the shape of NNI's ``DartsLightningModule``:

- stage ``warmup`` (set by ``callbacks.StageSwitch``): uniform single-path sampling, weights only;
- stage ``search``: an architecture step on an ``arch`` batch (gradient for the alphas only:
  ``torch.autograd.grad`` never computes the weight gradients it would throw away, nor do ops
  replayed as CUDA graphs, which replay a backward graph of their input gradient alone), then a weight step on a
  ``train`` batch with the alphas frozen.

The method is only a plan maker (``supernet.search.relaxations``); the path sampled at a step depends on
``(seed, step)`` alone, so every DDP rank runs the same path and a resumed run draws the same
paths as an uninterrupted one. The step counter lives in a buffer, saved in every checkpoint, with
a host-side mirror read back after loading.

The step reads nothing back from the device but the alphas, once per step (both of the step's
paths are drawn from the alphas at its start; the copy is started right after the previous arch
update; with ``sample_ahead``, the copy of the update before, which is done: no wait), and CTC
gets its lengths from the host; the losses, argmax path, costs and entropy go to the log every
``log_every_n_steps`` steps only, and the penalty stays on the device. Divergence is found without
a wait either: the step keeps its losses, and the alphas' gradient and values after each update
(one concatenation on the device), and they are checked where the host reads the logs, at each
epoch's last batch and before every evaluation (``CTCModule.check_finite``); the first that is not
finite names the cause (a loss: the weights; an alpha with a finite gradient: the arch_lr).

Several GPUs: ``SearchDDPStrategy`` (``supernet search`` picks it for any DDP run). Lightning's
plain DDP wraps the module in ``DistributedDataParallel``, whose reducer expects one backward per
forward over every parameter; a search step runs two passes (``autograd.grad`` for the alphas,
then a backward for the weights) and leaves the unsampled candidates without gradients, so plain
DDP needs ``find_unused_parameters=True`` (a graph walk per step, and an all-reduce of zeros for
every unsampled candidate). Instead the strategy does not wrap the module: rank 0's weights are
broadcast once, every rank samples the same path (the sampler depends on ``(seed, step)`` and on
alphas that stay identical), the alpha gradients are averaged in ``arch_step`` and the weight
gradients that exist (the sampled path's) during ``weight_step``'s backward, in buckets that are
all-reduced while backward goes on (``supernet.accel.grad_sync``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from supernet.accel.grad_sync import OverlappedGradientAverager, average_gradients, world_size
from supernet.archspec import ArchSpec
from supernet.asr_module import CTCModule
from supernet.divergence import Finding
from supernet.errors import NonFiniteError, UserError
from supernet.latency import PENALTY_ARGS, choose_path, search_costs
from supernet.search.arch_params import ArchParams, NotADistributionError
from supernet.search.network import Supernet
from supernet.search.relaxations import METHODS, make_plan
from supernet.search.space import SearchSpace


class SearchModule(CTCModule):
    """Architecture search over a ``SearchSpace``.

    Args:
        space: a space YAML path, a shipped space name (``st_nas``) or its dict.
        vocab: the tokenizer's vocabulary (linked from the data module by ``supernet search``).
        method: ``darts`` | ``gumbel`` | ``st`` | ``uniform`` (single-path one-shot, no alphas).
        hard: Gumbel with a hard one-hot forward (GDAS) instead of the soft SNAS mixture.
        lr, warmup_steps, weight_decay, schedule, min_lr_ratio: the weight optimizer (AdamW).
        arch_lr, arch_weight_decay: the alphas' Adam (betas 0.5, 0.999 as in DARTS).
        grad_clip: max norm of the weight gradients (manual optimisation clips itself).
        seed: seeds the alphas' initial noise and the path sampler.
        latency_table: a ``supernet profile`` table (JSON); expected latency is then logged.
        penalty: ``none`` | ``additive`` | ``multiplicative`` | ``hinge`` (``losses.latency``) on
            ``penalty_target`` (``latency`` | ``params``) with ``penalty_lambda``, ``penalty_beta``,
            ``budget`` (hinge; ms or parameters) and ``reference`` (default: the uniform start).
        ddp_overlap: on several ranks, all-reduce the weight gradients in buckets during backward
            (``supernet.accel.grad_sync``) instead of in one pass after it.
        cuda_graphs: on a GPU, replay each sampled op's forward and backward, and ST's recomputed
            scores, as CUDA graphs (``supernet.accel.cuda_graphs``); darts and soft gumbel, which run
            every candidate in one pass, stay eager.
        sample_ahead: st only. Draw a step's paths from the alphas as they were before the last
            arch update (one update old; the same on every rank, and saved in checkpoints), so
            that the host never waits for the device to finish that update, nor, on several GPUs,
            for the other ranks' alpha all-reduce. Off: the paper's recipe, which samples from the
            current alphas and waits for them once per step.
    """

    def __init__(
        self,
        space: str | dict,
        vocab: list[str] | None = None,
        method: str = "st",
        hard: bool = False,
        lr: float = 2e-3,
        warmup_steps: int = 200,
        weight_decay: float = 0.01,
        schedule: str = "cosine",
        min_lr_ratio: float = 0.05,
        arch_lr: float = 3e-3,
        arch_weight_decay: float = 1e-3,
        grad_clip: float = 5.0,
        seed: int = 0,
        latency_table: str | None = None,
        penalty: str = "none",
        penalty_target: str = "latency",
        penalty_lambda: float = 0.1,
        penalty_beta: float = 0.6,
        budget: float | None = None,
        reference: float | None = None,
        ddp_overlap: bool = True,
        cuda_graphs: bool = False,
        sample_ahead: bool = False,
    ):
        super().__init__(vocab)
        if method not in METHODS:
            raise UserError(f"model.method: unknown {method!r}; choose one of {', '.join(METHODS)}")
        self.automatic_optimization = False
        self.space = SearchSpace.load(space)
        self.save_hyperparameters(
            {
                "space": self.space.to_dict(),
                "vocab": list(vocab),
                "method": method,
                "hard": hard,
                "lr": lr,
                "warmup_steps": warmup_steps,
                "weight_decay": weight_decay,
                "schedule": schedule,
                "min_lr_ratio": min_lr_ratio,
                "arch_lr": arch_lr,
                "arch_weight_decay": arch_weight_decay,
                "grad_clip": grad_clip,
                "seed": seed,
                "latency_table": latency_table,
                "penalty": penalty,
                "penalty_target": penalty_target,
                "penalty_lambda": penalty_lambda,
                "penalty_beta": penalty_beta,
                "budget": budget,
                "reference": reference,
                "ddp_overlap": ddp_overlap,
                "cuda_graphs": cuda_graphs,
                "sample_ahead": sample_ahead,
            }
        )
        self.costs = search_costs(self.space, self.vocab_size, **{k: self.hparams[k] for k in PENALTY_ARGS})
        self.net = Supernet(self.space, self.vocab_size)
        self.arch = ArchParams(self.space.edges, seed=seed)
        self.register_buffer("search_step", torch.zeros((), dtype=torch.long))
        # a host mirror of ``search_step`` (reading the buffer every step would sync with the device);
        # None means "read the buffer once": after loading a state dict or a checkpoint, at fit start
        self._host_step: int | None = None
        self._restored_copies: list[torch.Tensor] | None = None  # sample_ahead's, from a checkpoint
        self.register_load_state_dict_post_hook(_forget_host_step)
        self._averager: OverlappedGradientAverager | None = None  # set at fit start on several ranks
        self._eval_path: dict[str, int] | None = None  # the path evaluated, read once per evaluation
        self._stage: str | None = None  # StageSwitch sets it at every epoch start (see ``stage``)
        self.tau = 1.0  # TemperatureSchedule anneals it for gumbel

    def chosen_path(self) -> dict[str, int]:
        """The argmax of every edge; under a hinge budget, the most probable path within the budget
        when the argmax is over it (``SpaceCosts.most_probable_within``)."""
        return choose_path(dict(self.arch.alphas), self.costs.target_costs, self.path_budget)

    @property
    def path_budget(self) -> float | None:
        """The budget an extracted path must meet: the hinge penalty's, else none."""
        return self.hparams.budget if self.hparams.penalty == "hinge" else None

    def alphas_moved(self, atol: float = 1e-6) -> bool:
        """Whether the search moved the alphas from their start (``ArchParams.moved``): when not,
        the chosen architecture is a tie-break (arch_lr 0, method uniform, no search epoch)."""
        return self.arch.moved(atol)

    def current_archspec(self) -> ArchSpec:
        return self.space.derive(self.chosen_path(), name=f"{self.space.name}-{self.hparams.method}")

    def setup(self, stage: str) -> None:
        self.check_feature_dim(
            self.space.fields["feature_dim"], self.space.source, f"space {self.space.name!r}"
        )
        # every path must be trainable: judged at the largest stride any path of the space has
        self.check_ctc_feasible(self.space.max_total_stride, f"space {self.space.name!r}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        costs = self.costs.target_costs
        if costs is not None:  # what `supernet extract` needs to honour the budget without the table
            checkpoint["target_costs"] = {"metric": costs.metric, "fixed": costs.fixed, "edges": costs.edges}
        if self.hparams.get("sample_ahead"):  # the alphas one update old, which the next step samples from
            checkpoint["sampling_alphas"] = self.arch.host_copies()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._host_step = None
        # put back at the first step: loading the state dict, which comes next, forgets the copies
        self._restored_copies = checkpoint.get("sampling_alphas")

    def on_fit_start(self) -> None:
        self._host_step = None  # DDP broadcasts rank 0's buffers before this hook
        self.finite_watch.forget()
        self.check_finite("at the start of the search (the checkpoint or the initial values)")
        if world_size() > 1 and self._averager is None and self.hparams.ddp_overlap:
            self._averager = OverlappedGradientAverager(self.net.parameters())
        if isinstance(self.trainer.strategy.model, DistributedDataParallel):
            raise ValueError(
                "SearchModule under a DistributedDataParallel wrapper: its reducer cannot follow a search "
                "step (two passes, unsampled candidates); use strategy=SearchDDPStrategy() or "
                "--trainer.strategy search_ddp (the default of `supernet search` on several devices)"
            )

    def on_fit_end(self) -> None:
        if self._averager is not None:
            self._averager.remove()
            self._averager = None

    # --- the search loop --------------------------------------------------------------------
    def _plan(self, phase: str, step: int, host_probs: dict[str, torch.Tensor] | None = None) -> None:
        method = "uniform" if self.stage == "warmup" else self.hparams.method
        # weight and arch steps draw from different generator streams of the same (seed, step)
        try:
            plan = make_plan(
                self.arch,
                method,
                phase,
                2 * step + (phase == "arch"),
                tau=self.tau,
                hard=self.hparams.hard,
                host_probs=host_probs,
            )
        except NotADistributionError as err:  # the alphas are not finite: find out what made them so
            self.check_finite(f"at step {step} (epoch {self.current_epoch})")
            raise NonFiniteError(  # nothing recorded is: the probabilities came from an older copy
                f"search: {err} at step {step}, though the alphas are finite now: the copy of the alphas "
                "it was drawn from is not (sample_ahead's, restored from the checkpoint)"
            ) from err
        self.net.apply_plan(plan)

    def arch_step(
        self, batch: dict[str, Any], step: int, host_probs: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """One Adam step of the alphas on a held-out batch; the weights get no gradient."""
        _, arch_opt = self.optimizers()
        self._plan("arch", step, host_probs)
        with self.net.input_grads_only():  # graphed ops: no weight gradients, which nobody reads
            loss, _, _ = self.ctc_loss(batch)
        if self._log_now(step):  # the logged costs need the argmax path on the host: a sync
            loss, costs = self.costs.penalised(loss, self.arch.probs(), self.arch.argmax())
            for name, value in costs.items():
                self.log(name, value, batch_size=batch["targets"].size(0))
        elif self.costs.penalty.kind != "none":  # the same penalty, every step, on the device
            loss = self.costs.penalty(loss, self.costs.target_costs.expected(self.arch.probs()))
        self.watch_finite("arch-step loss", loss, step, self._log_now(step))
        alphas = list(self.arch.alphas.values())
        grads = torch.autograd.grad(loss, alphas, allow_unused=True)
        for alpha, grad in zip(alphas, grads):
            alpha.grad = torch.zeros_like(alpha) if grad is None else grad
        average_gradients(alphas)  # one flat all-reduce: the same alphas on every rank
        arch_opt.step()
        # the gradient and the updated alphas, for the divergence check, in one concatenation
        flat = torch.cat([*(a.grad.reshape(-1) for a in alphas), *(a.detach().reshape(-1) for a in alphas)])
        arch_opt.zero_grad(set_to_none=True)
        gradient, updated = flat.float().chunk(2)
        self.watch_finite("alpha gradient", gradient, step, False, self.arch.segments())
        self.watch_finite("alpha", updated, step, False, self.arch.segments())
        if self.hparams.method == "st":  # the next step's paths: copied while this step's weight update runs
            self.arch.prefetch(updated)
        return loss.detach()

    def weight_step(
        self, batch: dict[str, Any], step: int, host_probs: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """One AdamW step of the network's weights with the alphas frozen."""
        weight_opt, _ = self.optimizers()
        self._plan("weight", step, host_probs)
        loss, _, _ = self.ctc_loss(batch)
        weight_opt.zero_grad(set_to_none=True)
        # gradients averaged across ranks (no-op on one) before clipping, so every rank clips the same norm
        if self._averager is None:
            self.manual_backward(loss)
            average_gradients(self.net.parameters())
        else:  # ... in buckets while backward runs
            self._averager.start()
            try:
                self.manual_backward(loss)
            except BaseException:
                self._averager.reset()
                raise
            self._averager.finish()
        self.clip_gradients(
            weight_opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm"
        )
        weight_opt.step()
        self.lr_schedulers().step()
        self.watch_finite("weight-step loss", loss, step, self._log_now(step))
        return loss.detach()

    def _log_now(self, step: int) -> bool:
        trainer = self._trainer  # None outside a Trainer (e.g. a bare module in a test): log always
        # the steps whose logs Lightning writes: (batches so far + 1) % log_every_n_steps == 0
        return trainer is None or (step + 1) % max(1, trainer.log_every_n_steps) == 0

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        train_batch, arch_batch = (batch["train"], batch.get("arch")) if "train" in batch else (batch, None)
        if self._host_step is None:
            self._host_step = int(self.search_step)
            if self._restored_copies is not None:
                self.arch.restore_host_copies(self._restored_copies)
                self._restored_copies = None
        step = self._host_step
        searching = self.stage == "search" and self.picks_architecture
        size = train_batch["targets"].size(0)
        log_now = self._log_now(step)  # logged values are read on the host: only every few steps
        # ST draws both of a step's paths from the alphas at the start of the step: one read of them,
        # which prefetch started during the previous step's weight update (or, with sample_ahead,
        # the step before, which is done)
        host_probs = None
        if searching and self.hparams.method == "st":
            host_probs = (
                self.arch.lagged_host_probs() if self.hparams.sample_ahead else self.arch.host_probs()
            )
        if searching:
            if arch_batch is None:
                raise UserError("the search stage needs arch batches: build the data module with search=True")
            arch_loss = self.arch_step(arch_batch, step, host_probs)
            if log_now or "arch/loss" in self.monitored:
                self.log("arch/loss", arch_loss, prog_bar=True, batch_size=arch_batch["targets"].size(0))
        loss = self.weight_step(train_batch, step, host_probs)
        self.search_step += 1
        self._host_step = step + 1
        if log_now or "train/loss" in self.monitored:  # monitoring callbacks read every step's value
            self.log("train/loss", loss, prog_bar=True, batch_size=size)
        if searching and log_now:
            self.log("arch/entropy", self.arch.mean_normalised_entropy(), batch_size=size)

    @property
    def stage(self) -> str:
        """``warmup`` | ``search``. Unset, it reads ``warmup``; training with it unset is refused
        (``on_train_epoch_start``): it would sample uniformly forever, silently."""
        return self._stage or "warmup"

    @stage.setter
    def stage(self, value: str) -> None:
        if value not in ("warmup", "search"):
            raise ValueError(f"stage must be 'warmup' or 'search', got {value!r}")
        self._stage = value

    @property
    def picks_architecture(self) -> bool:
        """False for ``uniform``: single-path one-shot training of the supernet's weights, whose
        alphas never learn; an architecture is picked from it by a discrete strategy, not here."""
        return self.hparams.method != "uniform"

    def on_train_epoch_start(self) -> None:
        """The alphas as the epoch finds them (loaded, or changed between epochs) are checked with
        the epoch's records: a loss made NaN by NaN alphas is then not blamed on the weights.
        Without a stage schedule the search would sample uniformly forever, silently: refused."""
        if self.picks_architecture and self._stage is None:
            raise UserError(
                "SearchModule needs the warm-up/search schedule: add callbacks.StageSwitch(warmup_epochs=N) "
                "to the Trainer's callbacks (`supernet search` adds it) or set module.stage; without it no "
                "search step ever runs"
            )
        if self.stage == "search" and self.picks_architecture:
            step = self._host_step if self._host_step is not None else int(self.search_step)
            self.watch_finite("alpha", self.arch.flat(), step, False, self.arch.segments())

    # --- divergence: what the first non-finite value says -------------------------------------
    run_name = "search"

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

    # --- evaluation: the current argmax path, with the shared weights ----------------------
    def on_validation_epoch_start(self) -> None:
        self._eval_path = self.chosen_path()  # once per evaluation: it reads the alphas back

    on_test_epoch_start = on_validation_epoch_start

    def _eval_step(self, batch: dict[str, Any], split: str) -> torch.Tensor:
        self.net.fix_path(self._eval_path or self.chosen_path())
        return super()._eval_step(batch, split)

    # --- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self):
        weight_opt, scheduler = self.weight_optimizer(self.net.parameters())
        hp = self.hparams
        arch_opt = torch.optim.Adam(
            self.arch.parameters(), lr=hp.arch_lr, betas=(0.5, 0.999), weight_decay=hp.arch_weight_decay
        )
        return [weight_opt, arch_opt], [{"scheduler": scheduler, "interval": "step"}]


def _forget_host_step(module: SearchModule, incompatible_keys) -> None:
    """After ``load_state_dict``: the host step mirror is read from the loaded buffer again, and
    the host copies of older alphas are forgotten."""
    module._host_step = None
    module.arch.forget_host_copies()
