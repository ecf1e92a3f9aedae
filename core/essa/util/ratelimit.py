"""One-line, rate-limited warnings for bad input that keeps arriving.

A long-running process meets malformed messages, rogue peers and failing
handlers; each must cost one line in its log, not a traceback, and a flood of
them must not flood the log. :class:`RateLimitedLog` writes the first warning
of each kind at once, then at most one per ``interval`` seconds, saying how
many it held back. Tracebacks go to the debug level only (``-vv``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable


class RateLimitedLog:
    """Warnings of a logger, at most one line per kind of problem per ``interval``.

    :param logger: where lines go.
    :param interval: seconds between two lines of one kind.
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        #: kind -> (when the last line was written, warnings held back since)
        self._kinds: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str, *args: object, exc_info: BaseException | None = None) -> bool:
        """Log ``message % args`` unless a line of ``kind`` was written within the interval.

        ``exc_info`` is logged with its traceback at the debug level only.
        Returns whether the line was written.
        """
        now = time.monotonic()
        with self._lock:
            last, held = self._kinds.get(kind, (None, 0))
            if last is not None and now - last < self.interval:
                self._kinds[kind] = (last, held + 1)
                written = False
            else:
                if len(self._kinds) > 4096:  # kinds named by peers must not grow without bound
                    self._kinds.clear()
                self._kinds[kind] = (now, 0)
                written = True
        if written:
            if held:
                message += f" (and {held} more like it in the last {self.interval:g} s)"
            self.logger.warning(message, *args)
            if exc_info is not None and self.logger.isEnabledFor(logging.DEBUG):
                self.logger.debug("details of the above:", exc_info=exc_info)
        return written


def describe(exc: BaseException) -> str:
    """An exception in one line: ``KeyError: 'id'``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def guarded(problems: RateLimitedLog, what: str, fn: Callable[..., Any]) -> Callable[..., None]:
    """``fn``, logging one rate-limited line instead of raising (for message handlers).

    Whatever one message makes ``fn`` raise, the loop or subscription that
    calls it goes on with the next one.
    """

    def call(*args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            problems.warning(what, "error in %s: %s", what, describe(exc), exc_info=exc)

    call.__name__ = getattr(fn, "__name__", what)
    return call


__all__ = ["RateLimitedLog", "describe", "guarded"]
