"""A selection strategy proposes paths to ``Problem.evaluate`` until it has scored enough.

Strategies are registered by name like the ops and the search methods; ``build_strategy(name,
options)`` makes one. A run must depend on its ``seed`` alone: same seed, same picks.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from supernet.errors import UserError
from supernet.select.problem import Problem


class Strategy:
    name: ClassVar[str] = ""

    def run(self, problem: Problem, evaluations: int, seed: int) -> None:
        """Propose paths until ``problem.evaluations`` reaches ``evaluations`` (or the space is
        exhausted)."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        return {}


STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a registered strategy needs a name")
    if cls.name in STRATEGIES and STRATEGIES[cls.name] is not cls:
        raise ValueError(f"strategy {cls.name!r} is registered twice")
    STRATEGIES[cls.name] = cls
    return cls


def load_strategies() -> dict[str, type[Strategy]]:
    """Import every strategy module of this package (each registers itself); the registry."""
    import importlib
    import pkgutil

    from supernet.select import strategies

    for info in pkgutil.iter_modules(strategies.__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{strategies.__name__}.{info.name}")
    return STRATEGIES


def build_strategy(name: str, options: dict[str, Any] | None = None) -> Strategy:
    if name not in STRATEGIES:
        load_strategies()
    if name not in STRATEGIES:
        raise UserError(f"--strategy: unknown {name!r}; choose one of {', '.join(sorted(STRATEGIES))}")
    cls = STRATEGIES[name]
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(options or {}) - set(accepted))
    if unknown:
        raise UserError(
            f"strategy {name!r} does not take {', '.join(unknown)} (it takes {', '.join(accepted) or 'none'})"
        )
    return cls(**(options or {}))
