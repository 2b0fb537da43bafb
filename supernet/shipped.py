"""The files shipped inside the package: search spaces, baseline ArchSpecs, latency tables, defaults.

They live in ``supernet/configs/`` as package data, so ``pip install supernet`` (not only an
editable checkout) finds ``st_nas``, ``tdnn_d`` or ``st_nas_cpu`` from any folder. Every lookup of
a shipped file goes through here; a command argument is a path or a shipped name (``resolve``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from supernet.errors import UserError

CONFIGS_DIR = Path(str(files("supernet") / "configs"))

# kind -> (folder under configs/, file suffix, what the user calls it in errors)
KINDS = {
    "space": ("space", ".yaml", "search space"),
    "arch": ("arch", ".yaml", "architecture"),
    "lut": ("lut", ".json", "latency table"),
}


class NotShippedError(UserError, FileNotFoundError):
    """Neither an existing file nor the name of a shipped one; the message lists the shipped names."""


def _kind(kind: str) -> tuple[str, str, str]:
    if kind not in KINDS:
        raise ValueError(f"unknown kind of shipped file {kind!r} (kinds: {', '.join(KINDS)})")
    return KINDS[kind]


def shipped_names(kind: str) -> list[str]:
    """The names of the shipped files of one kind (``space``, ``arch``, ``lut``), sorted."""
    folder, suffix, _ = _kind(kind)
    return sorted(p.stem for p in (CONFIGS_DIR / folder).glob(f"*{suffix}"))


def shipped_path(kind: str, name: str) -> Path:
    """The path of the shipped file ``name`` of ``kind``; NotShippedError listing the names if none."""
    folder, suffix, what = _kind(kind)
    path = CONFIGS_DIR / folder / f"{name}{suffix}"
    if not path.is_file():
        raise NotShippedError(f"{name!r} is not a shipped {what} ({', '.join(shipped_names(kind))})")
    return path


def resolve(kind: str, value: str | Path) -> Path:
    """``value`` itself when it is an existing file, else the shipped file of that name.

    A bare name (no folder, no suffix) that exists as a file in the working folder wins, so a
    local ``st_nas`` file is never silently replaced by the shipped one.
    """
    path = Path(value)
    if path.is_file():
        return path
    folder, suffix, what = _kind(kind)
    shipped = CONFIGS_DIR / folder / f"{value}{suffix}"
    if str(value) and path.name == str(value) and shipped.is_file():
        return shipped
    raise NotShippedError(
        f"{what} {str(value)!r}: no such file, and not a shipped {what} ({', '.join(shipped_names(kind))})"
    )


def default_config(command: str) -> Path:
    """The default LightningCLI config of ``command`` (``search`` or ``retrain``)."""
    return CONFIGS_DIR / f"{command}.yaml"
