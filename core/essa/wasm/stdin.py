"""A guest's standard input: bytes that arrive over time, then an end.

Engines read a call's stdin through :class:`Stdin`: :meth:`Stdin.read` and
:meth:`Stdin.wait` take a deadline (``time.monotonic()``), so a guest waiting
for input still ends at its time limit; :meth:`Stdin.close` ends the input for
whoever waits (the call is over, or cancelled). Where the bytes come from is
the runtime's business (:mod:`essa.cluster.stdin` pulls a run's stdin from its
client); every call but a run's ``_start`` reads an empty one.
"""

from __future__ import annotations

import threading
import time
from collections import deque

#: The most bytes one want asks for (and one data message carries).
CHUNK = 64 * 1024


class Stdin:
    """Buffered bytes a guest reads, and whether the input has ended.

    Producers call :meth:`feed` and :meth:`finish`; engines call :meth:`read`
    and :meth:`wait`. Thread-safe.
    """

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._ended = False
        self._cond = threading.Condition()

    @classmethod
    def of(cls, data: bytes) -> "Stdin":
        """A stdin holding exactly ``data`` (then its end)."""
        stdin = cls()
        stdin.feed(data)
        stdin.finish()
        return stdin

    def feed(self, data: bytes) -> None:
        """Add bytes at the end (ignored once the input has ended)."""
        if data:
            with self._cond:
                if not self._ended:
                    self._chunks.append(bytes(data))
                    self._cond.notify_all()

    def finish(self) -> None:
        """Mark the end of the input: once the buffered bytes are read, reads return ``b""``."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def ready(self) -> bool:
        """Whether a read would return at once (bytes buffered, or the end reached)."""
        with self._cond:
            return bool(self._chunks) or self._ended

    def at_end(self) -> bool:
        """Whether the input has ended and every byte was read."""
        with self._cond:
            return self._ended and not self._chunks

    def wait(self, deadline: float | None = None) -> bool:
        """Wait until a read would return at once; ``False`` if ``deadline`` came first."""
        with self._cond:
            return self._wait(deadline)

    def read(self, size: int, deadline: float | None = None) -> bytes | None:
        """Up to ``size`` bytes (at least one), ``b""`` at the end, or ``None`` if ``deadline`` came first."""
        with self._cond:
            if not self._wait(deadline):
                return None
            if not self._chunks or size <= 0:
                return b""
            first = self._chunks[0]
            if len(first) <= size:
                return self._chunks.popleft()
            self._chunks[0] = first[size:]
            return first[:size]

    def _wait(self, deadline: float | None) -> bool:
        if self._chunks or self._ended:
            return True
        self._asking()
        while not (self._chunks or self._ended):
            if deadline is None:
                self._cond.wait()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _asking(self) -> None:
        """A reader waits for bytes none are buffered of (called with the lock held)."""

    def close(self) -> None:
        """No more input: unread bytes are dropped, and current and later readers see the end."""
        with self._cond:
            self._chunks.clear()
            self._ended = True
            self._cond.notify_all()


__all__ = ["CHUNK", "Stdin"]
