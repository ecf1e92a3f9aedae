"""The in-process transport of embedded essa.

Requests call the handler directly and hand back the handler's own future, so
a caller waiting on a reply can help run the call (see :mod:`essa.pool`).
"""

from __future__ import annotations

import threading
from typing import Callable

from ..errors import EssaError
from .base import Handler, Message, Reply, Subscription, Transport


class _Closer:
    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close

    def close(self) -> None:
        self._close()


class LocalTransport(Transport):
    """Topics are dictionary keys; delivery is a function call."""

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self._handlers: dict[str, Handler] = {}
        self._subscribers: dict[str, list[Callable[[Message], None]]] = {}
        self._lock = threading.Lock()

    def serve(self, topic: str, handler: Handler) -> Subscription:
        with self._lock:
            if topic in self._handlers:
                raise EssaError(f"topic {topic!r} is already served in this process")
            self._handlers[topic] = handler
        return _Closer(lambda: self._handlers.pop(topic, None))

    def request(self, topic: str, message: Message) -> Reply:
        handler = self._handlers.get(topic)
        if handler is None:
            raise EssaError(f"nobody serves {topic!r}")
        return handler(message)

    def publish(self, topic: str, message: Message) -> None:
        for callback in self._subscribers.get(topic, ()):
            callback(message)

    def subscribe(self, topic: str, callback: Callable[[Message], None]) -> Subscription:
        with self._lock:
            # Copy-on-write, so publish() iterates without the lock.
            self._subscribers[topic] = [*self._subscribers.get(topic, ()), callback]

        def close() -> None:
            with self._lock:
                rest = [c for c in self._subscribers.get(topic, ()) if c is not callback]
                if rest:
                    self._subscribers[topic] = rest
                else:
                    self._subscribers.pop(topic, None)

        return _Closer(close)
