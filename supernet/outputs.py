"""Output files that appear whole or not at all, and output paths checked before long work.

A result (``arch.yaml``, ``metrics.json``, a manifest, a table, a plot) is written to a temporary
file beside its target and renamed over it when complete (atomic on POSIX): a run killed or failed
mid-write leaves the old file, or none, never half of one. ``atomic_write_text`` covers text held
in memory; ``replaced_when_done`` covers writers that take a file name (``fig.savefig``,
``LatencyTable.save``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supernet.errors import UserError


@contextmanager
def replaced_when_done(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, for writers that go by it); rename it to
    ``path`` if the block ends well, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; the output gets the usual mode
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:  # on disk before the rename, so a crash leaves no empty file
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all."""
    with replaced_when_done(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Fail now, not after hours of work, when ``path`` (a file to be written) cannot be created."""
    path = Path(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"{what} {path}: cannot write there ({err.strerror or err})") from None
    if path.is_dir():
        raise UserError(f"{what} {path}: is a folder, expected a file path")
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
