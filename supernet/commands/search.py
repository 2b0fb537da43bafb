"""`supernet search`: warm-up, then architecture search; writes RUN/arch.yaml.

    supernet search --data CORPUS --out runs/search [--model.space st_nas] [--model.method st]
        [--trainer.max_epochs 8] [--model.warmup_epochs 3] [--seed_everything 0]
        [--ckpt_path runs/search/checkpoints/last.ckpt]

A LightningCLI over ``SearchModule`` and ``SpeechDataModule(search=True)`` with
``supernet/configs/search.yaml`` as the default config. RUN/ gets ``arch.yaml`` (the argmax
architecture, ready for ``supernet retrain --arch``), ``arch_epoch_NNN.yaml``,
``alpha_history.jsonl``, ``alphas/*.png``, ``search.json`` and ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from callbacks import AlphaLogger, EpochCheckpoint
from supernet import run_folder
from supernet.accel.ddp import search_strategy
from supernet.commands.retrain import (
    PARSER_KWARGS,
    TRAINER_DEFAULTS,
    add_run_arguments,
    claim_run_folder,
    expand_shortcuts,
    link_features,
    link_run_arguments,
    run_callbacks,
    seed_of,
)
from supernet.data.datamodule import SpeechDataModule
from supernet.loggers import DEFAULT_LOGGER, LOGGER_KINDS, finish_loggers, make_logger
from supernet.outputs import atomic_write_json
from supernet.search.extract import NOT_MOVED_WARNING, UNIFORM_PICKS_NOTHING
from supernet.search.module import SearchModule
from supernet.shipped import default_config
from supernet.space import SearchSpace

DEFAULT_CONFIG = default_config("search")


def _space_features(space: str | dict) -> tuple[str, int]:
    fields = SearchSpace.load(space).fields
    return fields["features"], fields["feature_dim"]


class SearchCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--logger",
            type=str,
            default=DEFAULT_LOGGER,
            help=f"{', '.join(LOGGER_KINDS)} (auto: W&B offline if installed)",
        )
        add_run_arguments(parser)
        parser.add_argument(
            "--bind_cpus",
            type=bool,
            default=False,
            help="DDP on GPUs: pin each rank to its share of the cores next to its GPU (multi-socket hosts)",
        )
        parser.add_argument(
            "--ddp_overlap",
            type=bool,
            default=True,
            help="DDP: all-reduce the weight gradients in buckets during backward (false: in one pass after it)",
        )
        parser.add_lightning_class_args(EpochCheckpoint, "checkpoint")
        parser.add_lightning_class_args(AlphaLogger, "alpha_logger")
        parser.link_arguments("seed_everything", "model.seed", compute_fn=seed_of)
        link_run_arguments(parser)
        link_features(parser, "model.space", _space_features)
        parser.set_defaults({"data.search": True})

    def instantiate_trainer(self, **kwargs: Any):
        trainer_config = self.config_init.get("trainer", {})
        if trainer_config.get("logger") is None:
            root = trainer_config.get("default_root_dir") or "."
            name = f"search-{self.model.space.name}-{self.model.hparams.method}"
            kwargs["logger"] = make_logger(self.config_init["logger"], root, name=name)
        config = self.config_init
        strategy = search_strategy(
            trainer_config, bool(config.get("bind_cpus")), bool(config.get("ddp_overlap", True))
        )
        if strategy is not None:
            kwargs["strategy"] = strategy
        kwargs["callbacks"] = [*(trainer_config.get("callbacks") or []), *run_callbacks(self.config_init)]
        return super().instantiate_trainer(**kwargs)


def supernet_summary(model: SearchModule, seconds: float, epochs: int) -> dict[str, Any]:
    """What every ``search.json`` holds: the space, the method, what the run cost."""
    return {
        "space": model.space.name,
        "method": model.hparams.method,
        "epochs": epochs,
        "steps": int(model.search_step),
        "search_seconds": round(seconds, 2),
    }


def search_summary(model: SearchModule, seconds: float, epochs: int) -> dict[str, Any]:
    """What ``search.json`` holds: the chosen path, how sure the search is, what it cost."""
    path, edges = model.chosen_path(), model.space.edges
    spec = model.current_archspec(path)
    return {
        **supernet_summary(model, seconds, epochs),
        "arch": spec.to_dict(),
        "picked": {edge: edges[edge][index] for edge, index in path.items()},  # arch.yaml's
        # each edge's own argmax: "picked" differs under a budget or by model.pick depth
        "choices": model.arch.argmax_labels(),
        "argmax_over_budget": model.objective.over_budget(model.arch.argmax()),
        "probs": {n: p.detach().cpu().tolist() for n, p in model.arch.probs().items()},
        "entropy": model.arch.mean_normalised_entropy(),
        # False: arch_lr 0, method uniform, or no search epoch ran; the architecture is a tie-break
        "alphas_moved": model.alphas_moved(),
        "parameter_free": spec.parameter_free_count,
        "params": spec.params(model.vocab_size),
    }


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")
    # argv comes from `supernet search`, whose own argv Lightning would otherwise warn about.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    user_argv = ["search", *(argv or [])]
    argv = expand_shortcuts(list(argv or []))
    argv = [{"--space": "--model.space", "--method": "--model.method"}.get(a, a) for a in argv]
    cli = SearchCLI(
        SearchModule,
        SpeechDataModule,
        args=argv,
        run=False,
        parser_kwargs={
            "default_config_files": [str(DEFAULT_CONFIG)],
            "prog": "supernet search",
            **PARSER_KWARGS,
        },
        trainer_defaults=dict(TRAINER_DEFAULTS),
        save_config_kwargs={"overwrite": True},
    )
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    out = Path(trainer.default_root_dir)
    ckpt_path = cli.config.get("ckpt_path")
    if trainer.is_global_zero:
        ckpt_path = claim_run_folder(cli, "search", user_argv)
        data.save_tokenizer(out)
    start = time.perf_counter()
    with run_folder.failing(out, trainer.is_global_zero):
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    seconds = run_folder.fit_seconds(trainer, time.perf_counter() - start)
    if trainer.is_global_zero:
        if model.picks_architecture:
            summary = search_summary(model, seconds, trainer.current_epoch)
            model.current_archspec().to_yaml(out / "arch.yaml")
        else:
            summary = {
                **supernet_summary(model, seconds, trainer.current_epoch),
                "note": UNIFORM_PICKS_NOTHING,
            }
        summary["data"] = run_folder.data_summary(data, model)
        atomic_write_json(out / "search.json", summary)
        run_folder.finish(out)
        if not model.picks_architecture:
            print(f"trained supernet: {out / 'checkpoints' / 'last.ckpt'}\nnote: {UNIFORM_PICKS_NOTHING}")
        else:
            print(f"architecture: {summary['picked']}")
            print(f"parameter-free layers chosen: {summary['parameter_free']}; params: {summary['params']:,}")
            if not summary["alphas_moved"]:
                print(NOT_MOVED_WARNING)
            print(f"written: {out / 'arch.yaml'}")
    finish_loggers(trainer.loggers)
    return 0
