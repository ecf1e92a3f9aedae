"""Whether anything listens at an endpoint, asked before a client waits for it.

zenoh keeps retrying a ``connect`` endpoint until its timeout, so a client
pointed where nothing listens would wait out the whole connect timeout (10 s)
before saying so. A plain TCP connection tells at once: the host answers a
refusal. So clients try one first (:func:`refused`), and fail at once when
every endpoint refuses; an endpoint that does not answer at all (a firewall
that drops packets, a host that is down) still gets the whole timeout.
"""

from __future__ import annotations

import socket

#: Protocols whose endpoints are ``PROTO/HOST:PORT`` over TCP.
TCP_PROTOCOLS = ("tcp", "tls")


def tcp_address(endpoint: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``tcp/`` or ``tls/`` endpoint (``tcp/[::1]:7447`` too), else ``None``."""
    protocol, sep, rest = endpoint.partition("/")
    if not sep or protocol not in TCP_PROTOCOLS:
        return None
    address = rest.split("#", 1)[0].split("?", 1)[0]
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def refused(endpoint: str, timeout: float = 1.0) -> bool:
    """Whether ``endpoint``'s host refused a TCP connection (nothing listens there).

    ``False`` whenever that is not certain: something accepted, nothing
    answered within ``timeout`` seconds, the name did not resolve, or the
    endpoint is not over TCP.
    """
    address = tcp_address(endpoint)
    if address is None:
        return False
    try:
        with socket.create_connection(address, timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


__all__ = ["TCP_PROTOCOLS", "refused", "tcp_address"]
