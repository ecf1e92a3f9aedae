"""Signals while a command waits: SIGINT or SIGTERM cancel what it waits for, a second one leaves at once."""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
from typing import Callable, Iterator

from essa.api import Run


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while a command waited for ``what``; ``status`` is the exit status (128 + signal)."""

    def __init__(self, signum: int, what: str = "the run") -> None:
        self.signal = signal.Signals(signum).name
        self.status = 128 + signum
        self.what = what
        super().__init__(f"interrupted ({self.signal})")


class Signals:
    """The first SIGINT or SIGTERM received while :func:`catching_signals` is active, or ``None``."""

    received: int | None = None


@contextlib.contextmanager
def catching_signals() -> Iterator[Signals]:
    """Record SIGINT and SIGTERM instead of acting on them; a second one interrupts at once.

    The handler only records the signal (it takes no lock, so it cannot
    deadlock whatever the main thread holds); the waiting code checks
    :attr:`Signals.received` between short waits.
    """
    signals = Signals()

    def record(signum: int, _frame) -> None:
        if signals.received is not None:
            raise KeyboardInterrupt  # a second signal while we clean up
        signals.received = signum

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_unless_interrupted(future, signals: Signals):
    """``future.result()``; on a signal recorded in ``signals``, cancel the future and raise :class:`Interrupted`."""
    while signals.received is None:
        try:
            return future.result(timeout=0.1)
        except concurrent.futures.TimeoutError:
            pass
    interrupted = Interrupted(signals.received, "the run" if isinstance(future, Run) else "the call")
    if isinstance(future, Run):
        future.cancel(f"interrupted by {interrupted.signal} at the client")
    else:
        future.cancel()
    raise interrupted


class SignalStop:
    """While active, SIGINT and SIGTERM call the trigger's ``stop()``, a second one ``stop(force=True)``.

    Before :meth:`forward_to` names the trigger (while connecting), a signal
    interrupts at once (``KeyboardInterrupt``: "essa: interrupted").
    """

    def __init__(self) -> None:
        self.received = 0
        self._stop: Callable[..., None] | None = None
        self._previous: dict = {}

    def forward_to(self, stop: Callable[..., None]) -> None:
        self._stop = stop

    def _handle(self, _signum, _frame) -> None:
        if self._stop is None:
            raise KeyboardInterrupt
        self.received += 1
        self._stop(force=self.received > 1)

    def __enter__(self) -> "SignalStop":
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)



__all__ = ["Interrupted", "SignalStop", "Signals", "catching_signals", "wait_unless_interrupted"]
