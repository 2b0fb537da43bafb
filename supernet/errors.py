"""Errors a user can fix.

``supernet`` prints a ``UserError`` as one line (``supernet CMD: error: ...``) and exits 2; the
traceback appears only under ``--debug``. Every error class that names a file, field or line for
the user (manifests, ArchSpecs, spaces, latency tables, audio, corpora) derives from it.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix (bad input, an occupied run folder, a diverged run)."""


class NonFiniteError(UserError):
    """A loss, a weight or an alpha became NaN or infinite: the run stops and writes no result."""
