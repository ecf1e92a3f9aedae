"""Slow clients (slowloris) for tests and benchmarks of servers: many connections that never finish a request.

:class:`SlowClients` opens ``count`` TCP connections, sends ``prefix`` on
each, then one more byte (``drip``) every ``interval`` seconds, all from one
thread. A connection the server answers or closes is noted (with the first
bytes it answered) and closed; with ``reopen`` another is opened an interval
later, so a server that closes slow connections faces about ``count`` of them
all along.
"""

from __future__ import annotations

import collections
import socket
import threading
import time


class SlowClients:
    """``count`` connections to ``host:port`` sending ``prefix``, then ``drip`` every ``interval`` seconds.

    Use as a context manager, or :meth:`start` and :meth:`stop`.
    """

    def __init__(self, host: str, port: int, prefix: bytes, count: int, interval: float = 1.0,
                 drip: bytes = b"a", reopen: bool = False) -> None:
        self.address = (host, port)
        self.prefix, self.count, self.interval, self.drip, self.reopen = prefix, count, interval, drip, reopen
        #: Connections opened in all (reopened ones included).
        self.opened = 0
        #: Connections the server answered or closed, by what it sent first (the first 12 bytes: a status
        #: line's ``HTTP/1.1 408``; ``(nothing)``; or the error, ``ConnectionRes``). Read it after :meth:`stop`.
        self.closed: collections.Counter[str] = collections.Counter()
        #: How many of them (readable at any time).
        self.closed_count = 0
        #: Connections that could not be opened, by error.
        self.refused: collections.Counter[str] = collections.Counter()
        self._sockets: list[socket.socket] = []
        self._to_open = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    @property
    def open(self) -> int:
        """Connections open now."""
        return len(self._sockets)

    def start(self) -> "SlowClients":
        """Open every connection (in this thread: when it returns, the server's kernel has them) and start dripping."""
        for _ in range(self.count):
            self._open()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop dripping and close every connection."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def __enter__(self) -> "SlowClients":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _open(self) -> None:
        try:
            sock = socket.create_connection(self.address, timeout=30)
            sock.setblocking(False)
            sock.send(self.prefix)
        except OSError as exc:
            self.refused[type(exc).__name__] += 1
            self._to_open += 1
            return
        self.opened += 1
        self._sockets.append(sock)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            reopen, self._to_open = self._to_open, 0
            self._sockets = [sock for sock in self._sockets if self._drip(sock)]
            if self.reopen:
                for _ in range(reopen):
                    if not self._stop.is_set():
                        self._open()

    def _drip(self, sock: socket.socket) -> bool:
        """Send one more byte on ``sock`` unless the server closed it (then note it); whether it is still open."""
        try:
            answer = sock.recv(4096)
        except BlockingIOError:
            try:
                sock.send(self.drip)
                return True
            except BlockingIOError:  # the server reads nothing more of it: still open, still slow
                return True
            except OSError as exc:
                answer = type(exc).__name__.encode()
        except OSError as exc:
            answer = type(exc).__name__.encode()
        self.closed[answer[:12].decode("latin-1") or "(nothing)"] += 1
        self.closed_count += 1
        sock.close()
        self._to_open += 1
        return False

    def wait_closed(self, n: int, deadline: float) -> bool:
        """Wait up to ``deadline`` s until the server answered or closed ``n`` connections in all; whether it did."""
        end = time.monotonic() + deadline
        while self.closed_count < n:
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True


__all__ = ["SlowClients"]
