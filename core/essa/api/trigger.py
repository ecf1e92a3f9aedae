"""Triggers: the ways outside events become calls.

A **trigger** receives events from outside essa (HTTP requests, messages of
a queue, timer ticks, ...) and turns each into work through the public
Python API (:mod:`essa.api`): a call of a deployed function, a read or a
merge of a deployment's state. It never reaches into the runtime: whatever a
trigger does, a script with :func:`essa.connect` could do too. Plugins
register triggers with the ``essa_register_triggers`` hook; ``essa serve
--trigger NAME`` runs one.

Life cycle::

    trigger = TriggerClass(connection, TriggerConfig(listen="127.0.0.1:8080", ...))
    trigger.serve(ready)    # blocks: takes events until stop() is called
    trigger.stop()          # from a signal handler or another thread: graceful

- **built** from an open :class:`~essa.api.Connection` (embedded or a
  cluster; the trigger does not own it and never closes it) and a
  :class:`TriggerConfig`. The constructor checks the configuration and
  raises a one-line :class:`~essa.errors.EssaError` for a bad one; it starts
  nothing.
- :meth:`Trigger.serve` starts listening, calls ``ready(address)`` once it
  takes events, and returns only after :meth:`Trigger.stop`.
- :meth:`Trigger.stop` asks for a **graceful** stop: take no new events, let
  those in flight finish (up to ``TriggerConfig.shutdown_timeout`` seconds),
  then let :meth:`~Trigger.serve` return. ``stop(force=True)`` (a second
  Ctrl-C) returns without waiting for them.

Bad events (malformed, too large, naming nothing that exists) are answered
or dropped with one line, never a traceback, and never stop the trigger.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping

from essa.wasm.limits import Limits

if TYPE_CHECKING:  # pragma: no cover
    from essa.api.connection import Connection


@dataclass(frozen=True)
class TriggerConfig:
    """What ``essa serve`` tells a trigger.

    :param listen: where to take events; its form is the trigger's (``HOST:PORT``
        for ``http``). Empty: the trigger's :attr:`Trigger.default_listen`.
    :param max_message_bytes: the message size limit of the connection: an
        event whose payload is larger is refused before it is read whole.
    :param shutdown_timeout: seconds events in flight may take to finish after
        :meth:`Trigger.stop`, or ``None`` to wait for all of them.
    :param options: trigger-specific settings (``essa serve --trigger-option KEY=VALUE``);
        a trigger refuses keys it does not know.
    """

    listen: str = ""
    max_message_bytes: int = field(default_factory=lambda: Limits().max_message_bytes)
    shutdown_timeout: float | None = 30.0
    options: Mapping[str, str] = field(default_factory=dict)


class Trigger(ABC):
    """Base class of triggers (see the module documentation for the life cycle).

    :param connection: the connection events are turned into calls on.
    :param config: where to listen, the size limit, the shutdown grace.
    """

    #: The name it is registered under (set by the plugin manager).
    name: ClassVar[str] = "?"
    #: Where it listens when ``essa serve --listen`` is not given.
    default_listen: ClassVar[str] = ""
    #: The ``--trigger-option`` keys it takes, each with a one-line description.
    option_help: ClassVar[Mapping[str, str]] = {}

    def __init__(self, connection: "Connection", config: TriggerConfig) -> None:
        self.connection = connection
        self.config = config

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this trigger cannot run here (a missing native dependency, ...), or ``None``."""
        return None

    @abstractmethod
    def serve(self, ready: Callable[[str], None] | None = None) -> None:
        """Take events until :meth:`stop`; call ``ready(address)`` once listening.

        ``address`` is where events reach it, for people (``http://127.0.0.1:8080``).

        :raises essa.errors.EssaError: it cannot listen (the address is taken, ...).
        """

    @abstractmethod
    def stop(self, force: bool = False) -> None:
        """Ask :meth:`serve` to return: gracefully, or at once with ``force``.

        Safe from a signal handler and from any thread; it does not wait.
        """


__all__ = ["Trigger", "TriggerConfig"]
