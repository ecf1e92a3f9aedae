"""The executor cache's bookkeeping, on an in-process store that pushes its changes (the Anna store's
behaviour, over real processes, is in tests/anna/test_anna_cache.py)."""

from __future__ import annotations

import threading

import pytest

from essa.errors import EssaError
from essa.state.bincode import decode_lattice, encode_lattice
from essa.state.cache import ENTRY_OVERHEAD, CachedStore, cached
from essa.state.lattice import LwwLattice, SetLattice
from essa.state.memory import MemoryStore


class PushingStore(MemoryStore):
    """A memory store that watches keys and pushes every change to its one watcher, synchronously."""

    watch_lease = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.watched: set[str] = set()
        self.update = self.reset = None
        self.before_answer = None  # called between reading a watched value and answering (races)

    def watch_bytes(self, key):
        value = self.get_bytes(key)
        self.watched.add(key)
        if self.before_answer is not None:
            self.before_answer(key)
        return value, True

    def on_updates(self, update, reset):
        self.update, self.reset = update, reset

    def merge_bytes(self, key, value):
        super().merge_bytes(key, value)
        if key in self.watched:
            self.update(key, self.get_bytes(key))

    def delete(self, key):
        existed = super().delete(key)
        if key in self.watched:
            self.update(key, None)
        return existed


def s(*members: bytes) -> bytes:
    return encode_lattice(SetLattice(set(members)))


def members(value):
    return set(decode_lattice(value).values) if value is not None else set()


def test_a_store_that_cannot_push_is_not_cached():
    store = MemoryStore()
    assert cached(store) is store
    with pytest.raises(EssaError, match="cannot push updates"):
        CachedStore(store)
    assert cached(PushingStore(), 0).__class__ is PushingStore


def test_reads_hit_pushes_merge_deletes_drop():
    store = PushingStore()
    cache = CachedStore(store)
    store.merge_bytes("k", s(b"a"))
    assert members(cache.get_bytes("k")) == {b"a"} and cache.stats.misses == 1
    store.merge_bytes("k", s(b"b"))  # pushed
    assert members(cache.get_bytes("k")) == {b"a", b"b"} and cache.stats.hits == 1
    store.delete("k")
    assert "k" not in cache._entries
    assert cache.get_bytes("k") is None


def test_a_push_during_the_watch_is_not_lost():
    store = PushingStore()
    cache = CachedStore(store)
    store.merge_bytes("k", s(b"old"))
    store.before_answer = lambda key: store.merge_bytes(key, s(b"new"))  # lands between read and answer
    assert members(cache.get_bytes("k")) == {b"old", b"new"}
    store.before_answer = None
    assert members(cache.get_bytes("k")) == {b"old", b"new"} and cache.stats.hits == 1


def test_an_invalidation_reaches_every_watch_of_the_key_still_on_its_way():
    """A store that says only "changed" (``update(key, None)``, as Redis's invalidations do): with two watches
    of one key in flight, one answers and is cached, then the key changes: the entry is dropped, and the
    older value the other watch brings back is not cached either."""
    store = PushingStore()
    cache = CachedStore(store)
    store.merge_bytes("k", s(b"old"))
    read, go_on = threading.Event(), threading.Event()

    def hold(key):
        if threading.current_thread().name == "slow":
            read.set()
            go_on.wait(60)

    store.before_answer = hold
    slow = threading.Thread(target=cache.get_bytes, args=("k",), name="slow")
    slow.start()
    assert read.wait(60)
    assert members(cache.get_bytes("k")) == {b"old"} and "k" in cache._entries
    MemoryStore.merge_bytes(store, "k", s(b"new"))  # changed: the store only says so
    store.update("k", None)
    assert "k" not in cache._entries
    go_on.set()
    slow.join(60)
    assert "k" not in cache._entries and not cache._loading
    assert members(cache.get_bytes("k")) == {b"old", b"new"}


def test_a_reset_drops_everything_and_a_load_across_it_is_not_kept():
    store = PushingStore()
    cache = CachedStore(store)
    store.merge_bytes("k", s(b"a"))
    cache.get_bytes("k")
    store.reset()
    assert len(cache) == 0 and cache.bytes == 0
    store.before_answer = lambda key: store.reset()
    cache.get_bytes("k")
    assert len(cache) == 0  # watched before the reset: its pushes may be lost


def test_capacity_bounds_bytes_least_recently_used_first():
    store = PushingStore()
    value = encode_lattice(LwwLattice(1, b"v" * 100))
    per_entry = len("k000") + len(value) + ENTRY_OVERHEAD
    cache = CachedStore(store, capacity=10 * per_entry)
    for i in range(10):
        store.merge_bytes(f"k{i:03d}", value)
        cache.get_bytes(f"k{i:03d}")
    cache.get_bytes("k000")  # most recently used now
    store.merge_bytes("k010", value)
    cache.get_bytes("k010")
    assert cache.bytes <= cache.capacity and len(cache) == 10
    assert "k000" in cache._entries and "k001" not in cache._entries and cache.stats.evictions == 1


def test_writes_reach_the_store_first_then_the_cached_value():
    store = PushingStore()
    cache = CachedStore(store)
    cache.get_bytes("k")
    cache.merge_many([("k", s(b"x")), ("j", s(b"y"))])
    assert members(store.get_bytes("k")) == {b"x"} and members(cache.get_bytes("k")) == {b"x"}
    assert "j" not in cache._entries  # not read here: not cached


def test_concurrent_readers_and_pushes_converge():
    store = PushingStore()
    cache = CachedStore(store)
    store.merge_bytes("k", s(b"0"))
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            cache.get_bytes("k")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for i in range(1, 300):
        store.merge_bytes("k", s(str(i).encode()))
        if i % 50 == 0:
            store.reset()
    stop.set()
    for t in readers:
        t.join()
    assert members(cache.get_bytes("k")) == {str(i).encode() for i in range(300)}
