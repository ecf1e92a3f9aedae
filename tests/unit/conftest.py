"""Fixtures of the unit tests that need real zenoh sessions."""

from __future__ import annotations

import pytest

from essa.testing.ports import free_port


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
