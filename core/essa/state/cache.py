"""The executor-local cache of lattice values (Cloudburst's executor cache).

:class:`CachedStore` wraps a store that can push updates (its
:attr:`~essa.state.store.Store.watch_lease` is set: the anna store, the redis
store) and serves reads from this process's memory:

* a **read** of a key not cached asks the store to *watch* it
  (:meth:`~essa.state.store.Store.watch_bytes`: the value, and the store pushes
  every later change of the key here); the value, or its absence, is kept;
* a **pushed update** is merged into the cached value (pushes are lattice
  values: repeated or reordered pushes change nothing); a push of ``None``
  (deleted, or an invalidation without the value) drops the entry;
* a **write** is write-through: it is merged into the store, which
  acknowledges it as durable (or replicated) as before, and only then into the
  cached value. So a crash of the executor loses nothing a guest was told was
  written, and a guest reads its own writes;
* an entry is served for at most the store's lease (the store stops pushing
  after it), then read and watched again; every entry is dropped when the
  store says pushes may have been lost (a KVS node went away or joined);
* the cache holds at most ``capacity`` bytes of keys and values (least
  recently used entries go first).

A cached read can be stale by the time a push takes to arrive (a put on
another executor is acknowledged once the store's owners have it; the push
leaves the owner in the same batch). The consistency levels
(:mod:`essa.cluster.consistency`) bound what a call may see beyond that.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict

from essa.errors import EssaError
from essa.state.bincode import merge_encoded
from essa.state.store import Store
from essa.util.units import parse_size

#: Bytes counted per entry on top of its key and value (the dict slot, the tuple, the objects).
ENTRY_OVERHEAD = 160
#: The default capacity of an executor's cache.
DEFAULT_CAPACITY = 64 << 20


class CacheStats:
    """Counters of one cache (``essa status``, benchmarks, tests)."""

    __slots__ = ("hits", "misses", "pushes", "evictions", "resets", "unwatched")

    def __init__(self) -> None:
        self.hits = self.misses = self.pushes = self.evictions = self.resets = self.unwatched = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class CachedStore(Store):
    """A store whose values are cached in this process and kept fresh by the store's pushes.

    :param inner: the store; it must push updates (:attr:`Store.watch_lease` set).
    :param capacity: most bytes of keys and values kept (at least 1).
    """

    def __init__(self, inner: Store, capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__({})
        if inner.watch_lease is None:
            raise EssaError(f"the {inner.name} store cannot push updates, so it cannot be cached")
        if capacity < 1:
            raise EssaError(f"the cache capacity must be at least 1 byte (got {capacity})")
        self.name = inner.name
        self.inner = inner
        self.capacity = capacity
        self.lease = float(inner.watch_lease)
        self.stats = CacheStats()
        self._lock = threading.Lock()
        #: key -> (encoded value or None for an absent key, served until (monotonic))
        self._entries: OrderedDict[str, tuple[bytes | None, float]] = OrderedDict()
        self._bytes = 0
        #: keys being watched right now -> [watches in flight, values pushed meanwhile (merged) or None,
        #: deletions or invalidations pushed so far]: one slot per key until its last watch is back, so a
        #: push that drops the entry one watch cached reaches the watches still on their way too
        self._loading: dict[str, list] = {}
        self._generation = 0
        inner.on_updates(self._pushed, self.reset)

    # -- reads and writes -------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[1] > now:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return entry[0]
        return self._load(key, now)

    def refresh(self, key: str) -> bytes | None:
        """Read ``key`` from the store (watching it again) even if it is cached; the cache takes the value."""
        return self._load(key, time.monotonic())

    def _load(self, key: str, now: float) -> bytes | None:
        with self._lock:
            self.stats.misses += 1
            generation = self._generation
            slot = self._loading.setdefault(key, [0, None, 0])
            slot[0] += 1
            dropped = slot[2]
        try:
            value, watched = self.inner.watch_bytes(key)
        except BaseException:
            with self._lock:
                self._unload(key, slot)
            raise
        with self._lock:
            self._unload(key, slot)
            pushed = slot[1]
            if slot[2] != dropped:  # deleted or invalidated while the watch was on its way: read it again next time
                return value
            if pushed is not None:
                value = _merge(value, pushed)
            entry = self._entries.get(key)
            if entry is not None:  # another thread loaded it meanwhile, and pushes may have followed
                value = _merge(value, entry[0])
            if not watched:
                self.stats.unwatched += 1
            elif generation == self._generation:
                self._put(key, value, now + self.lease)
        return value

    def merge_bytes(self, key: str, value: bytes) -> None:
        self.inner.merge_bytes(key, value)  # acknowledged by the store first: nothing cached is less durable
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._put(key, _merge(entry[0], value, stored=False), entry[1])

    def merge_many(self, items: list[tuple[str, bytes]]) -> None:
        self.inner.merge_many(items)
        with self._lock:
            for key, value in items:
                entry = self._entries.get(key)
                if entry is not None:
                    self._put(key, _merge(entry[0], value, stored=False), entry[1])

    def delete(self, key: str) -> bool:
        existed = self.inner.delete(key)
        with self._lock:
            self._drop(key)
        return existed

    def keys(self, prefix: str = "") -> list[str]:
        return self.inner.keys(prefix)

    def close(self) -> None:
        self.reset()
        self.inner.close()

    def describe(self) -> str:
        return f"{self.inner.describe()}, cached here (up to {self.capacity} bytes)"

    # -- the store's pushes --------------------------------------------------------------

    def _pushed(self, key: str, value: bytes | None) -> None:
        with self._lock:
            self.stats.pushes += 1
            slot = self._loading.get(key)
            if slot is not None:
                if value is None:
                    slot[2] += 1
                else:
                    slot[1] = _merge(slot[1], value) if slot[1] is not None else value
            entry = self._entries.get(key)
            if entry is None:
                return
            if value is None:  # deleted, or changed to a value the store did not send
                self._drop(key)
            else:
                self._put(key, _merge(entry[0], value), entry[1], touch=False)

    def reset(self) -> None:
        """Forget every entry (pushes may have been lost)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._bytes = 0
            self.stats.resets += 1

    # -- bookkeeping (lock held) -------------------------------------------------------------

    def _put(self, key: str, value: bytes | None, until: float, touch: bool = True) -> None:
        old = self._entries.get(key)
        if old is not None:
            self._bytes -= _size(key, old[0])
        self._entries[key] = (value, until)
        if touch:
            self._entries.move_to_end(key)
        self._bytes += _size(key, value)
        while self._bytes > self.capacity and self._entries:
            evicted, (old_value, _until) = self._entries.popitem(last=False)
            self._bytes -= _size(evicted, old_value)
            self.stats.evictions += 1

    def _unload(self, key: str, slot: list) -> None:
        slot[0] -= 1
        if not slot[0] and self._loading.get(key) is slot:
            del self._loading[key]

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= _size(key, entry[0])

    # -- inspection --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes counted against :attr:`capacity`."""
        return self._bytes

    def status(self) -> dict:
        """Size and counters, for ``essa status``."""
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "capacity": self.capacity,
                    **self.stats.as_dict()}


