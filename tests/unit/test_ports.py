"""free_port: a loopback port nothing listens on, outside the range outgoing connections take their ports from."""

from __future__ import annotations

import os
import socket
import textwrap

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


def test_a_port_handed_to_one_process_is_not_handed_to_another(monkeypatch, tmp_path):
    import subprocess
    import sys

    from essa.util import ports

    # Below the ephemeral range (no outgoing connection takes them) and reserved against other test runs.
    first, second = free_port(), free_port()
    monkeypatch.setattr(ports, "_reservations", lambda: tmp_path / "reserved")
    monkeypatch.setattr(ports, "_given", [])
    picks = iter([first])

    class Picks:
        def randint(self, low, high):
            return next(picks)

    monkeypatch.setattr(ports, "_random", Picks())
    assert free_port() == first
    # Another process (its own list of ports given) picks the same port first, then another one.
    child = textwrap.dedent(f"""
        from pathlib import Path
        from essa.util import ports
        picks = iter([{first}, {second}])
        class Picks:
            def randint(self, low, high):
                return next(picks)
        ports._random = Picks()
        ports._reservations = lambda: Path({str(tmp_path / "reserved")!r})
        print(ports.free_port())
    """)
    answer = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert int(answer.stdout) == second
    # A reservation past its time is taken over.
    old = ports.RESERVED_FOR + 1
    path = tmp_path / "reserved" / str(second)
    os.utime(path, (path.stat().st_atime - old, path.stat().st_mtime - old))
    picks = iter([second])
    monkeypatch.setattr(ports, "_given", [])
    assert free_port() == second
