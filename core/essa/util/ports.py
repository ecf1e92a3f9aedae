"""Free TCP ports on loopback: for the processes ``essa up --metrics`` starts, and for tests and benchmarks.

A port is handed to another process, which binds it a moment later. A port
the OS picks (binding port 0) comes from the ephemeral range, the same range
outgoing connections take their local ports from, so on a busy host (zenoh
sessions connecting, parallel test runs) one of those may take it first. So
:func:`free_port` picks at random below the ephemeral range, where no
outgoing connection takes a port, one that nothing listens on right now.

Another process calling :func:`free_port` at the same time (a second test
run, the ``essa up`` a test started) could pick the same port before either
binds it. So each port handed out is also reserved, for
:data:`RESERVED_FOR` seconds, against every process of the same user: a file
named after it in a directory of the system's temporary one (created
exclusively; one past its time is taken over).
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import time
from pathlib import Path

#: The lowest port :func:`free_port` picks (above the well-known and most registered services' ports).
LOWEST = 15_000
#: Seconds a port handed out stays reserved for the process it was handed to.
RESERVED_FOR = 120.0
_random = random.SystemRandom()
#: Ports handed out by this process lately: not handed out again soon.
_given: list[int] = []


def _reservations() -> Path:
    """Where ports handed out are reserved: one directory per user."""
    return Path(tempfile.gettempdir()) / f"essa-ports-{getattr(os, 'getuid', lambda: 0)()}"


def _reserve(port: int) -> bool:
    """Reserve ``port`` against the other processes of this user; whether no other holds it.

    Where no reservation can be kept (no writable temporary directory), every
    port counts as free, as it did before reservations.
    """
    path = _reservations() / str(port)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        try:
            if time.time() - path.stat().st_mtime < RESERVED_FOR:
                return False
            os.utime(path)  # its time has passed: this process takes it over
            return True
        except OSError:
            return False
    except OSError:
        return True


def _ephemeral_start() -> int:
    """Where the OS's ephemeral ports begin (Linux: ``ip_local_port_range``; else IANA's 49152)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and no other process of this user was handed lately,
    outside the ephemeral range if it can."""
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
        if not _reserve(port):
            continue
        _given.append(port)
        del _given[:-1_000]
        return port
    with socket.socket() as s:  # no room below the ephemeral range: the OS picks
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


__all__ = ["free_port"]
