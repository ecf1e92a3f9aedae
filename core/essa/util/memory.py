"""This process's C heap: fewer glibc malloc arenas for essa's long-running processes.

glibc's malloc gives threads arenas of their own, up to 8 per core, and a
chunk freed by one thread goes back to the arena of the thread that
allocated it. essa's processes run many threads (zenoh's, the work pool's,
the batching and housekeeping loops) that pass messages to each other, so
what one allocates another frees: over a million calls
(``bench/soak_failover.py``) the memory in use stayed flat (glibc's
``mallinfo2``, CPython's blocks and arenas) while the free memory the arenas
held, and so the resident memory, kept growing. With at most
:data:`ARENAS` arenas, the free chunks are found again. CPython's GIL
serializes most allocations anyway, so more arenas bought little.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: glibc's ``M_ARENA_MAX`` parameter of ``mallopt`` (``malloc.h``).
M_ARENA_MAX = -8
#: The most malloc arenas essa's own processes use.
ARENAS = 2


def limit_malloc_arenas(count: int = ARENAS) -> bool:
    """Cap glibc malloc's arenas at ``count`` for this process; return whether it did.

    Call it early, before threads start (arenas made before stay). Nothing
    happens outside glibc, or when ``MALLOC_ARENA_MAX`` is set in the
    environment (the user's choice wins: glibc has applied it already).
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only: musl's mallopt does nothing
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_ARENA_MAX, count) == 1


__all__ = ["ARENAS", "M_ARENA_MAX", "limit_malloc_arenas"]
