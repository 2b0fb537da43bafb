"""SearchModule: architecture search on one supernet, as a Lightning module.

The recipe (CTC, decoding, WER/CER, the weight optimizer) is ``CTCModule``'s, shared with
retraining; the search's mathematics is ``SearchStep`` (an arch step on an ``arch`` batch, then a
weight step on a ``train`` batch); the method is a registered ``Relaxation``; the hardware cost is
one ``HardwareObjective``. This module holds the recipe's schedule: warm-up epochs of uniform
single paths, then search epochs, a function of the epoch so that a resumed run agrees. Lightning
plumbing lives in ``supernet.search.hooks``; speed work plugs in from ``supernet.accel``.
"""

from __future__ import annotations

from typing import Any

import torch

from supernet.archspec import ArchSpec
from supernet.asr_module import CTCModule
from supernet.errors import NonFiniteError, UserError
from supernet.latency import HardwareObjective
from supernet.search.arch_params import ArchParams, NotADistributionError
from supernet.search.extract import check_pick, pick_path
from supernet.search.hooks import SearchHooks
from supernet.search.network import Supernet, initial_matrices
from supernet.search.relaxations import Relaxation, build
from supernet.search.step import SearchStep
from supernet.search.weight_average import WeightAverage
from supernet.space import SearchSpace

OBJECTIVE = HardwareObjective.DEFAULTS  # the objective's options' defaults, declared once