def _size(key: str, value: bytes | None) -> int:
    return len(key) + (len(value) if value is not None else 0) + ENTRY_OVERHEAD


def _merge(old: bytes | None, new: bytes | None, stored: bool = True) -> bytes | None:
    """``new`` merged into ``old``; a value of another lattice type (the key was deleted and written
    anew meanwhile) replaces it. ``stored``: ``new`` came from the store (a push or a read), so it is
    canonically encoded (see :func:`~essa.state.bincode.merge_encoded`); a guest's write may not be."""
    if new is None:
        return old
    try:
        return merge_encoded(old, new, new_is_canonical=stored)
    except EssaError:
        return new




def capacity_from_environment() -> int:
    """``$ESSA_CACHE_SIZE`` in bytes (``64M`` if unset; ``0``: no cache).

    :raises EssaError: the variable is not a size.
    """
    text = os.environ.get("ESSA_CACHE_SIZE", "").strip()
    if not text:
        return DEFAULT_CAPACITY
    if text == "0":
        return 0
    try:
        return parse_size(text)
    except ValueError as exc:
        raise EssaError(f"ESSA_CACHE_SIZE={text!r}: {exc}") from None


def cached(store: Store, capacity: int | None = DEFAULT_CAPACITY) -> Store:
    """``store`` behind a :class:`CachedStore` of ``capacity`` bytes if it pushes updates; else ``store`` itself
    (a capacity of 0 or ``None`` turns the cache off). An embedded store such as LMDB reads from local memory
    already: a cache would buy it nothing."""
    if not capacity or store.watch_lease is None:
        return store
    return CachedStore(store, capacity)


__all__ = ["CacheStats", "CachedStore", "DEFAULT_CAPACITY", "cached", "capacity_from_environment"]
