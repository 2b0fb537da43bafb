"""`supernet retrain`: train an ArchSpec from scratch with CTC, test it, write RUN/metrics.json.

    supernet retrain --arch tdnn_d --data CORPUS --out runs/tdnn_d \\
        [--trainer.max_epochs 3] [--seed_everything 1] [--logger wandb|csv|none] [-c MORE.yaml]

A LightningCLI over ``ASRModule`` and ``SpeechDataModule`` with ``supernet/configs/retrain.yaml``
as the default config, so every model, data and Trainer option can be overridden. ``--arch``,
``--data`` and ``--out`` are shortcuts for ``--model.arch``, ``--data.data`` and
``--trainer.default_root_dir``. The architecture sets the data module's features; the data
module's tokenizer sets the model's vocabulary. After fitting, the best checkpoint is validated
and tested on every test set, and RUN/ gets ``metrics.json``, ``arch.yaml``, ``tokenizer.json``
and ``checkpoints/`` (``best`` by ``dev/score`` and ``last.ckpt``).

The test sets are decoded as ``--decoder.kind`` says (``supernet.decoding``): greedy by default, or
``beam`` with ``--decoder.lm lm.arpa`` (``supernet lm build``) and its weights; dev, which selects
the checkpoint, stays greedy. The decoder is built before training, so a missing LM fails at once.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from callbacks import EpochCheckpoint, EpochSeed
from callbacks.reproducible import check_resume_seed
from supernet import run_folder
from supernet.archspec import ArchSpec
from supernet.asr_module import ASRModule
from supernet.data.datamodule import SpeechDataModule
from supernet.decoding import DecoderOptions, make_decoder
from supernet.loggers import DEFAULT_LOGGER, LOGGER_KINDS, finish_loggers, make_logger
from supernet.outputs import atomic_write_json
from supernet.shipped import default_config

# LightningCLI errors raise (one line from `supernet`, see supernet.commands.cli) instead of printing the usage
PARSER_KWARGS = {"exit_on_error": False}
# The data module's bucket samplers shard by rank themselves (made in setup, once the process
# group is up): Lightning's own injection of a DistributedSampler would have to rebuild them from
# saved constructor arguments they were not made with, and stops a DDP run before its first step.
TRAINER_DEFAULTS = {
    "precision": "bf16-mixed" if torch.cuda.is_available() else "32-true",
    "use_distributed_sampler": False,
}

DEFAULT_CONFIG = default_config("retrain")
SHORTCUTS = {"--arch": "--model.arch", "--data": "--data.data", "--out": "--trainer.default_root_dir"}


def expand_shortcuts(argv: list[str]) -> list[str]:
    """``--arch X`` -> ``--model.arch X`` (also ``--arch=X``); other arguments unchanged."""
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if flag in SHORTCUTS:
            arg = SHORTCUTS[flag] + eq + value
        out.append(arg)
    return out


def link_features(parser: LightningArgumentParser, source: str, features_of) -> None:
    """Link the data module's feature kind and size to ``source`` (an arch or a space), through
    ``features_of(value) -> (features, feature_dim)``. The links also run on the defaults, before
    the value is known (None): the data module's defaults then stand."""

    def kind(value) -> str:
        return "fbank" if value is None else features_of(value)[0]

    def size_if(wanted: tuple[str, ...], default: int):
        def size(value) -> int:
            if value is None:
                return default
            features, dim = features_of(value)
            return dim if features in wanted else default

        return size

    parser.link_arguments(source, "data.features", compute_fn=kind)
    parser.link_arguments(source, "data.n_mels", compute_fn=size_if(("fbank", "kaldi_fbank"), 80))
    parser.link_arguments(source, "data.n_mfcc", compute_fn=size_if(("mfcc",), 40))


def _arch_features(arch: str | dict) -> tuple[str, int]:
    spec = ArchSpec.load(arch)
    return spec.features, spec.feature_dim


def _vocab_of(tokenizer) -> list[str]:
    return list(tokenizer.vocab)


def _checkpoint_dir(root: str | None) -> str:
    return str(Path(root or ".") / "checkpoints")


def seed_of(seed_everything) -> int:
    """``--seed_everything``'s value as the int every seeded part takes (True/None/False: 0)."""
    return 0 if isinstance(seed_everything, bool) or seed_everything is None else int(seed_everything)


def add_run_arguments(parser: LightningArgumentParser) -> None:
    """What ``search`` and ``retrain`` share: resume and replacing a run folder."""
    parser.add_argument(
        "--ckpt_path",
        type=str | None,
        default=None,
        help="resume from this checkpoint (RUN/checkpoints/last.ckpt)",
    )
    parser.add_argument(  # bare --overwrite as in demo, study and select; --overwrite true still works
        "--overwrite", type=bool, default=False, nargs="?", const=True,
        help="replace the run that --out already holds",
    )  # fmt: skip


def link_run_arguments(parser: LightningArgumentParser) -> None:
    """The one seed reaches the data module; checkpoints go under the run folder; the tokenizer
    sets the model's vocabulary."""
    parser.link_arguments("seed_everything", "data.seed", compute_fn=seed_of)
    parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath", compute_fn=_checkpoint_dir)
    parser.link_arguments("data.tokenizer", "model.vocab", compute_fn=_vocab_of, apply_on="instantiate")


