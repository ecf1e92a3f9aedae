"""Free TCP ports on loopback: for the processes ``essa up --metrics`` starts, and for tests and benchmarks.

A port is handed to another process, which binds it a moment later. A port
the OS picks (binding port 0) comes from the ephemeral range, the same range
outgoing connections take their local ports from, so on a busy host (zenoh
sessions connecting, parallel test runs) one of those may take it first. So
:func:`free_port` picks at random below the ephemeral range, where no
outgoing connection takes a port, one that nothing listens on right now.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: The lowest port :func:`free_port` picks (above the well-known and most registered services' ports).
LOWEST = 15_000
_random = random.SystemRandom()
#: Ports handed out by this process lately: not handed out again soon.
_given: list[int] = []


def _ephemeral_start() -> int:
    """Where the OS's ephemeral ports begin (Linux: ``ip_local_port_range``; else IANA's 49152)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the ephemeral range if it can."""
    highest = _ephemeral_start() - 1
    for _ in range(100 if highest - LOWEST >= 1_000 else 0):
        port = _random.randint(LOWEST, highest)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.append(port)
        del _given[:-1_000]
        return port
    with socket.socket() as s:  # no room below the ephemeral range: the OS picks
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


__all__ = ["free_port"]
