"""SIGINT and SIGTERM as a flag that a process's main loop polls.

A signal handler runs on the main thread between two bytecodes, possibly
while that thread holds a lock; a handler that takes the same lock (as
``threading.Event.set`` does while the main thread is inside
``Event.wait``) deadlocks the process for good, so a SIGTERM at the wrong
instant left ``essa up`` hanging. :class:`StopSignals` only assigns an
attribute in its handler; its :meth:`~StopSignals.wait` sleeps in short steps
(``time.sleep`` wakes for a signal) and reads the flag.
"""

from __future__ import annotations

import signal
import time

#: Longest sleep between two looks at the flag, in seconds.
_STEP = 0.1


class StopSignals:
    """Records the first SIGINT or SIGTERM once :meth:`install` has made it the handler of both."""

    def __init__(self) -> None:
        #: The first signal received (``signal.SIGINT`` or ``signal.SIGTERM``), or ``None``.
        self.received: int | None = None

    def install(self) -> "StopSignals":
        """Make this the handler of SIGINT and SIGTERM (call it on the main thread); returns ``self``."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._record)
        return self

    def _record(self, signum: int, _frame: object) -> None:
        if self.received is None:
            self.received = signum

    def is_set(self) -> bool:
        """Whether a signal was received."""
        return self.received is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until a signal arrives or ``timeout`` seconds pass (``None``: no limit); return :meth:`is_set`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.received is None:
            left = _STEP if deadline is None else min(_STEP, deadline - time.monotonic())
            if left <= 0:
                break
            time.sleep(left)
        return self.received is not None


__all__ = ["StopSignals"]
