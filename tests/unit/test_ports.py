"""free_port: a loopback port nothing listens on, outside the range outgoing connections take their ports from."""

from __future__ import annotations

import socket

from essa.util.ports import LOWEST, _ephemeral_start, free_port


def test_free_ports_are_bindable_distinct_and_below_the_ephemeral_range():
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST <= port < _ephemeral_start() for port in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))  # nothing took it


def test_a_port_something_listens_on_is_not_handed_out(monkeypatch):
    from essa.util import ports

    with socket.socket() as busy, socket.socket() as idle:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        idle.bind(("127.0.0.1", 0))
        taken, free = busy.getsockname()[1], idle.getsockname()[1]
        idle.close()
        picks = iter([taken, taken, free])

        class Picks:
            def randint(self, low, high):
                return next(picks)

        monkeypatch.setattr(ports, "_random", Picks())
        monkeypatch.setattr(ports, "_given", [])
        assert free_port() == free