def claim_run_folder(cli: LightningCLI, command: str, user_argv: list[str]) -> str | None:
    """Before anything is written: a resume must keep its seed, and the folder must be this run's
    (``supernet.run_folder``). Returns the checkpoint to resume from (``last``: the run's own)."""
    out = Path(cli.trainer.default_root_dir)
    ckpt_path = cli.config.get("ckpt_path")
    if ckpt_path == "last":  # Lightning's name for the run's latest checkpoint
        ckpt_path = str(out / "checkpoints" / "last.ckpt")
    if ckpt_path is not None:
        check_resume_seed(ckpt_path, seed_of(cli.config.get("seed_everything")))
    overwrite = bool(cli.config.get("overwrite"))
    run_folder.claim(out, command, resume_from=ckpt_path, overwrite=overwrite, argv=user_argv)
    return ckpt_path


def run_callbacks(config_init) -> list:
    """Callbacks every run gets: per-epoch seeding from ``--seed_everything`` (exact resume)."""
    return [EpochSeed(seed_of(config_init.get("seed_everything")))]


class RetrainCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--logger",
            type=str,
            default=DEFAULT_LOGGER,
            help=f"experiment logger: {', '.join(LOGGER_KINDS)} (W&B offline)",
        )
        add_run_arguments(parser)
        parser.add_class_arguments(DecoderOptions, "decoder", help="decoding of the test sets")
        parser.add_lightning_class_args(EpochCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        link_run_arguments(parser)
        link_features(parser, "model.arch", _arch_features)

    def instantiate_trainer(self, **kwargs: Any):
        trainer_config = self.config_init.get("trainer", {})
        if trainer_config.get("logger") is None:
            root = trainer_config.get("default_root_dir") or "."
            kwargs["logger"] = make_logger(self.config_init["logger"], root, name=self.model.spec.name)
        logging = kwargs.get("logger", trainer_config.get("logger")) is not False
        kwargs["callbacks"] = [
            *(trainer_config.get("callbacks") or []),
            *([LearningRateMonitor("step")] if logging else []),  # it refuses a Trainer without a logger
            *run_callbacks(self.config_init),
        ]
        return super().instantiate_trainer(**kwargs)


def _merge(results: list[dict[str, float]]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for result in results:
        merged.update({k: float(v) for k, v in result.items()})
    return merged


def run_metrics(
    model: ASRModule,
    dev: dict[str, float],
    test: dict[str, float],
    test_names: list[str],
    epochs: int,
    seconds: float,
) -> dict[str, Any]:
    """What ``metrics.json`` holds: error rates of the best checkpoint and the run's cost."""
    return {
        "arch": model.spec.name,
        "wer": {name: test.get(f"test/{name}/wer") for name in test_names},
        "cer": {name: test.get(f"test/{name}/cer") for name in test_names},
        "dev_wer": dev.get("dev/wer"),
        "dev_cer": dev.get("dev/cer"),
        "params": sum(p.numel() for p in model.net.parameters()),
        "epochs": epochs,
        "train_seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")
    # argv comes from `supernet retrain`, whose own argv Lightning would otherwise warn about.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    user_argv = ["retrain", *(argv or [])]
    cli = RetrainCLI(
        ASRModule,
        SpeechDataModule,
        args=expand_shortcuts(list(argv or [])),
        run=False,
        parser_kwargs={
            "default_config_files": [str(DEFAULT_CONFIG)] if DEFAULT_CONFIG.is_file() else [],
            "prog": "supernet retrain",
            **PARSER_KWARGS,
        },
        trainer_defaults=dict(TRAINER_DEFAULTS),
        save_config_kwargs={"overwrite": True},
        load_from_checkpoint_support=False,  # the checkpoint stores the arch dict, not the YAML path
    )
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    decoder = cli.config_init["decoder"]
    test_decoder = make_decoder(decoder, data.tokenizer)  # the data's tokenizer spells a lexicon
    out = Path(trainer.default_root_dir)
    ckpt_path = cli.config.get("ckpt_path")
    if trainer.is_global_zero:
        ckpt_path = claim_run_folder(cli, "retrain", user_argv)
        model.spec.to_yaml(out / "arch.yaml")
        data.save_tokenizer(out)

    start = time.perf_counter()
    with run_folder.failing(out, trainer.is_global_zero):
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
        seconds = run_folder.fit_seconds(trainer, time.perf_counter() - start)
        epochs = trainer.current_epoch
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or "last"
        dev = _merge(trainer.validate(model, datamodule=data, ckpt_path=ckpt, verbose=False))
        model.test_decoder = test_decoder
        test = _merge(trainer.test(model, datamodule=data, ckpt_path=ckpt, verbose=False))
    if trainer.is_global_zero:
        metrics = run_metrics(model, dev, test, list(data.test_names), epochs, seconds)
        metrics["checkpoint"] = str(best)
        metrics["decoder"] = decoder.describe()
        metrics["data"] = run_folder.data_summary(data, model)
        atomic_write_json(out / "metrics.json", metrics)
        run_folder.finish(out)
        print(json.dumps(metrics, indent=2))
    finish_loggers(trainer.loggers)
    return 0
