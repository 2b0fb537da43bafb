"""Errors a user can fix, and atomic writes of run artefacts.

``supernet`` prints a ``UserError`` as one line (``supernet CMD: error: ...``) and exits 2; the
traceback appears only under ``--debug``. Every error class that names a file, field or line for
the user (manifests, ArchSpecs, spaces, latency tables, audio) derives from it.

Artefacts (``arch.yaml``, ``metrics.json``, ``search.json``, manifests) are written to a temporary
file in the same folder, then renamed over the target: a run killed mid-write leaves the old file
or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class UserError(Exception):
    """An error the user can fix (bad input, an occupied run folder, a diverged run)."""


class NonFiniteError(UserError):
    """A loss, a weight or an alpha became NaN or infinite: the run stops and writes no result."""


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are as readable as any other
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
