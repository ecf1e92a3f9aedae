"""Fixtures of the unit tests that need real zenoh sessions."""

from __future__ import annotations

import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def zenoh_pair():
    """Two zenoh transports on loopback: ``a`` listens, ``b`` connects to it (waiting up to 60 s)."""
    pytest.importorskip("zenoh")
    from essa.transport.zenoh import ZenohTransport

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    a = ZenohTransport({"listen": [endpoint]})
    b = ZenohTransport({"connect": [endpoint], "connect_timeout": 60.0})
    yield a, b
    b.close()
    a.close()
