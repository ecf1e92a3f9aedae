"""The transport interface: how clients, schedulers and executors talk.

A transport offers zenoh's primitives and nothing more:

- publish/subscribe: one-way messages on ``/``-separated topics such as
  ``essa/scheduler/calls`` (the hot path: calls and replies travel this way);
- serve/query: control requests answered synchronously (status, pings), where
  a query may use a trailing ``/**`` to reach every server below a prefix;
- liveliness tokens: a process declares ``essa/live/executor/3`` while it lives,
  and watchers learn when such tokens appear and disappear (including tokens
  that existed before the watch began).

Messages are dicts of str, int, float, bool, bytes, lists and dicts; a
networked transport encodes them, the in-process one passes them as they are
(so receivers must not mutate them). The call protocol built on top lives in
:mod:`essa.cluster.calls`, once, for every transport.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Mapping, Protocol

Message = dict[str, Any]


def last_segment(key: str) -> str:
    """The last chunk of a ``/``-separated key: the process a liveliness token names (``essa/live/executor/3`` -> ``3``)."""
    return key.rsplit("/", 1)[-1]


class Subscription(Protocol):
    """Something to undo: a subscription, a served topic, a token."""

    def close(self) -> None: ...


class Transport(ABC):
    """Base class of transports.

    :param options: transport settings (for zenoh: ``listen``, ``connect``,
        ``config``, ``scouting``); see each transport.
    """

    #: The name of the transport; set by the registering plugin.
    name: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @abstractmethod
    def publish(self, topic: str, message: Message, patient: bool = False) -> None:
        """Send ``message`` to every subscriber of ``topic`` (reliably, in order per sender).

        With ``patient``, a message for a subscriber this process does not
        know yet (a peer that just joined, whose subscription is still on its
        way) is kept and sent once it is known, for a while, instead of being
        dropped; the publisher does not wait. Replies, output and spans are
        sent so: their receivers may have appeared a moment ago.
        """

    @abstractmethod
    def subscribe(self, topic: str, callback: Callable[[Message], None]) -> Subscription:
        """Call ``callback(message)`` for every message published to ``topic``.

        Callbacks run on the transport's threads: they must return quickly.
        """

    @abstractmethod
    def serve(self, topic: str, handler: Callable[[Message], Message], shared: bool = False) -> Subscription:
        """Answer queries to ``topic`` with ``handler(message)``.

        With ``shared``, every server of ``topic`` (in any process) is
        interchangeable, and ``query(topic, one=True)`` reaches exactly one of
        them; without, each server serves a topic of its own, and a query
        reaches every one its selector matches.

        A transport that encodes messages and cannot encode an answer replies
        ``{"ok": False, "error": LINE, "kind": "store"}`` naming why, so the
        asker is not left waiting for an answer that never comes.
        """

    @abstractmethod
    def query(self, selector: str, message: Message, timeout: float = 2.0, one: bool = False) -> list[Message]:
        """Ask every server matching ``selector`` (or just one, with ``one``); return the answers that came in time."""

    @abstractmethod
    def declare_token(self, key: str) -> Subscription:
        """Announce that this process is alive as ``key`` until closed (or until it dies)."""

    @abstractmethod
    def watch_tokens(self, prefix: str, callback: Callable[[str, bool], None]) -> Subscription:
        """Call ``callback(key, alive)`` as tokens below ``prefix/`` appear and vanish.

        Tokens that exist already are reported (alive) first.
        """

    def forget(self, topic: str) -> None:
        """Drop what this transport keeps for publishing to ``topic``: messages held for a
        subscriber (see ``patient``), and the means to send there. For a receiver that is gone
        for good (an executor that died: its calls are placed elsewhere). A later publish works."""

    def describe(self) -> str:
        """One line telling a user where this transport listens or connects."""
        return self.name

    def close(self) -> None:
        """Release sockets and threads."""
