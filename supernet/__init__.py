"""supernet: neural architecture search for speech recognition, on PyTorch Lightning.

The public Python API (``docs/guide.md`` walks through it). Names are imported on first use, so
``import supernet`` stays light and ``supernet corpus`` never imports Lightning.

    from supernet import SearchSpace, ArchSpec, run_search, extract_architecture, run_retrain
    run_search(["--data", "data/demo", "--out", "runs/s", "--model.space", "st_nas"])
    spec, arch, hparams = extract_architecture("runs/s/checkpoints/last.ckpt")
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute); no public name is also a submodule's name (``supernet.commands.search``
# is the command's module once imported, so the function is ``run_search``)
_EXPORTS = {
    # architectures and spaces
    "ArchSpec": ("supernet.archspec", "ArchSpec"),
    "SearchSpace": ("supernet.space", "SearchSpace"),
    # data
    "SpeechDataModule": ("supernet.data.datamodule", "SpeechDataModule"),
    "build_corpus": ("supernet.data.corpus", "build_corpus"),
    # Lightning modules: the search recipe and the retrain recipe
    "SearchModule": ("supernet.search.module", "SearchModule"),
    # the search core without Lightning: one step, the methods, the hardware objective
    "SearchStep": ("supernet.search.step", "SearchStep"),
    "Relaxation": ("supernet.search.relaxations", "Relaxation"),
    "register_relaxation": ("supernet.search.relaxations", "register"),
    "HardwareObjective": ("supernet.latency", "HardwareObjective"),
    "ASRModule": ("supernet.asr_module", "ASRModule"),
    # the commands, as functions taking the command line's arguments
    "run_search": ("supernet.commands.search", "main"),
    "run_retrain": ("supernet.commands.retrain", "main"),
    # results
    "extract_architecture": ("supernet.search.extract", "extract"),
    "evaluate_checkpoint": ("supernet.commands.evaluate", "evaluate"),
    "LatencyTable": ("supernet.latency", "LatencyTable"),
    # errors
    "UserError": ("supernet.errors", "UserError"),
    "NonFiniteError": ("supernet.errors", "NonFiniteError"),
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'supernet' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
