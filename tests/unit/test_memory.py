"""essa's processes tune their C heap (essa.util.memory): arenas capped (the user's MALLOC_ARENA_MAX wins), free pages handed back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from essa.util.memory import limit_malloc_arenas

CHECK = "from essa.util.memory import limit_malloc_arenas; print(limit_malloc_arenas())"


def run_child(env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_arenas_are_capped_unless_the_environment_says_how_many():
    import os
    import platform

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    expected = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert run_child(env) == expected
    assert run_child({**env, "MALLOC_ARENA_MAX": "4"}) == "False"


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert limit_malloc_arenas() is False


TRIM = """
import ctypes, os
from essa.util.memory import trim_free_memory

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

chunks = [libc.malloc(1000) for _ in range(65536)]  # 64 MB on the heap
for chunk in chunks:
    libc.memset(chunk, 1, 1000)
for chunk in chunks[:-1]:  # the last one keeps the heap's top in use: glibc cannot shrink it on its own
    libc.free(chunk)
held = resident()
print(trim_free_memory(), held - resident())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trimming_hands_the_heaps_free_pages_back():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's malloc_trim")
    result = subprocess.run([sys.executable, "-c", TRIM], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    trimmed, released = result.stdout.split()
    assert trimmed == "True" and int(released) > 32 << 20  # most of the 64 MB freed in the middle of the heap


def test_tune_heap_starts_one_trimming_thread_and_caps_the_arenas(monkeypatch):
    import threading

    from essa.util import memory

    monkeypatch.setattr(memory, "_trimmer", None)
    calls: list[int] = []
    monkeypatch.setattr(memory, "limit_malloc_arenas", lambda: calls.append(1) or True)
    memory.tune_heap(interval=3600)
    memory.tune_heap(interval=3600)
    trimmers = [t for t in threading.enumerate() if t.name == "essa-heap-trim"]
    if memory._glibc() is None:
        assert trimmers == []
    else:
        assert len(trimmers) >= 1 and trimmers[-1].daemon and memory._trimmer in trimmers
    assert calls == [1, 1]


COLLECTOR = """
import gc, weakref
from essa.util.memory import YOUNG_COLLECTION, tune_collector
tune_collector()
assert gc.get_threshold()[0] == YOUNG_COLLECTION, gc.get_threshold()
assert gc.get_freeze_count() > 0  # the start's objects are out of every collection

class Node:
    pass

node = Node()
node.self = node  # a cycle: only the collector frees it
gone = weakref.ref(node)
del node
gc.collect()
print(gone() is None)
"""


def test_the_collector_freezes_the_start_and_still_collects_cycles():
    """A process-wide setting: checked in a child process, not in the test runner's."""
    result = subprocess.run([sys.executable, "-c", COLLECTOR], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
