"""Output files that appear whole or not at all, for writers that want a path (plots, tables).

``errors.atomic_write_text`` covers text a command holds in memory; ``replaced_when_done`` covers
writers that take a file name (``fig.savefig``, ``LatencyTable.save``): they write a temporary
file beside the target, renamed over it only when the writer returns, so a run killed or failed
mid-write leaves the old file (or none), never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
