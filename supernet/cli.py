"""The `supernet` console command: one subcommand a module, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help). Each module defines `configure_parser(parser)` and
# `run(args) -> int`; modules are imported lazily so `supernet corpus` never imports Lightning.
COMMANDS: dict[str, tuple[str, str]] = {
    "corpus": ("supernet.corpus", "build the synthetic multilingual corpus (espeak-ng)"),
    "data": ("supernet.data_cli", "import and check manifests"),
    "profile": ("supernet.profile", "measure a latency lookup table of a search space on this device"),
    "latency-check": ("supernet.latency_check", "compare a latency table's predictions with measured networks"),
    "pareto": ("supernet.pareto", "WER against predicted latency and params of retrained runs; the Pareto front"),
    "space": ("supernet.space_cli", "describe a search space (paths, params, candidates)"),
    "demo": ("supernet.demo", "the whole pipeline on the built-in corpus: search, extract, retrain, compare"),
    "extract": ("supernet.extract", "the top-1 architecture of a search checkpoint, as ArchSpec YAML"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supernet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).configure_parser(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Lightning-CLI commands parse their own arguments (every Trainer flag can be overridden).
    if argv and argv[0] in PASSTHROUGH:
        module = importlib.import_module(PASSTHROUGH[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


# subcommand -> (module, help): these take their raw argv in `main(argv)`.
PASSTHROUGH: dict[str, tuple[str, str]] = {
    "retrain": ("supernet.retrain", "train an ArchSpec from scratch with CTC and test it (Lightning CLI)"),
    "search": ("supernet.search", "architecture search: warm-up, then darts | gumbel | st (Lightning CLI)"),
    "evaluate": ("supernet.evaluate", "WER/CER, size, memory and latency of a trained checkpoint"),
}

if __name__ == "__main__":
    sys.exit(main())
