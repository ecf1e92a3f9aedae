"""Executor caches fed by one Redis server: reads the server tracks, and their invalidations.

An executor's cache (:mod:`essa.state.cache`) reads a key it does not hold
with ``watch_bytes``. :class:`CacheFeed` makes that read on one of its
*tracking connections* (``CLIENT TRACKING ON REDIRECT <listener>``, Redis's
default tracking mode): the server remembers which keys each connection read,
as Anna's KVS nodes remember which caches watch a key, and sends the next
change of such a key, by any client, as one invalidation to the feed's
listener (:class:`~essa_redis.listener.InvalidationListener`). The feed hands
it to the cache as ``update(key, None)``: the cache forgets the entry, and its
next read of the key reads and tracks it again. So the server sends each
executor only the changes of keys it holds, one message per change.

Invalidations can be lost only with a connection: the listener's (the
server restarted, a failover, a network cut, found by a ``PING`` every 5 s)
or a tracking connection's (the server forgets what it tracked for it). The
feed then calls the cache's ``reset()``, and so it does for a flushed
database (a null invalidation); reads made while no listener is up are not
watched, so the cache keeps nothing it cannot hear about.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Callable

import redis
from redis import exceptions as rx

from essa.plugin import describe

from .client import READ, Backend, one_line
from .layout import essa_key
from .listener import PING_INTERVAL, InvalidationListener, problems

#: Tracking connections a feed opens at most (concurrent cache misses share them beyond that).
MAX_TRACKERS = 4
_SAME = object()  # _lost(): the listener did not change


class _Tracker:
    """One tracking connection, used by one reader at a time (its lock)."""

    __slots__ = ("lock", "connection", "epoch", "used")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection: redis.Connection | None = None
        #: The feed's epoch the connection's tracking belongs to (``None``: it tracks nothing).
        self.epoch: int | None = None
        self.used = 0.0


class CacheFeed(InvalidationListener):
    """Tracked reads and their invalidations on the store's one server, for :meth:`RedisStore.on_updates`.

    :param update: the cache's ``update(key, value)``; the feed only ever says ``None`` (forget it).
    :param reset: the cache's ``reset()``: invalidations may have been lost.
    :param address: ``(host, port, unix_path)`` of the server (default: the store's first); a cluster feed
        (:mod:`essa_redis.cluster_feed`) has one feed per master.
    :param on_failure: called after the listener's connection failed or could not be opened.
    """

    def __init__(self, backend: Backend, raw_prefix: bytes, update: Callable[[str, bytes | None], None],
                 reset: Callable[[], None], address: tuple[str, int | None, str | None] | None = None,
                 on_failure: Callable[[], None] | None = None) -> None:
        if address is None:
            server = backend.settings.servers[0]
            address = (server.host, server.port, server.path)
        super().__init__(backend, address, "feeding caches from")
        self._on_failure = on_failure
        self._raw_prefix = raw_prefix
        self._update = update
        self._reset = reset
        self._lock = threading.Lock()
        self._trackers: list[_Tracker] = []
        self._turn = itertools.count()
        self._started = False
        self._closed = False
        #: The listener's client id while it is subscribed, else ``None``.
        self.listener_id: int | None = None
        #: Counts the times invalidations may have been lost: a read is watched only if none was meanwhile.
        self.epoch = 0
        #: Why the server refuses tracking (an ACL user without ``CLIENT``), if it does: nothing is watched then.
        self.refused: str | None = None

    # -- reads ---------------------------------------------------------------------------------

    def read(self, rkey: bytes, what: str) -> tuple[object, bool]:
        """``read.lua``'s reply for ``rkey``, and whether the server tracks the key for this feed."""
        return self.backend.run(what, lambda client: self.read_once(client, rkey))

    def read_once(self, client: object, rkey: bytes) -> tuple[object, bool]:
        """One attempt of :meth:`read` (errors raised as redis-py's); ``client`` reads when nothing is tracked."""
        self._start_once()
        if self.listener_id is None or self.refused is not None or self._closed:
            return self.backend.evalsha(client, READ, rkey, []), False
        tracker = self._take()
        try:
            return self._read(tracker, rkey)
        finally:
            tracker.lock.release()

    def _start_once(self) -> None:
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        self.start()
        self.ready.wait(self.backend.settings.connect_timeout)  # the first read is watched if the server answers

    def _take(self) -> _Tracker:
        with self._lock:
            for tracker in self._trackers:
                if tracker.lock.acquire(blocking=False):
                    return tracker
            if len(self._trackers) < MAX_TRACKERS:
                tracker = _Tracker()
                tracker.lock.acquire()
                self._trackers.append(tracker)
                return tracker
            tracker = self._trackers[next(self._turn) % len(self._trackers)]
        tracker.lock.acquire()
        return tracker

    def _read(self, tracker: _Tracker, rkey: bytes) -> tuple[object, bool]:
        """One read on ``tracker`` (its lock held), armed for the current listener first."""
        with self._lock:
            epoch, listener_id = self.epoch, self.listener_id
        if tracker.connection is not None and tracker.epoch != epoch:
            self._close(tracker)  # tracks for a listener that is gone: what it tracked was reset already
        if tracker.connection is None:
            connection = self.backend.connection(self.address, self.backend.settings.db)
            try:
                connection.connect()
                if listener_id is not None:
                    connection.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id)
                    connection.read_response()
            except rx.ResponseError as exc:  # no retry changes that: read without tracking from now on
                self._refuse(f"redis at {self.name} refuses to track keys: {one_line(exc)}")
                listener_id = None
            except BaseException:
                connection.disconnect()
                raise
            tracker.connection, tracker.epoch = connection, (epoch if listener_id is not None else None)
        try:
            reply = _evalsha(tracker.connection, rkey)
        except (rx.ConnectionError, rx.TimeoutError, OSError):
            self._lose(tracker)
            raise
        tracker.used = time.monotonic()
        with self._lock:
            watched = tracker.epoch == epoch == self.epoch
        return reply, watched

    # -- losing invalidations --------------------------------------------------------------------

    def _close(self, tracker: _Tracker) -> None:
        if tracker.connection is not None:
            tracker.connection.disconnect()
        tracker.connection, tracker.epoch = None, None

    def _lose(self, tracker: _Tracker) -> None:
        """``tracker``'s connection failed: the server forgets what it tracked for it."""
        with self._lock:
            armed = tracker.epoch is not None and tracker.epoch == self.epoch
        self._close(tracker)
        if armed:
            self._lost()

    def _lost(self, listener_id: object = _SAME) -> None:
        """Invalidations may have been lost: a new epoch (with ``listener_id``, a new listener), the cache reset."""
        with self._lock:
            self.epoch += 1
            if listener_id is not _SAME:
                self.listener_id = listener_id  # type: ignore[assignment]
        try:
            self._reset()
        except Exception as exc:  # the cache's reset must not stop the listener
            problems.warning("feed reset", "essa redis store: resetting the cache failed: %s", describe(exc),
                             exc_info=exc)

    # -- the listener's hooks (its thread) --------------------------------------------------------

    def on_up(self, listener_id: int) -> None:
        if self.epoch == 0:  # the first listener: nothing was watched before it
            with self._lock:
                self.epoch, self.listener_id = 1, listener_id
            return
        self._lost(listener_id)  # changes made while no listener was up were not heard

    def on_keys(self, keys: list[bytes]) -> None:
        for rkey in keys:
            key = essa_key(self._raw_prefix, rkey)
            if key is None:
                continue
            try:
                self._update(key, None)
            except Exception as exc:
                problems.warning("feed update", "essa redis store: invalidating a cached key failed: %s",
                                 describe(exc), exc_info=exc)

    def on_flush(self) -> None:
        self._lost()

    def on_refused(self) -> None:
        self._refuse(self.error or "")

    def _refuse(self, reason: str) -> None:
        self.refused = reason
        problems.warning(f"refused {reason}", "essa redis store: %s; this process caches nothing", reason)

    def on_down(self) -> None:
        self._lost(None)

    def after_failure(self) -> None:
        if self._on_failure is not None:
            self._on_failure()

    def keepalive(self) -> None:
        """Ping the idle tracking connections: one the server closed (its ``timeout``) took its keys along."""
        now = time.monotonic()
        for tracker in list(self._trackers):
            if not tracker.lock.acquire(blocking=False):
                continue  # in use: its reader sees a failure
            try:
                if tracker.connection is not None and now - tracker.used > PING_INTERVAL:
                    tracker.connection.send_command("PING")
                    tracker.connection.read_response()
                    tracker.used = now
            except (rx.RedisError, OSError):
                self._lose(tracker)
            finally:
                tracker.lock.release()

    # -- closing -------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening and close every connection (within about a second)."""
        with self._lock:
            self._closed = True
            started = self._started
        self.stop()
        if started:
            self.join(5.0)
        for tracker in list(self._trackers):
            with tracker.lock:
                self._close(tracker)


def _evalsha(connection: redis.Connection, rkey: bytes) -> object:
    """``read.lua`` on ``connection``, sending the script once if the server does not know it."""
    connection.send_command("EVALSHA", READ.sha, 1, rkey)
    try:
        return connection.read_response()
    except rx.NoScriptError:
        connection.send_command("SCRIPT", "LOAD", READ.source)
        connection.read_response()
        connection.send_command("EVALSHA", READ.sha, 1, rkey)
        return connection.read_response()


__all__ = ["CacheFeed", "MAX_TRACKERS"]
