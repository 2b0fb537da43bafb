"""A selection strategy proposes paths to ``Problem.evaluate`` until it has scored enough.

Strategies are registered by name like the ops and the search methods; ``build_strategy(name,
options)`` makes one. A run must depend on its ``seed`` alone: same seed, same picks.
"""

from __future__ import annotations

from typing import Any, ClassVar

from supernet.registry import Registry, constructor_options
from supernet.select.problem import Problem


class Strategy:
    name: ClassVar[str] = ""

    def run(self, problem: Problem, evaluations: int, seed: int) -> None:
        """Propose paths until ``problem.evaluations`` reaches ``evaluations`` (or the space is
        exhausted)."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The constructor's arguments (``select.json`` records them)."""
        return constructor_options(self)


def load_strategies() -> Registry:
    """Import every strategy module of this package (each registers itself); the registry."""
    import importlib
    import pkgutil

    from supernet.select import strategies

    for info in pkgutil.iter_modules(strategies.__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{strategies.__name__}.{info.name}")
    return STRATEGIES


STRATEGIES = Registry("strategy", "--strategy", "--option", load=load_strategies)
register_strategy = STRATEGIES.register
build_strategy = STRATEGIES.build
