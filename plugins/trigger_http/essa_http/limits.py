"""What a connection of the http trigger may take: how many, and how long each part of a request may take.

Light (no uvicorn): the trigger builds :class:`ConnectionLimits` from its
options when it is constructed; :mod:`essa_http.server` enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass

from essa.plugin import raise_open_files_limit

#: A request body may take ``body-timeout`` seconds plus one second per this many bytes received.
BODY_MIN_RATE = 1024
#: Descriptors left for everything but connections (the store, the cluster's links, threads' pipes, ...).
RESERVED_DESCRIPTORS = 128


@dataclass(frozen=True)
class ConnectionLimits:
    """The trigger's options of the same names (see the plugin's README).

    :param max_connections: connections open at once (see :class:`essa_http.server.Connections`).
    :param header_timeout: seconds a request's line and headers may take to
        arrive: from the connection's opening, or from the first byte of a
        later request on a kept-alive connection. Then: 408 and closed (a
        connection that sent nothing is closed without an answer).
    :param body_timeout: seconds a request's body may take to arrive, plus one
        second for every :data:`BODY_MIN_RATE` bytes received (a body arriving
        at that rate or faster is never cut off). Then: 408 and closed.
    :param keep_alive: seconds an idle connection stays open after an answer.
    """

    max_connections: int = 10_000
    header_timeout: float = 10.0
    body_timeout: float = 20.0
    keep_alive: float = 5.0


def descriptor_room() -> int:
    """Raise this process's soft limit of open descriptors to its hard limit; return how many connections fit.

    :data:`RESERVED_DESCRIPTORS` stay for everything else the process opens.
    """
    return max(1, raise_open_files_limit() - RESERVED_DESCRIPTORS)


__all__ = ["BODY_MIN_RATE", "RESERVED_DESCRIPTORS", "ConnectionLimits", "descriptor_room"]
