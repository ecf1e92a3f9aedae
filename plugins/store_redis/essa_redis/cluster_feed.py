"""Executor caches fed by a Redis Cluster: a :class:`~essa_redis.feed.CacheFeed` per master, reads routed by slot.

Redis's client-side caching is per node: a master tracks the keys read on
its own connections and sends their invalidations to a listener connected to
it. :class:`ClusterCacheFeed` therefore keeps one ``CacheFeed`` (a listener
and its tracking connections) per master, opened at the first read of a key
in that master's slots, and sends the tracked read of a key to the feed of
the master that owns the key's slot in the slot map it read (``CLUSTER
SLOTS``). Every master's feed resets the cache when it loses a connection,
as on one server.

The cache is reset too when the slot map may have changed under it (entries
read on a node that no longer owns their slot would hear nothing more):

- a tracked read answered ``MOVED``: the slot has another owner;
- the slot map read again differs from the one reads were routed by: every
  :data:`~essa_redis.listener.PING_INTERVAL` seconds, and at once after a
  connection to a master failed (a failover promotes a replica, a resharding
  moves slots, a master joins or leaves). Feeds of nodes that are no longer
  masters are closed.

A read answered ``ASK`` (its slot is migrating and the key has left: its
deletion by ``MIGRATE`` invalidated it here) is read through the cluster
client, unwatched, and not cached.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import redis
from redis import exceptions as rx
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from essa.plugin import StoreError, describe

from .client import READ, Backend
from .feed import CacheFeed
from .listener import PING_INTERVAL, problems

Address = tuple[str, int | None, str | None]


class ClusterCacheFeed:
    """Tracked reads and their invalidations on every master of a Redis Cluster, for ``RedisStore.on_updates``.

    :param update: the cache's ``update(key, value)``; the feeds only ever say ``None`` (forget it).
    :param reset: the cache's ``reset()``: invalidations may have been lost.
    """

    def __init__(self, backend: Backend, raw_prefix: bytes, update: Callable[[str, bytes | None], None],
                 reset: Callable[[], None]) -> None:
        self.backend = backend
        self._raw_prefix = raw_prefix
        self._update = update
        self._reset = reset
        self._lock = threading.Lock()
        #: One feed per master address, opened at the first read routed to it.
        self.feeds: dict[Address, CacheFeed] = {}
        self._owners: list[Address | None] | None = None  # slot -> its master's address
        self._retired: list[CacheFeed] = []
        self._wake = threading.Event()
        self._closed = False
        self._monitoring = False
        self._monitor = threading.Thread(target=self._watch_slots, name="essa-redis-watch slots", daemon=True)
        #: Times the cache was reset because the slot map changed (or a read was answered ``MOVED``).
        self.changes = 0

    # -- reads ---------------------------------------------------------------------------------

    def read(self, rkey: bytes, what: str) -> tuple[object, bool]:
        """``read.lua``'s reply for ``rkey``, and whether the key's master tracks it for this feed."""
        return self.backend.run(what, lambda client: self._read(client, rkey))

    def _read(self, client: Any, rkey: bytes) -> tuple[object, bool]:
        owners = self._owners
        if owners is None:
            owners = self._refresh(client)
        address = owners[key_slot(rkey)]
        feed = self._feed(address) if address is not None else None
        if feed is None:  # a slot no master serves (yet), or closed: the cluster client says what is there
            return self.backend.evalsha(client, READ, rkey, []), False
        try:
            return feed.read_once(client, rkey)
        except rx.MovedError:  # before AskError: a MovedError is one
            self._refresh(client, moved=True)
            raise  # the store's retry reads again, routed by the new map
        except rx.AskError:
            return self.backend.evalsha(client, READ, rkey, []), False
        except (rx.ConnectionError, rx.TimeoutError, OSError):
            self._wake.set()  # a master lost: its replica may be taking over
            raise

    def _feed(self, address: Address) -> CacheFeed | None:
        with self._lock:
            if self._closed:
                return None
            feed = self.feeds.get(address)
            if feed is None:
                feed = CacheFeed(self.backend, self._raw_prefix, self._update, self._reset, address=address,
                                 on_failure=self._wake.set)
                self.feeds[address] = feed
            return feed

    # -- the slot map --------------------------------------------------------------------------

    def _refresh(self, client: Any, moved: bool = False) -> list[Address | None]:
        """Read the slot map; reset the cache if it changed (or ``moved``: a master said the slot is not its)."""
        owners: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        for (start, end), node in client.cluster_slots(target_nodes=redis.RedisCluster.RANDOM).items():
            host, port = node["primary"]
            owners[start:end + 1] = [(host, int(port), None)] * (end + 1 - start)
        with self._lock:
            if self._closed:
                return owners
            changed = self._owners is not None and owners != self._owners
            self._owners = owners
            if changed:
                masters = set(owners)
                for address in [a for a in self.feeds if a not in masters]:
                    self._retired.append(self.feeds.pop(address))
            if changed or moved:
                self.changes += 1
            if not self._monitoring:
                self._monitoring = True
                self._monitor.start()
        if self._retired:
            self._wake.set()
        if changed or moved:
            try:
                self._reset()
            except Exception as exc:  # the cache's reset must not stop the reads
                problems.warning("feed reset", "essa redis store: resetting the cache failed: %s", describe(exc),
                                 exc_info=exc)
        return owners

    def _watch_slots(self) -> None:
        """The monitor's thread: read the slot map every PING_INTERVAL s (at once when woken); close retired feeds."""
        while True:
            self._wake.wait(PING_INTERVAL)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.backend.run("reading the slot map", self._refresh)
            except StoreError:
                pass  # the cluster does not answer now: the next round asks again
            with self._lock:
                retired, self._retired = self._retired, []
            for feed in retired:
                feed.close()

    # -- closing -------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every feed and the monitor (within a few seconds)."""
        with self._lock:
            self._closed = True
            feeds = [*self.feeds.values(), *self._retired]
            self.feeds.clear()
            self._retired = []
        self._wake.set()
        for feed in feeds:
            feed.stop()
        for feed in feeds:
            feed.close()
        if self._monitoring and self._monitor is not threading.current_thread():
            self._monitor.join(5.0)


__all__ = ["ClusterCacheFeed"]
