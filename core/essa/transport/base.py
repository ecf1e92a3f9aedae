"""The transport interface: how clients, schedulers and executors talk.

Three primitives, after zenoh's: query/reply (:meth:`Transport.serve` and
:meth:`Transport.request`), publish/subscribe (:meth:`Transport.publish` and
:meth:`Transport.subscribe`). Topics are ``/``-separated strings such as
``essa/scheduler/call``. Messages are dicts of str, int, bytes, lists and dicts
(a networked transport encodes them; the in-process one passes them as they are).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Mapping, Protocol

Message = dict[str, Any]


class Reply(Protocol):
    """The future answer to a request."""

    def result(self, timeout: float | None = None) -> Message:
        """Block until the answer is there (``TimeoutError`` after ``timeout`` s)."""

    def done(self) -> bool: ...

    def add_done_callback(self, callback: Callable[["Reply"], None]) -> None:
        """Call ``callback(reply)`` once the answer is there."""


#: A request handler returns the (possibly future) reply.
Handler = Callable[[Message], Reply]


class Subscription(Protocol):
    def close(self) -> None: ...


class Transport(ABC):
    """Base class of transports."""

    #: The name of the transport; set by the registering plugin.
    name: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self.options = dict(options or {})

    @abstractmethod
    def serve(self, topic: str, handler: Handler) -> Subscription:
        """Answer requests sent to ``topic`` with ``handler``."""

    @abstractmethod
    def request(self, topic: str, message: Message) -> Reply:
        """Send ``message`` to whoever serves ``topic``; return the future reply.

        :raises essa.errors.EssaError: nobody serves ``topic``.
        """

    @abstractmethod
    def publish(self, topic: str, message: Message) -> None:
        """Send ``message`` to every subscriber of ``topic`` (fire and forget)."""

    @abstractmethod
    def subscribe(self, topic: str, callback: Callable[[Message], None]) -> Subscription:
        """Call ``callback`` with every message published to ``topic``."""

    def close(self) -> None:
        """Release sockets and threads."""
