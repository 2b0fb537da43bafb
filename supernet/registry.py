"""Classes built by name with checked options: the search methods (``supernet.search.relaxations``)
and the selection strategies (``supernet.select.strategies``). An unknown name or option is a
one-line ``UserError`` that lists what is accepted."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from supernet.errors import UserError


class Registry(dict):
    """``name -> class``; ``register`` is the class decorator, ``build`` makes an instance.

    ``kind`` names the classes in messages; ``name_field`` and ``options_field`` name the options
    the user set (``model.method``, ``model.method_options``); ``load`` imports the modules that
    register, the first time a name is not found."""

    def __init__(
        self, kind: str, name_field: str, options_field: str, load: Callable[[], None] | None = None
    ):
        super().__init__()
        self.kind, self.name_field, self.options_field, self.load = kind, name_field, options_field, load

    def register(self, cls: type) -> type:
        if not getattr(cls, "name", ""):
            raise ValueError(f"{cls.__name__}: a registered {self.kind} needs a name")
        if cls.name in self and self[cls.name] is not cls:
            raise ValueError(f"{self.kind} {cls.name!r} is registered twice ({self[cls.name].__name__})")
        self[cls.name] = cls
        return cls

    def build(self, name: str, options: dict[str, Any] | None = None) -> Any:
        if name not in self and self.load is not None:
            self.load()
        if name not in self:
            raise UserError(f"{self.name_field}: unknown {name!r}; choose one of {', '.join(sorted(self))}")
        cls = self[name]
        accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
        unknown = sorted(set(options or {}) - set(accepted))
        if unknown:
            takes = ", ".join(accepted) if accepted else "no options"
            raise UserError(
                f"{self.options_field}: {name!r} does not take {', '.join(unknown)} (it takes {takes})"
            )
        return cls(**(options or {}))


def constructor_options(obj: Any) -> dict[str, Any]:
    """The arguments ``obj``'s class takes, read back from its attributes of the same names: what
    ``Registry.build`` needs to make it again, for hyper-parameters and records. A class that
    keeps an argument under another name (or takes ``**options``) overrides ``options``."""
    params = inspect.signature(type(obj)).parameters.values()
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {p.name: getattr(obj, p.name) for p in params if p.kind not in kinds}