class SearchModule(SearchHooks, CTCModule):
    """Architecture search over a ``SearchSpace``.

    Args:
        space: a space YAML path, a shipped space name (``st_nas``) or its dict.
        vocab: the tokenizer's vocabulary (``supernet search`` links it from the data module).
        method: a registered relaxation: ``darts`` | ``gumbel`` | ``st`` | ``uniform`` (single-path
            one-shot training, which picks no architecture); ``method_options`` its own options,
            e.g. ``{hard: true, tau_start: 5}`` (gumbel), ``{sample_ahead: true}`` (st).
        warmup_epochs: epochs of uniform single paths (weights only) before the alphas learn.
        lr, warmup_steps, weight_decay, schedule, min_lr_ratio, grad_clip: the weights' AdamW.
        arch_lr, arch_weight_decay: the alphas' Adam (betas 0.5, 0.999 as in DARTS).
        seed: the alphas' start and the path sampler (paths depend on (seed, step) alone).
        latency_table ... reference: the hardware objective (``HardwareObjective.OPTIONS``).
        cuda_graphs: on a GPU, replay the sampled ops as CUDA graphs (``supernet.accel``).
        pick: how the alphas become one path: ``depth`` (keep a layer when its ops together
            outweigh ``skip``, then its op: ``costs.depth_first_path``; the same as ``argmax`` on
            edges without ``skip``), or ``argmax`` (every edge's own). ``depth`` is the default: on
            ``h200_three``'s tightest budget it gave 1.1 and 1.5 points lower test CER (docs/results.md).
        weight_average: the decay of an exponential moving average of the supernet's weights,
            updated after every weight step (``supernet.search.weight_average``; 0: none). Scorers
            (``supernet select``, a study's ranking) measure paths with the averaged weights; the
            checkpoint holds both copies (twice the weights' size).
        keep_initial_weights: keep a copy of the weight matrices as initialised in the checkpoint,
            from which scorers also measure each path's ABS angle (``init_cosine``:
            ``supernet.select.angle``); the checkpoint grows by the weights' size.
    """

    def __init__(
        self,
        space: str | dict,
        vocab: list[str] | None = None,
        method: str = "st",
        method_options: dict[str, Any] | None = None,
        warmup_epochs: int = 1,
        lr: float = 2e-3,
        warmup_steps: int = 200,
        weight_decay: float = 0.01,
        schedule: str = "cosine",
        min_lr_ratio: float = 0.05,
        arch_lr: float = 3e-3,
        arch_weight_decay: float = 1e-3,
        grad_clip: float = 5.0,
        seed: int = 0,
        latency_table: str | None = OBJECTIVE["latency_table"],
        penalty: str = OBJECTIVE["penalty"],
        penalty_target: str = OBJECTIVE["penalty_target"],
        penalty_lambda: float = OBJECTIVE["penalty_lambda"],
        penalty_beta: float = OBJECTIVE["penalty_beta"],
        budget: float | None = OBJECTIVE["budget"],
        reference: float | None = OBJECTIVE["reference"],
        cuda_graphs: bool = False,
        pick: str = "depth",
        weight_average: float = 0.0,
        keep_initial_weights: bool = False,
    ):
        super().__init__(vocab)
        if warmup_epochs < 0:
            raise UserError(f"model.warmup_epochs must be >= 0, got {warmup_epochs}")
        check_pick(pick, "model.pick")
        if not 0.0 <= weight_average < 1.0:
            raise UserError(f"model.weight_average must lie in [0, 1) (0: none), got {weight_average}")
        self.automatic_optimization = False
        self.space = SearchSpace.load(space)
        relaxation = build(method, method_options)
        self.save_hyperparameters()
        self.hparams.update(
            space=self.space.to_dict(), vocab=list(vocab), method_options=relaxation.options()
        )
        self.net = Supernet(self.space, self.vocab_size)
        self.arch = ArchParams(self.space.edges, seed=seed)
        self.net_average = WeightAverage(self.net, weight_average) if weight_average else None
        self.initial_weights: dict[str, torch.Tensor] | None = None  # kept_initial_weights' copy
        options = {k: self.hparams[k] for k in HardwareObjective.OPTIONS}
        objective = HardwareObjective.from_options(self.space, self.vocab_size, **options)
        self.search = SearchStep(
            self.net, self.arch, relaxation, objective, self.batch_loss, grad_clip,
            backward=self.manual_backward, clip=self.clip, watch=self.watch_finite,
        )  # fmt: skip
        self.register_buffer("search_step", torch.zeros((), dtype=torch.long))  # saved in checkpoints
        self.register_load_state_dict_post_hook(SearchHooks.forget_loaded_state)

    @property
    def relaxation(self) -> Relaxation:
        return self.search.relaxation

    @property
    def objective(self) -> HardwareObjective:
        return self.search.objective

    @property
    def picks_architecture(self) -> bool:
        """False for ``uniform``: a discrete strategy picks from the trained supernet, not this."""
        return self.relaxation.picks_architecture

    @property
    def stage(self) -> str:
        """``warmup`` for the first ``warmup_epochs`` epochs, then ``search``."""
        return "warmup" if self.current_epoch < self.hparams.warmup_epochs else "search"

    def batch_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.ctc_loss(batch)[0]

    def chosen_path(self) -> dict[str, int]:
        """Each edge's argmax (or depth first: ``pick``); under a budget, the most probable path within it."""
        return pick_path(self.space, self.objective, dict(self.arch.alphas), self.hparams.pick)

    def load_averaged_weights(self) -> bool:
        """Put the averaged weights (``weight_average``) in place of the trained ones, for scoring;
        False when the search kept no average."""
        if self.net_average is None:
            return False
        self.net_average.copy_to(self.net)
        return True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resume must keep the checkpoint's weight average (or its absence): the average is saved
        state, and Lightning's strict load would stop on its keys with a traceback."""
        kept = any(key.startswith("net_average.") for key in checkpoint.get("state_dict", {}))
        if kept != (self.net_average is not None):
            was = checkpoint.get("hyper_parameters", {}).get("weight_average", 0.0)
            raise UserError(
                f"the checkpoint was searched with model.weight_average {was}, this run asks for "
                f"{self.hparams.weight_average}: resume with the same value"
            )
        super().on_load_checkpoint(checkpoint)
        self.initial_weights = checkpoint.get("initial_weights")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.initial_weights is not None:
            checkpoint["initial_weights"] = self.initial_weights

    def on_fit_start(self) -> None:
        """Shows how the method draws (``Relaxation.describe``) and keeps the initial weights
        (``keep_initial_weights``) before the first step; a resumed search has them from its
        checkpoint, or never can."""
        super().on_fit_start()
        if line := self.relaxation.describe(self.arch):
            self.print(line)
        if not self.hparams.get("keep_initial_weights") or self.initial_weights is not None:
            return
        if int(self.search_step) > 0:  # a buffer of the checkpoint (the loop's step is restored later)
            raise UserError(
                "model.keep_initial_weights: this search resumes at step "
                f"{int(self.search_step)} from a checkpoint that kept no initial weights; start it afresh"
            )
        self.initial_weights = initial_matrices(self.net)

    def alphas_moved(self, atol: float = 1e-6) -> bool:
        """Whether the alphas left their start: when not, the chosen path is a tie-break."""
        return self.arch.moved(atol)

    def current_archspec(self, path: dict[str, int] | None = None) -> ArchSpec:
        """The ArchSpec of ``path`` (default: ``chosen_path()``)."""
        path = self.chosen_path() if path is None else path
        return self.space.derive(path, name=f"{self.space.name}-{self.hparams.method}")

    def setup(self, stage: str) -> None:
        where = f"space {self.space.name!r}"
        self.check_feature_dim(self.space.fields["feature_dim"], self.space.source, where)
        self.check_ctc_feasible(self.space.max_total_stride, where)  # at the largest stride of any path

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        train_batch, arch_batch = (batch["train"], batch.get("arch")) if "train" in batch else (batch, None)
        step = self.host_step()
        log = self.log_now(step)
        searching = self.stage == "search" and self.picks_architecture
        weight_opt, arch_opt = self.optimizers()
        try:
            host_probs = self.search.host_probs(warmup=not searching)  # one read for both passes
            if searching:
                if arch_batch is None:
                    raise UserError(
                        "the search stage needs arch batches: build the data module with search=True"
                    )
                arch_loss, logs = self.search.arch_step(arch_batch, step, arch_opt, host_probs, log)
                self.log_values({"arch/loss": arch_loss, **logs}, log, arch_batch, prog_bar=("arch/loss",))
            loss = self.search.weight_step(train_batch, step, weight_opt, host_probs, not searching, log)
            if self.net_average is not None:
                self.net_average.update(self.net)
        except NotADistributionError as err:  # the alphas are not finite: find out what made them so
            self.check_finite(f"at step {step} (epoch {self.current_epoch})")
            raise NonFiniteError(  # nothing recorded is: the probabilities came from an older copy
                f"search: {err} at step {step}, though the alphas are finite now: the copy of the "
                "alphas it was drawn from is not (sample_ahead's, restored from the checkpoint)"
            ) from err
        self.lr_schedulers().step()
        self.advance_step()
        entropy = {"arch/entropy": self.arch.mean_normalised_entropy()} if searching and log else {}
        self.log_values({"train/loss": loss, **entropy}, log, train_batch, prog_bar=("train/loss",))

    def on_train_epoch_start(self) -> None:
        """A search epoch sets the method's schedule (Gumbel's temperature) and records the alphas
        as the epoch finds them for the divergence check (so NaN alphas are not blamed on the weights)."""
        warmup = self.hparams.warmup_epochs
        if self.stage != "search" or not self.picks_architecture:
            return
        if self.current_epoch == warmup:
            self.print(f"epoch {self.current_epoch}: warm-up over, the {self.hparams.method} search starts")
        progress = (self.current_epoch - warmup) / max(1, (self.trainer.max_epochs or 1) - warmup - 1)
        for name, value in self.relaxation.schedule(progress).items():
            self.log(name, value, on_step=False, on_epoch=True)
        self.watch_finite("alpha", self.arch.flat(), self.host_step(), False, self.arch.segments())

    def configure_optimizers(self):
        weight_opt, scheduler = self.weight_optimizer(self.net.parameters())
        hp = self.hparams
        arch_opt = torch.optim.Adam(
            self.arch.parameters(), lr=hp.arch_lr, betas=(0.5, 0.999), weight_decay=hp.arch_weight_decay
        )
        return [weight_opt, arch_opt], [{"scheduler": scheduler, "interval": "step"}]
