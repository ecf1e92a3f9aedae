"""One connection subscribed to Redis's client-side-caching invalidations on one server, with a thread of its own.

Redis 6+ sends an invalidation to ``__redis__:invalidate`` for every tracked
key that changes (and a null one when the database is flushed) to the client
that tracking connections redirect to (``CLIENT TRACKING ON REDIRECT <id>``).
:class:`InvalidationListener` is that client: its thread connects,
subscribes, hands its client id to :meth:`~InvalidationListener.on_up` (which
sets tracking up), reads the invalidations, and checks every
:data:`PING_INTERVAL` seconds that the server still answers (a ``PING`` on
the subscribed connection, and :meth:`~InvalidationListener.keepalive`). A
lost connection calls :meth:`~InvalidationListener.on_down` and is opened
again, with backoff, until the listener is stopped. Subclasses say what the
invalidations mean: :mod:`essa_redis.watch` (prefixes, broadcast) and
:mod:`essa_redis.feed` (the keys an executor's cache read).
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis import exceptions as rx

from essa.plugin import RateLimitedLog, describe

from .client import Backend, one_line

CHANNEL = "__redis__:invalidate"
#: Seconds between two checks that a listened-to server still answers.
PING_INTERVAL = 5.0

log = logging.getLogger("essa.redis.watch")
#: Rate-limited warnings of the listeners and what they feed.
problems = RateLimitedLog(log)


class InvalidationListener:
    """The invalidations of one server, read by a thread; subclasses implement the ``on_*`` hooks.

    :param address: ``(host, port, unix_path)`` of the server.
    :param what: what the listener serves, for its warnings (``"watching"``).
    """

    def __init__(self, backend: Backend, address: tuple[str, int | None, str | None], what: str) -> None:
        self.backend = backend
        self.address = address
        host, port, path = address
        self.name = path or f"{host}:{port}"
        self.what = what
        self.stopped = threading.Event()
        #: Set once the listener was up, or gave up (then :attr:`error` says why).
        self.ready = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"essa-redis-watch {self.name}", daemon=True)

    # -- hooks -------------------------------------------------------------------------------

    def on_up(self, listener_id: int) -> None:
        """The subscription is on, as client ``listener_id``: set tracking up (an ``rx.ResponseError`` gives up)."""

    def on_keys(self, keys: list[bytes]) -> None:
        """These Redis keys changed."""

    def on_flush(self) -> None:
        """Every key changed (``FLUSHDB``, ``FLUSHALL``)."""

    def on_down(self) -> None:
        """The connection was lost after :meth:`on_up`: invalidations may have been missed."""

    def keepalive(self) -> None:
        """Every :data:`PING_INTERVAL` seconds while up: check the listener's other connections (raise if lost)."""

    def after_failure(self) -> None:
        """A connection failed (or could not be opened); called before the next attempt."""

    def on_refused(self) -> None:
        """The server refuses what the listener asks (an ACL user without ``CLIENT``): it gave up, :attr:`error`
        says why."""

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def join(self, timeout: float = 5.0) -> None:
        if self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def _run(self) -> None:
        pause = 0.1
        while not self.stopped.is_set():
            listener = None
            up = False
            try:
                listener = self.backend.connection(self.address)
                listener.connect()
                listener.send_command("CLIENT", "ID")
                listener_id = listener.read_response()
                listener.send_command("SUBSCRIBE", CHANNEL)
                listener.read_response()
                self.on_up(int(listener_id))
                up = True
                self.error = None
                self.ready.set()
                pause = 0.1
                self._listen(listener)
            except rx.ResponseError as exc:  # the server refuses tracking: no retry will change that
                self.error = f"redis at {self.name} refuses to track keys: {one_line(exc)}"
                self.on_refused()
                self.ready.set()
                return
            except (rx.RedisError, OSError) as exc:
                self.error = f"redis at {self.name}: {one_line(exc)}"
                if self.ready.is_set():
                    problems.warning(f"{self.what} {self.name}", "essa redis store: %s %s: %s; reconnecting",
                                      self.what, self.name, describe(exc))
            finally:
                if listener is not None:
                    listener.disconnect()
                if up:
                    self.on_down()
            if self.stopped.wait(pause):
                return
            pause = min(pause * 2, 2.0)
            self.after_failure()

    def _listen(self, listener: redis.Connection) -> None:
        timeout = self.backend.settings.timeout
        last_check = time.monotonic()
        pong_due: float | None = None
        while not self.stopped.is_set():
            if listener.can_read(timeout=1.0):
                message = listener.read_response()
                if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                    keys = message[2]
                    if keys is None:
                        self.on_flush()
                    else:
                        self.on_keys(keys)
                elif isinstance(message, list) and message and message[0] == b"pong":
                    pong_due = None
            now = time.monotonic()
            if pong_due is not None and now > pong_due:
                raise rx.TimeoutError(f"no answer to PING within {timeout:g} s")
            if now - last_check > PING_INTERVAL:
                listener.send_command("PING")
                if pong_due is None:
                    pong_due = now + timeout
                self.keepalive()
                last_check = now


__all__ = ["CHANNEL", "InvalidationListener", "PING_INTERVAL", "problems"]
