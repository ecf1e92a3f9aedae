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

Memory freed after a burst (a scheduler taking every call while its peer
restarts) stays in the heap too, as free chunks between live ones, which
glibc returns to the system only from the heap's top. :func:`tune_heap`
therefore also starts a thread that calls ``malloc_trim`` every
:data:`TRIM_INTERVAL` seconds: it hands every free page back
(``MADV_DONTNEED``), so resident memory follows the memory in use.

And its garbage collector (:func:`tune_collector`): each message (a DAG
call's plan most) unpacks into many dicts and lists, so CPython's default
(a collection of the youngest objects every 700 container allocations, and
of all of them now and then) spent about a seventh of a scheduler's CPU placing
DAG calls on collections that found nothing. The objects of a process's
start (modules, plugins, its zenoh session) are frozen out of every
collection, and the youngest objects are collected every
:data:`YOUNG_COLLECTION` allocations; cycles are still collected.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
import time

#: glibc's ``M_ARENA_MAX`` parameter of ``mallopt`` (``malloc.h``).
M_ARENA_MAX = -8
#: The most malloc arenas essa's own processes use.
ARENAS = 2
#: Seconds between two hand-backs of free heap pages (:func:`tune_heap`).
TRIM_INTERVAL = 30.0
#: Container allocations (net) between two collections of the youngest objects (CPython's default: 700).
YOUNG_COLLECTION = 10_000

_trimmer: threading.Thread | None = None
_trimmer_lock = threading.Lock()


def _glibc():
    """glibc, or ``None`` (another C library, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "malloc_trim") else None


def limit_malloc_arenas(count: int = ARENAS) -> bool:
    """Cap glibc malloc's arenas at ``count`` for this process; return whether it did.

    Call it early, before threads start (arenas made before stay). Nothing
    happens outside glibc, or when ``MALLOC_ARENA_MAX`` is set in the
    environment (the user's choice wins: glibc has applied it already).
    """
    libc = _glibc()  # glibc only: musl's mallopt does nothing
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_ARENA_MAX, count) == 1


def trim_free_memory() -> bool:
    """Hand the heap's free pages back to the system now; return whether any were (``False`` outside glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    trim = libc.malloc_trim
    trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return trim(0) == 1


def tune_heap(interval: float = TRIM_INTERVAL) -> None:
    """Set up this long-running process's C heap: cap its arenas and hand free pages back every ``interval`` s.

    Call it early, before threads start; a second call changes nothing. The
    trimming thread is a daemon: it ends with the process.
    """
    global _trimmer
    limit_malloc_arenas()
    with _trimmer_lock:
        if _trimmer is not None or _glibc() is None:
            return

        def trim_forever() -> None:
            while True:
                time.sleep(interval)
                trim_free_memory()

        _trimmer = threading.Thread(target=trim_forever, name="essa-heap-trim", daemon=True)
        _trimmer.start()


def tune_collector(young: int = YOUNG_COLLECTION) -> None:
    """Set up this long-running process's garbage collector once it has started (see the module documentation).

    What exists now is collected once, then frozen (never collected again,
    never traversed); the youngest objects are collected every ``young``
    container allocations. Process-wide: for essa's own processes, not for a
    program that embeds essa.
    """
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


__all__ = ["ARENAS", "M_ARENA_MAX", "TRIM_INTERVAL", "YOUNG_COLLECTION", "limit_malloc_arenas", "trim_free_memory",
           "tune_collector", "tune_heap"]
