"""Search methods as registered objects: ``darts``, ``gumbel`` (SNAS / GDAS), ``st`` (ST-NAS) and
``uniform`` (single-path one-shot). See ``base.py`` for the protocol; one method a file."""

from supernet.search.relaxations import darts, gumbel, st, uniform  # noqa: F401  (registers)
from supernet.search.relaxations.base import (
    PHASES,
    RELAXATIONS,
    STRIDE_EDGE_METHODS,
    Relaxation,
    build,
    check_stride_edges,
    register,
)

__all__ = [
    "PHASES",
    "RELAXATIONS",
    "STRIDE_EDGE_METHODS",
    "Relaxation",
    "build",
    "check_stride_edges",
    "make_plan",
    "register",
]


def make_plan(arch, method: str, phase: str, step: int, host_probs=None, **options):
    """Plans from a method built on the spot with ``options`` (tests and benchmarks)."""
    return build(method, options).plan(arch, phase, step, host_probs)
