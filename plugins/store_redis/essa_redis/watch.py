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

import logging
import threading
import time
from typing import Callable

import redis
from redis import exceptions as rx

from essa.plugin import RateLimitedLog, StoreError, describe

from .client import Backend, one_line
from .layout import essa_key

CHANNEL = "__redis__:invalidate"
#: Seconds between two checks that a watched server still answers.
PING_INTERVAL = 5.0

log = logging.getLogger("essa.redis.watch")
_problems = RateLimitedLog(log)


def _distinct(prefixes: list[str]) -> list[str]:
    """The prefixes no other one begins (Redis refuses overlapping prefixes on one connection)."""
    ordered = sorted(set(prefixes))
    kept: list[str] = []
    for p in ordered:
        if not any(p.startswith(k) for k in kept):
            kept.append(p)
    return kept


class _Master:
    """The thread that watches one master."""

    def __init__(self, watch: "Watch", host: str, port: int | None, path: str | None, late: bool) -> None:
        self.watch = watch
        self.address = (host, port, path)
        self.name = path or f"{host}:{port}"
        self.stopped = threading.Event()
        self.ready = threading.Event()
        self.error: str | None = None
        #: Started after the watch began (a promoted replica): changes may have been missed before it listens.
        self.late = late
        self.thread = threading.Thread(target=self._run, name=f"essa-redis-watch {self.name}", daemon=True)

    def _connection(self) -> redis.Connection:
        kwargs = self.watch.backend.connection_kwargs()
        tls = kwargs.pop("ssl", False)
        host, port, path = self.address
        if path:
            return redis.UnixDomainSocketConnection(path=path, **{k: v for k, v in kwargs.items()
                                                                  if not k.startswith("ssl")})
        if tls:
            return redis.SSLConnection(host=host, port=port, **kwargs)
        return redis.Connection(host=host, port=port, **{k: v for k, v in kwargs.items() if not k.startswith("ssl")})

    def _run(self) -> None:
        pause = 0.1
        gap = self.late
        while not self.stopped.is_set():
            listener = tracker = None
            try:
                listener = self._connection()
                listener.connect()
                listener.send_command("CLIENT", "ID")
                listener_id = listener.read_response()
                listener.send_command("SUBSCRIBE", CHANNEL)
                listener.read_response()
                tracker = self._connection()
                tracker.connect()
                args = [word for p in self.watch.prefixes for word in ("PREFIX", p)]
                tracker.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "BCAST", *args)
                tracker.read_response()
                self.error = None
                self.ready.set()
                if gap:
                    self.watch.notify(None)
                gap, pause = True, 0.1
                self._listen(listener, tracker)
            except rx.ResponseError as exc:  # the server refuses tracking: no retry will change that
                self.error = f"redis at {self.name} refuses to track keys: {one_line(exc)}"
                self.ready.set()
                return
            except (rx.RedisError, OSError) as exc:
                self.error = f"redis at {self.name}: {one_line(exc)}"
                if self.ready.is_set():
                    _problems.warning(f"watch {self.name}", "essa redis store: watching %s: %s; reconnecting",
                                      self.name, describe(exc))
            finally:
                for connection in (listener, tracker):
                    if connection is not None:
                        connection.disconnect()
            if self.stopped.wait(pause):
                return
            pause = min(pause * 2, 2.0)
            self.watch.reconcile()

    def _listen(self, listener: redis.Connection, tracker: redis.Connection) -> None:
        last_ping = time.monotonic()
        while not self.stopped.is_set():
            if listener.can_read(timeout=1.0):
                message = listener.read_response()
                if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                    keys = message[2]
                    if keys is None:  # FLUSHDB, FLUSHALL: every key changed
                        self.watch.notify(None)
                    else:
                        for rkey in keys:
                            self.watch.notify_raw(rkey)
            if time.monotonic() - last_ping > PING_INTERVAL:
                tracker.send_command("PING")
                tracker.read_response()
                last_ping = time.monotonic()

    def stop(self) -> None:
        self.stopped.set()


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
        master.thread.start()

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
            _problems.warning("watch callback", "essa redis store: watch callback failed: %s", describe(exc),
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
            if master.thread is not threading.current_thread():
                master.thread.join(5.0)
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
