"""RedisStore: essa's lattice state in Redis or Valkey, one server or a Redis Cluster (``essa --store redis``).

Every put is one round trip: the merge script (``merge.lua``) merges the value
on the server, atomically, with essa's merge rules; with ``wait_replicas=N``
the put's ``WAIT N`` travels in the same round trip; ``merge_many`` sends its
merges in one pipeline. Reads return the bytes every essa store returns.
Executors cache values, kept fresh by Redis's client-side-caching
invalidations (:mod:`essa_redis.feed`; on a Redis Cluster, one feed per
master: :mod:`essa_redis.cluster_feed`). See :mod:`essa_redis.layout` for where
values lie, :mod:`essa_redis.options` for the options and
:mod:`essa_redis.watch` for change notifications; the plugin's README says
what is guaranteed.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Mapping

from essa.plugin import ClusterServices, Store, StoreError

from . import layout
from .client import MERGE, READ, Backend
from .cluster_feed import ClusterCacheFeed
from .feed import CacheFeed
from .options import OPTIONS, normalise, parse
from .watch import Watch

#: Seconds an executor's cache serves a value before reading it again. Invalidations cover every change
#: while the feed's connections live, and losing one resets the cache: the lease only bounds what an
#: invalidation lost unseen could cost.
WATCH_LEASE = 30.0


class RedisStore(Store):
    """A client of Redis (or Valkey) as an essa store; safe for many threads."""

    #: The options ``--store-option`` takes, with what each sets.
    option_help = OPTIONS

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        self.settings = parse(self.options)
        self.backend = Backend(self.settings)
        self._prefix = self.settings.prefix
        self._raw_prefix = self._prefix.encode("utf-8")
        self._watches: list[Watch] = []
        self._updates: tuple[Callable[[str, bytes | None], None], Callable[[], None]] | None = None
        self._feed: CacheFeed | ClusterCacheFeed | None = None
        self._feed_lock = threading.Lock()

    # -- Store API -------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes | None:
        rkey = layout.redis_key(self._prefix, key)
        return layout.assemble(self.backend.run(f"the read of key {key!r}",
                                                lambda client: self.backend.evalsha(client, READ, rkey, [])))

    def merge_bytes(self, key: str, value: bytes) -> None:
        rkey = layout.redis_key(self._prefix, key)
        args = layout.merge_arguments(value)
        what = f"the put of key {key!r}"
        wanted = self.settings.wait_replicas
        if not wanted:
            self.backend.run(what, lambda client: self.backend.evalsha(client, MERGE, rkey, args))
            return
        reached = self.backend.run(what, lambda client: self.backend.merge_and_wait(client, rkey, args))
        self._check_replicas(what, reached)

    def merge_many(self, items: list[tuple[str, bytes]]) -> None:
        """Every merge in one pipeline: one round trip to the server (to each master of a cluster)."""
        if not items:
            return
        merges = [(layout.redis_key(self._prefix, key), layout.merge_arguments(value)) for key, value in items]
        what = f"the puts of {len(items)} keys ({items[0][0]!r}, ...)" if len(items) > 1 else \
            f"the put of key {items[0][0]!r}"
        wanted = self.settings.wait_replicas
        if wanted and self._is_cluster():
            super().merge_many(items)  # WAIT answers for one master's writes: each put waits on its own
            return
        reached = self.backend.run(what, lambda client: self.backend.merge_many(client, merges, wanted))
        if wanted:
            self._check_replicas(what, reached)

    def _check_replicas(self, what: str, reached: int) -> None:
        wanted = self.settings.wait_replicas
        if reached < wanted:
            raise StoreError(
                f"state store unavailable: {what} reached {reached} of {wanted} replicas within "
                f"{self.settings.wait_timeout:g} s (wait_replicas={wanted}); it is not acknowledged, "
                "and a failover now could lose it")

    def _is_cluster(self) -> bool:
        """Whether the servers are a Redis Cluster (connecting first if the options leave it open)."""
        return bool(self.backend.run("a first request", lambda client: self.backend.is_cluster))

    def keys(self, prefix: str = "") -> list[str]:
        pattern = layout.scan_pattern(self._prefix + prefix)
        raw = self.backend.run("listing keys", lambda client: set(self.backend.scan(pattern)))
        found = (layout.essa_key(self._raw_prefix, rkey) for rkey in raw)
        return sorted(key for key in found if key is not None and key.startswith(prefix))

    def delete(self, key: str) -> bool:
        rkey = layout.redis_key(self._prefix, key)
        return bool(self.backend.run(f"the deletion of key {key!r}", lambda client: client.unlink(rkey)))

    def close(self) -> None:
        for watch in list(self._watches):
            watch.close()
        if self._feed is not None:
            self._feed.close()
        self.backend.close()

    def describe(self) -> str:
        s = self.settings
        kind = {True: "redis cluster via", False: "redis at", None: "redis at"}[self.backend.is_cluster]
        extra = f", puts wait for {s.wait_replicas} replica(s)" if s.wait_replicas else ""
        db = f" db {s.db}" if s.db else ""
        return f"{kind} {s.where}{db}, key prefix {s.prefix!r}{extra}"

    # -- executor caches -------------------------------------------------------------------

    #: Executors cache this store's values, on one server or a Redis Cluster.
    watch_lease: float | None = WATCH_LEASE

    def on_updates(self, update: Callable[[str, bytes | None], None], reset: Callable[[], None]) -> None:
        """Have the invalidations of the keys :meth:`watch_bytes` reads reach ``update(key, None)``, and
        ``reset()`` called when some may have been lost (see :mod:`essa_redis.feed` and, on a Redis Cluster,
        :mod:`essa_redis.cluster_feed`)."""
        if self._updates is None:
            self._updates = (update, reset)

    def watch_bytes(self, key: str) -> tuple[bytes | None, bool]:
        """Read ``key`` on a tracking connection of its master: its next change reaches :meth:`on_updates`'
        ``update``.

        Not watched (``False``) without :meth:`on_updates`, while the listener of the key's master is not
        subscribed, or while the key's slot is migrating (``ASK``).
        """
        rkey = layout.redis_key(self._prefix, key)
        feed = self._cache_feed()
        if feed is None:
            return self.get_bytes(key), False
        reply, watched = feed.read(rkey, f"the read of key {key!r}")
        return layout.assemble(reply), watched

    def _cache_feed(self) -> CacheFeed | ClusterCacheFeed | None:
        """The feed of :meth:`on_updates`, made at the first read: one server's, or a cluster's."""
        if self._feed is not None or self._updates is None:
            return self._feed
        kind = ClusterCacheFeed if self._is_cluster() else CacheFeed
        with self._feed_lock:
            if self._feed is None:
                self._feed = kind(self.backend, self._raw_prefix, *self._updates)
            return self._feed

    # -- change notifications --------------------------------------------------------------

    def watch(self, prefixes: str | Iterable[str], callback: Callable[[str | None], None]) -> Watch:
        """Call ``callback(key)`` whenever a key starting with one of ``prefixes`` changes.

        ``prefixes`` is a key prefix or several (``""``: every key; a whole key
        watches that key, and the longer keys it begins). ``callback`` runs on
        the watch's threads, once per changed key, soon after the change (a
        put that changed nothing is not a change); ``callback(None)`` means
        changes may have been missed (the connection to a server was lost and
        is back, or the database was flushed): re-read everything watched.
        Returns once the server tracks the prefixes; close the returned
        :class:`~essa_redis.watch.Watch` to stop. Closing the store closes it.

        :raises essa.errors.StoreError: the servers cannot be reached.
        """
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        watch = Watch(self.backend, [self._prefix + p for p in prefixes], self._raw_prefix, callback,
                      on_close=self._watches.remove)
        self._watches.append(watch)
        try:
            watch.start()
        except BaseException:
            watch.close()
            raise
        return watch

    # -- essa up -----------------------------------------------------------------------------

    @classmethod
    def cluster_services(cls, options: Mapping[str, str], endpoint: str) -> ClusterServices:
        """Nothing to start: every executor uses the Redis servers of the options (checked here)."""
        options = normalise(options)
        settings = parse(options)
        return ClusterServices(options=options, endpoints={"redis": settings.where})

    def __repr__(self) -> str:
        return f"<RedisStore {self.describe()}>"


__all__ = ["RedisStore"]
