"""Change notifications: Redis's client-side-caching invalidations, turned into a callback per changed key.

Each master gets two connections of the watch's own: one subscribes to
``__redis__:invalidate``, the other asks for ``CLIENT TRACKING ON REDIRECT
<the first> BCAST PREFIX ...`` (broadcasting mode: every change of a key with
one of the prefixes is announced, whoever made it; no server configuration is
needed, Redis 6 or later). One thread per master reads the announcements.

A connection lost (a server restarted, a failover) is opened again; on a
Redis Cluster the masters are looked up anew, so a promoted replica is
watched too. Changes made while a master was not watched cannot be known:
the callback then gets ``None`` (re-read everything), as it does when the
database is flushed.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import redis
from redis import exceptions as rx

from essa.plugin import StoreError, describe

from .client import Backend
from .layout import essa_key
from .listener import InvalidationListener, problems


def _distinct(prefixes: list[str]) -> list[str]:
    """The prefixes no other one begins (Redis refuses overlapping prefixes on one connection)."""
    ordered = sorted(set(prefixes))
    kept: list[str] = []
    for p in ordered:
        if not any(p.startswith(k) for k in kept):
            kept.append(p)
    return kept


class _Master(InvalidationListener):
    """The listener of one master, its changes announced by broadcast (``BCAST PREFIX ...``)."""

    def __init__(self, watch: "Watch", host: str, port: int | None, path: str | None, late: bool) -> None:
        super().__init__(watch.backend, (host, port, path), "watching")
        self.watch = watch
        #: Changes may have been missed before it listens: it was started after the watch began (a promoted
        #: replica), or its connection was lost.
        self.gap = late
        self.tracker: redis.Connection | None = None

    def on_up(self, listener_id: int) -> None:
        tracker = self.backend.connection(self.address)
        try:
            tracker.connect()
            args = [word for p in self.watch.prefixes for word in ("PREFIX", p)]
            tracker.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "BCAST", *args)
            tracker.read_response()
        except BaseException:
            tracker.disconnect()
            raise
        self.tracker = tracker
        if self.gap:
            self.watch.notify(None)
        self.gap = True

    def on_keys(self, keys: list[bytes]) -> None:
        for rkey in keys:
            self.watch.notify_raw(rkey)

    def on_flush(self) -> None:
        self.watch.notify(None)

    def keepalive(self) -> None:
        if self.tracker is not None:
            self.tracker.send_command("PING")
            self.tracker.read_response()

    def on_down(self) -> None:
        if self.tracker is not None:
            self.tracker.disconnect()
            self.tracker = None

    def after_failure(self) -> None:
        self.watch.reconcile()


class Watch:
    """Notifications of changed keys under some prefixes (see :meth:`essa_redis.RedisStore.watch`)."""

    def __init__(self, backend: Backend, prefixes: list[str], raw_prefix: bytes,
                 callback: Callable[[str | None], None], on_close: Callable[["Watch"], None] | None = None) -> None:
        self.backend = backend
        self.prefixes = _distinct(prefixes)
        self._raw_prefix = raw_prefix
        self._wanted = tuple(p.encode("utf-8") for p in self.prefixes)
        self._callback = callback
        self._on_close = on_close
        self._lock = threading.Lock()
        self._masters: dict[tuple, _Master] = {}
        self._closed = False

    def start(self) -> None:
        """Watch every master; return once each tracks the prefixes (or raise the store's one line)."""
        addresses = self.backend.run("watching keys", lambda client: self.backend.masters())
        with self._lock:
            for address in addresses:
                self._add(address, late=False)
            masters = list(self._masters.values())
        deadline = time.monotonic() + self.backend.settings.timeout
        for master in masters:
            if not master.ready.wait(max(0.0, deadline - time.monotonic())) or master.error:
                reason = master.error or f"redis at {master.name} did not answer within " \
                                         f"{self.backend.settings.timeout:g} s"
                raise StoreError(f"state store unavailable: cannot watch keys: {reason}")

    def _add(self, address: tuple, late: bool) -> None:
        master = _Master(self, *address, late=late)
        self._masters[address] = master
        master.start()

    def reconcile(self) -> None:
        """After a lost connection to a cluster node: watch the masters there are now, and only them."""
        if self._closed or self.backend.is_cluster is not True:
            return
        try:
            self.backend.refresh()
            addresses = set(self.backend.masters())
        except (StoreError, rx.RedisError, rx.RedisClusterException, OSError):
            return  # the cluster is not back yet; the next lost connection asks again
        with self._lock:
            if self._closed:
                return
            for address in addresses - set(self._masters):
                self._add(address, late=True)
            for address in set(self._masters) - addresses:
                self._masters.pop(address).stop()

    def notify_raw(self, rkey: bytes) -> None:
        if rkey.startswith(self._wanted):
            key = essa_key(self._raw_prefix, rkey)
            if key is not None:
                self.notify(key)

    def notify(self, key: str | None) -> None:
        if self._closed:
            return
        try:
            self._callback(key)
        except Exception as exc:  # a failing callback must not stop the watch
            problems.warning("watch callback", "essa redis store: watch callback failed: %s", describe(exc),
                              exc_info=exc)

    def close(self) -> None:
        """Stop watching: threads end and connections close within about a second."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            masters = list(self._masters.values())
            self._masters.clear()
        for master in masters:
            master.stop()
        for master in masters:
            master.join(5.0)
        if self._on_close is not None:
            try:
                self._on_close(self)
            except ValueError:
                pass

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Watch"]
