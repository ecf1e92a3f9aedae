"""Reading calls' logs: every process's log book asked at once, the answers merged by time.

A log query goes to ``essa/logs/**``, so every executor process of a
cluster (or the embedded runtime) answers with the lines its
:class:`~essa.cluster.logbook.LogBook` keeps for one deployment. A query is::

    {"deployment": NAME, "version": N | None, "since": EPOCH_SECONDS | None,
     "call": CALL_ID | None, "after": {BOOK_ID: SEQ, ...}, "limit": N, "token": ...}

and each book answers ``{"ok": True, "book": ID, "lines": [[seq, time,
version, function, call, stream, executor, text], ...], "newest": SEQ,
"lost": SEQ}`` (or ``{"ok": False, "error": LINE, "kind": KIND}``): the
lines it keeps that match, oldest first, at most ``limit`` (the newest),
the number of its newest line, and of the newest line it dropped.
``after`` is a cursor per book: lines numbered above it only.
:class:`LogFollower` polls with the cursors of what it has read, so it sees
each line once; a ``lost`` above its cursor says lines were dropped (the
book's bounds) before they were read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

from essa.cluster import topics
from essa.cluster.control import ControlError
from essa.transport.base import Message, Transport


@dataclass(frozen=True)
class LogLine:
    """One line a call printed.

    :ivar time: when it was written (seconds since the epoch, the executor's clock).
    :ivar stream: ``"stdout"`` or ``"stderr"``.
    :ivar version: the deployment's version the call ran (``None`` if its caller did not say).
    """

    time: float
    deployment: str
    version: int | None
    function: str
    call: str
    stream: str
    executor: str
    text: str

    @property
    def timestamp(self) -> str:
        """:attr:`time` as RFC 3339 UTC with milliseconds, e.g. ``2026-12-07T01:33:12.123Z``."""
        seconds = int(self.time)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((self.time - seconds) * 1000):03d}Z"

    def as_dict(self) -> dict:
        """The JSON view (``essa logs --json``, ``GET /v1/logs``)."""
        return {"time": self.timestamp, "deployment": self.deployment, "version": self.version,
                "function": self.function, "call": self.call, "stream": self.stream, "executor": self.executor,
                "text": self.text}

    def __str__(self) -> str:
        spec = self.deployment if self.version is None else f"{self.deployment}@{self.version}"
        return f"{self.timestamp} {spec} {self.function} call {self.call} on executor {self.executor} " \
               f"{self.stream}: {self.text}"


def _lines(answer: Message, deployment: str) -> list[tuple[float, str, int, LogLine]]:
    """(time, book, seq, line) of a well-formed answer's lines; malformed entries are skipped."""
    book = answer.get("book")
    rows = answer.get("lines")
    if not isinstance(book, str) or not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 8):
            continue
        seq, when, version, function, call, stream, executor, text = row
        if not (isinstance(seq, int) and isinstance(when, (int, float)) and isinstance(text, str)
                and isinstance(function, str) and isinstance(call, str) and isinstance(stream, str)
                and isinstance(executor, str) and (version is None or isinstance(version, int))):
            continue
        out.append((float(when), book, seq, LogLine(float(when), deployment, version, function, call, stream,
                                                    executor, text)))
    return out


class LogQuery:
    """The log query of one deployment (and filters), asked of every book (see the module documentation).

    :raises ControlError: (from :meth:`ask`) every book that answered refused
        (``kind`` ``refused`` or ``invalid``).
    """

    def __init__(self, transport: Transport, deployment: str, version: int | None = None, since: float | None = None,
                 call: str | None = None, token: str | None = None, timeout: float = 2.0) -> None:
        self.transport = transport
        self.deployment = deployment
        self.timeout = timeout
        self.request: Message = {"deployment": deployment, "version": version, "since": since, "call": call}
        if token is not None:
            self.request["token"] = token

    def ask(self, after: dict[str, int] | None = None,
            limit: int | None = None) -> tuple[list, dict[str, tuple[int, int]]]:
        """``(lines, books)``: the matching lines as (time, book, seq, line) sorted by time, and the
        ``(newest, lost)`` marks of each book that answered."""
        request = dict(self.request, after=after or {})
        if limit is not None:
            request["limit"] = max(1, limit)  # tail 0 still learns where each book is
        answers = [a for a in self.transport.query(f"{topics.LOGS}/**", request, timeout=self.timeout)
                   if isinstance(a, dict)]
        lines: list[tuple[float, str, int, LogLine]] = []
        books: dict[str, tuple[int, int]] = {}
        refusal: ControlError | None = None
        for answer in answers:
            if answer.get("ok") is True:
                book, newest, lost = answer.get("book"), answer.get("newest"), answer.get("lost")
                if isinstance(book, str) and isinstance(newest, int) and isinstance(lost, int):
                    books[book] = (newest, lost)
                    lines += _lines(answer, self.deployment)
            elif refusal is None:
                refusal = ControlError(str(answer.get("error", "refused")), str(answer.get("kind", "invalid")))
        if refusal is not None and not books:
            raise refusal
        lines.sort(key=lambda entry: entry[:3])
        return lines, books


def read_logs(query: LogQuery, tail: int | None = None) -> list[LogLine]:
    """The lines every book keeps that match ``query``, oldest first (only the last ``tail`` with ``tail``)."""
    lines, _books = query.ask(limit=tail)
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    return [entry[3] for entry in lines]


class LogFollower:
    """The lines of a :class:`LogQuery` as they are written: an iterator that waits for more.

    The first lines are those kept already (the last ``tail`` with ``tail``);
    then every ``interval`` seconds the books are asked for lines past what
    was read. Lines lost to the books' bounds before they were read are
    counted in :attr:`lost`. :meth:`close` (from any thread) ends the
    iteration within ``interval``.
    """

    #: Seconds a book that stopped answering keeps its cursor (a query may time out now and then).
    forget_after = 60.0

    def __init__(self, query: LogQuery, tail: int | None = None, interval: float = 0.5) -> None:
        self.query = query
        self.interval = interval
        #: How many times lines were dropped before this follower read them.
        self.lost = 0
        self._tail = tail
        self._cursors: dict[str, int] = {}
        self._seen: dict[str, float] = {}
        self._closed = False
        self._first = True

    def poll(self) -> list[LogLine]:
        """The lines written since the last poll (the first: those kept already), oldest first."""
        lines, books = self.query.ask(self._cursors, self._tail if self._first else None)
        if self._first and self._tail is not None:
            lines = lines[-self._tail:] if self._tail > 0 else []
        now = time.monotonic()
        for book, (newest, lost) in books.items():
            cursor = self._cursors.get(book)
            if cursor is not None and lost > cursor:
                self.lost += 1
            # Everything up to its newest line is read (or left out by tail, or matched no filter).
            self._cursors[book] = max(cursor or 0, newest)
            self._seen[book] = now
        for book in [b for b, seen in self._seen.items() if now - seen > self.forget_after]:
            del self._seen[book], self._cursors[book]
        self._first = False
        return [entry[3] for entry in lines]

    def __iter__(self) -> Iterator[LogLine]:
        while not self._closed:
            started = time.monotonic()
            yield from self.poll()
            while not self._closed and time.monotonic() - started < self.interval:
                time.sleep(min(0.05, self.interval))

    def close(self) -> None:
        """End the iteration (within ``interval``)."""
        self._closed = True


__all__ = ["LogFollower", "LogLine", "LogQuery", "read_logs"]
