"""The in-process transport of embedded essa.

Delivery is a function call on the publisher's thread, so a call placed by the
scheduler is queued on an executor before ``publish`` returns.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from essa.errors import EssaError
from essa.transport.base import Message, Subscription, Transport
from essa.util.ratelimit import RateLimitedLog, guarded

_problems = RateLimitedLog(logging.getLogger("essa.transport.local"))


class _Closer:
    __slots__ = ("_close",)

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close

    def close(self) -> None:
        self._close()


def _matches(selector: str, topic: str) -> bool:
    if selector.endswith("/**"):
        return topic.startswith(selector[:-2])
    return selector == topic


class LocalTransport(Transport):
    """Topics are dictionary keys; delivery is a function call."""

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self._subscribers: dict[str, tuple[Callable[[Message], None], ...]] = {}
        #: Served topics, each with its handlers (several only for a shared topic).
        self._handlers: dict[str, tuple[Callable[[Message], Message], ...]] = {}
        self._tokens: dict[str, int] = {}
        self._watchers: list[tuple[str, Callable[[str, bool], None]]] = []
        self._lock = threading.RLock()

    def publish(self, topic: str, message: Message, patient: bool = False) -> None:
        for callback in self._subscribers.get(topic, ()):
            callback(message)

    def subscribe(self, topic: str, callback: Callable[[Message], None]) -> Subscription:
        # A subscriber that raises must not fail the publisher (as over a network).
        callback = guarded(_problems, f"subscriber of {topic}", callback)
        with self._lock:
            # Copy-on-write, so publish() iterates without the lock.
            self._subscribers[topic] = (*self._subscribers.get(topic, ()), callback)

        def close() -> None:
            with self._lock:
                rest = tuple(c for c in self._subscribers.get(topic, ()) if c is not callback)
                if rest:
                    self._subscribers[topic] = rest
                else:
                    self._subscribers.pop(topic, None)

        return _Closer(close)

    def serve(self, topic: str, handler: Callable[[Message], Message], shared: bool = False) -> Subscription:
        with self._lock:
            if topic in self._handlers and not shared:
                raise EssaError(f"topic {topic!r} is already served in this process")
            self._handlers[topic] = (*self._handlers.get(topic, ()), handler)

        def close() -> None:
            with self._lock:
                rest = tuple(h for h in self._handlers.get(topic, ()) if h is not handler)
                if rest:
                    self._handlers[topic] = rest
                else:
                    self._handlers.pop(topic, None)

        return _Closer(close)

    def query(self, selector: str, message: Message, timeout: float = 2.0, one: bool = False) -> list[Message]:
        handlers = [h for topic, served in list(self._handlers.items()) if _matches(selector, topic)
                    for h in (served[:1] if one else served)]
        return [handler(message) for handler in handlers[:1 if one else None]]

    def declare_token(self, key: str) -> Subscription:
        with self._lock:
            self._tokens[key] = self._tokens.get(key, 0) + 1
            first = self._tokens[key] == 1
            watchers = list(self._watchers)
        if first:
            self._notify(watchers, key, True)

        def close() -> None:
            with self._lock:
                self._tokens[key] -= 1
                last = self._tokens[key] == 0
                if last:
                    del self._tokens[key]
                watchers = list(self._watchers)
            if last:
                self._notify(watchers, key, False)

        return _Closer(close)

    def watch_tokens(self, prefix: str, callback: Callable[[str, bool], None]) -> Subscription:
        callback = guarded(_problems, f"liveliness of {prefix}", callback)
        entry = (prefix.rstrip("/") + "/", callback)
        with self._lock:
            self._watchers.append(entry)
            existing = [key for key in self._tokens if key.startswith(entry[0])]
        for key in existing:
            callback(key, True)

        def close() -> None:
            with self._lock:
                if entry in self._watchers:
                    self._watchers.remove(entry)

        return _Closer(close)

    @staticmethod
    def _notify(watchers, key: str, alive: bool) -> None:
        for prefix, callback in watchers:
            if key.startswith(prefix):
                callback(key, alive)

    def describe(self) -> str:
        return "in-process"
