"""The `supernet` console command: one subcommand a module, imported only when used.

Only the chosen subcommand's module is imported, so `supernet corpus` never imports Lightning and
`supernet search` runs on a machine without espeak-ng or wordfreq.

Errors the user can fix (``supernet.errors.UserError``: bad input, an occupied run folder, a
diverged run; and LightningCLI's argument errors) print one line, ``supernet CMD: error: ...``,
and exit 2; ``--debug`` anywhere on the command line (or ``SUPERNET_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from supernet.errors import UserError

EXIT_USER_ERROR = 2

# subcommand -> (module, one-line help). Each module defines `configure_parser(parser)` and
# `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "supernet.commands.demo",
        "the whole pipeline on the built-in corpus: search, extract, retrain, compare",
    ),
    "corpus": ("supernet.commands.corpus", "build the synthetic multilingual corpus (espeak-ng)"),
    "data": ("supernet.commands.data", "import and check manifests"),
    "space": ("supernet.commands.space", "describe a search space (paths, params, candidates)"),
    "extract": (
        "supernet.commands.extract",
        "the top-1 architecture of a search checkpoint, as ArchSpec YAML",
    ),
    "profile": (
        "supernet.commands.profile",
        "measure a latency lookup table of a search space on this device",
    ),
    "latency-check": (
        "supernet.commands.latency_check",
        "compare a latency table's predictions with measured networks",
    ),
    "pareto": (
        "supernet.commands.pareto",
        "WER against predicted latency and params of retrained runs; the Pareto front",
    ),
    "study": ("supernet.commands.study", "searched vs random vs baseline architectures at equal latency"),
    "select": (
        "supernet.commands.select",
        "a path per budget from a trained supernet (random, evolution, tpe, nsga2)",
    ),
    "export": (
        "supernet.commands.export",
        "a retrained model as ONNX (fp32, optionally int8), checked against PyTorch",
    ),
    "transcribe": (
        "supernet.commands.transcribe",
        "transcripts of audio files with a checkpoint or an ONNX model",
    ),
    "lm": ("supernet.commands.lm", "word n-gram language model (ARPA) from a corpus' training transcripts"),
}

# subcommand -> (module, help): LightningCLI commands that parse their own argv in `main(argv)`,
# so every model, data and Trainer option can be overridden.
PASSTHROUGH: dict[str, tuple[str, str]] = {
    "search": (
        "supernet.commands.search",
        "architecture search: warm-up, then darts | gumbel | st (Lightning CLI)",
    ),
    "retrain": (
        "supernet.commands.retrain",
        "train an ArchSpec from scratch with CTC and test it (Lightning CLI)",
    ),
    "evaluate": ("supernet.commands.evaluate", "WER/CER, size, memory and latency of a trained checkpoint"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; configures (and imports) just the subcommand ``only`` when given."""
    parser = argparse.ArgumentParser(prog="supernet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in {**COMMANDS, **PASSTHROUGH}.items():
        p = sub.add_parser(name, help=help_text, description=help_text, add_help=name in COMMANDS)
        p.set_defaults(_module=module)
        if name == only and name in COMMANDS:
            importlib.import_module(module).configure_parser(p)
    return parser


def run_command(argv: list[str]) -> int:
    """Run ``supernet COMMAND ...`` in this process (``argv`` starts with the command's name);
    errors propagate (``main`` turns them into messages)."""
    command = argv[0] if argv else None
    if command in PASSTHROUGH:
        module = importlib.import_module(PASSTHROUGH[command][0])
        return int(module.main(argv[1:]) or 0)
    args = build_parser(only=command).parse_args(argv)
    args._argv = list(argv)  # what a run folder records (a study compares it before reusing a run)
    return int(importlib.import_module(args._module).run(args) or 0)


def _user_errors() -> tuple[type[BaseException], ...]:
    """UserError, a missing input file, and LightningCLI's (jsonargparse's) argument errors."""
    try:
        from jsonargparse import ArgumentError
    except ImportError:
        return (UserError, FileNotFoundError)
    return (UserError, FileNotFoundError, ArgumentError)


# a link that reads the architecture or space file (its features, sizes): the file's own error
# names the file and field, so jsonargparse's wrapping is dropped; other links keep theirs
LINK_FAILED = re.compile(
    r"Call to compute_fn of link '[^']*\(model\.(space|arch)\)[^']*' with args \(.*?\) failed: "
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get("SUPERNET_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    command = argv[0] if argv else None
    try:
        return run_command(argv)
    except _user_errors() as err:
        if debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        hint = (
            f"; `supernet {command} --help` lists the options"
            if type(err).__name__ == "ArgumentError"
            else ""
        )
        linked = LINK_FAILED.match(message)
        if linked:
            message, hint = message[linked.end() :], ""
        if 'Linked "data.features"' in message:  # jsonargparse's words for a linked option
            hint = "; the features follow the model: set `features:` in the architecture or space YAML" + hint
        print(f"supernet {command}: error: {message.rstrip('.') if hint else message}{hint}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
