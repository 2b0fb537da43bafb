"""One allocator regime for every CPU measurement: glibc's malloc kept off mmap.

glibc serves a block above its mmap threshold (128 KiB at first) with mmap and gives it back with
munmap when freed, so each forward pass of a network with large activations pays page faults
again; a freed mmapped block also raises the threshold, so which regime a pass runs in depends on
what ran before it. Measured on the 2-core machine (conformer space, fp32, one thread, 4 s): the
same six networks took 43-49 ms in the default regime and 25-32 ms with the thresholds pinned,
and two checks right after profiling disagreed with themselves by 19-37% (self_mape) when they
fell into different regimes. Pinning the mmap and trim thresholds high keeps every block in the
heap, as an inference runtime's arena allocator does; tables record it (``allocator``) and a
check under another regime is refused.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
_PINNED: str | None = None


def pin_heap_allocator() -> str:
    """``"heap"`` once glibc's thresholds are pinned (this process, from now on); ``"system"``
    where that is not possible (another C library): the measurement then runs as it is."""
    global _PINNED
    if _PINNED is None:
        _PINNED = "system"
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return _PINNED
        for limit in (1 << 30, 32 << 20):  # newer glibc takes 1 GiB; older ones stop at 32 MiB
            if mallopt(M_MMAP_THRESHOLD, limit) and mallopt(M_TRIM_THRESHOLD, limit):
                _PINNED = "heap"
                break
    return _PINNED
