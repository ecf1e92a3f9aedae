"""Calls' output, kept per deployment in each executor process: what ``essa logs`` reads.

Every executor process (and the embedded runtime) keeps one :class:`LogBook`.
A call of a deployment (its request names the deployment, and runs in the
deployment's namespace) gets a :class:`CallLog` as its guest's output: the
bytes go on where they went before (the run's output topic, if the caller
reads it), and each line of them, stdout and stderr apart, goes into the
book under the deployment, with its time, version, function, call id, stream
and executor. Calls of ``essa run`` (no deployment) are not kept: their
output is on their console.

Memory is bounded (:class:`LogBounds`): a line costs its UTF-8 bytes plus
:data:`LINE_OVERHEAD`; a call keeps at most ``call`` bytes of lines (its
oldest go first), a deployment ``deployment`` bytes (its oldest lines go
first), and the book ``total`` bytes (the oldest lines of the deployment
written least recently go first). A line longer than
:data:`essa.cluster.lines.MAX_LINE` bytes is kept in pieces of that size.

The book answers log queries (:meth:`LogBook.answer`, served on
``essa/logs/<book id>`` by :meth:`LogBook.serve`): a deployment's lines,
filtered by version, time, call and a cursor, the newest ones first if they
are too many. :mod:`essa.cluster.logreader` asks every book and merges.
Lines live in memory only: a process that stops takes its lines with it.

Whatever the bounds, a :class:`CallLog` remembers the last lines of its
call's stderr (:meth:`CallLog.stderr_tail`): a failed call's error carries
them (:func:`with_stderr`).
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from essa.cluster import topics
from essa.cluster.authorize import Authorizer, Refused
from essa.cluster.calls import MAX_NAME
from essa.cluster.deployments import check_name, display_name
from essa.cluster.lines import STREAMS, LineBuffer, line_text
from essa.errors import EssaError
from essa.transport.base import Message, Subscription, Transport
from essa.util.units import MiB

#: What a kept line costs beyond its text (bytes): what Python spends keeping it (measured with tracemalloc:
#: ~410 bytes beside the text), so the bounds are memory, and many tiny lines are bounded too.
LINE_OVERHEAD = 400
#: Lines of a call's stderr that its error carries (the last ones), and the most characters of each.
TAIL_LINES = 5
TAIL_LINE_CHARS = 500
#: Most lines one answer carries (the newest), and most bytes of text.
MAX_ANSWER_LINES = 100_000
MAX_ANSWER_BYTES = 8 * MiB
#: Most deployments a book keeps lines of (the least recently written ones go first).
MAX_DEPLOYMENTS = 4096


@dataclass(frozen=True)
class LogBounds:
    """How much of calls' output an executor process keeps, in bytes (see :mod:`essa.cluster.logbook`).

    ``deployment=0`` keeps nothing (a failed call's error still carries the
    end of its stderr).
    """

    #: Of one deployment's lines (oldest dropped first).
    deployment: int = 4 * MiB
    #: Of one call's lines (its oldest dropped first).
    call: int = 256 * 1024
    #: Of every deployment's lines together (the least recently written deployment's oldest first).
    total: int = 64 * MiB

    @property
    def keeps(self) -> bool:
        """Whether any line is kept."""
        return self.deployment > 0 and self.call > 0 and self.total > 0


class _Ring:
    """One deployment's lines in a book: ``seq -> line``, oldest first."""

    __slots__ = ("lines", "bytes", "lost")

    def __init__(self) -> None:
        #: seq -> (seq, time, version, function, call, stream, executor, text, cost)
        self.lines: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self.bytes = 0
        #: The highest seq of a line dropped (a follower that read less than it lost lines).
        self.lost = 0


class LogBook:
    """The lines one process keeps, by deployment, within :class:`LogBounds`.

    :param name: names the book's topic (with a random suffix, so a restarted
        process is a new book): the executor's id, or ``embedded``.
    """

    def __init__(self, name: str = "embedded", bounds: LogBounds | None = None) -> None:
        self.bounds = bounds or LogBounds()
        self.keeps = self.bounds.keeps
        #: The book's id, unique per process instance (a chunk of its topic).
        self.id = f"{name[:150]}-{uuid.uuid4().hex[:12]}"
        if not topics.is_chunk(self.id):
            raise EssaError(f"cannot name a log book after {name!r}")
        self._rings: collections.OrderedDict[str, _Ring] = collections.OrderedDict()
        self._bytes = 0
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    # -- writing ------------------------------------------------------------------------

    def call_log(self, request: Message, executor: str, output: Any) -> "CallLog":
        """The guest output of call ``request`` (checked) on ``executor``; it writes on to ``output``."""
        deployment = request.get("deployment")
        if not (self.keeps and isinstance(deployment, str) and deployment == request["namespace"]):
            deployment = None  # not a deployment's call (its namespace is its name), or nothing is kept
        return CallLog(self, output, deployment, request, executor)

    def _add(self, deployment: str, line: tuple, cost: int) -> None:
        """Keep ``line`` (lock held by the caller)."""
        ring = self._rings.get(deployment)
        if ring is None:
            ring = self._rings[deployment] = _Ring()
            if len(self._rings) > MAX_DEPLOYMENTS:
                self._drop_ring(next(iter(self._rings)))
        else:
            self._rings.move_to_end(deployment)
        ring.lines[line[0]] = line
        ring.bytes += cost
        self._bytes += cost
        bound = self.bounds.deployment
        while ring.bytes > bound:
            self._drop_oldest(ring)
        while self._bytes > self.bounds.total:
            oldest = self._rings[next(iter(self._rings))]
            self._drop_oldest(oldest)
            if not oldest.lines:
                self._drop_ring(next(iter(self._rings)))

    def _drop_oldest(self, ring: _Ring) -> None:
        seq, line = ring.lines.popitem(last=False)
        ring.bytes -= line[8]
        self._bytes -= line[8]
        if seq > ring.lost:
            ring.lost = seq

    def _drop(self, deployment: str, seq: int) -> None:
        """Drop line ``seq`` of ``deployment`` if it is still kept (a call over its bound; lock held)."""
        ring = self._rings.get(deployment)
        if ring is None:
            return
        line = ring.lines.pop(seq, None)
        if line is not None:
            ring.bytes -= line[8]
            self._bytes -= line[8]
            if seq > ring.lost:
                ring.lost = seq

    def _drop_ring(self, deployment: str) -> None:
        ring = self._rings.pop(deployment)
        self._bytes -= ring.bytes

    # -- reading --------------------------------------------------------------------------

    def answer(self, request: Message, authorizer: Authorizer | None = None) -> Message:
        """The lines a log query asks for (see :mod:`essa.cluster.logreader` for the fields); never raises."""
        try:
            if authorizer is not None:
                authorizer.check_control("logs", request)
            deployment, version, since, call, after, limit = _check_query(request, self.id)
        except Refused as exc:
            return {"ok": False, "error": str(exc), "kind": "refused"}
        except EssaError as exc:
            return {"ok": False, "error": str(exc), "kind": "invalid"}
        with self._lock:
            ring = self._rings.get(deployment)
            if ring is None:
                return {"ok": True, "book": self.id, "lines": [], "newest": 0, "lost": 0}
            lost = ring.lost
            newest = next(reversed(ring.lines), 0)
            picked: list[tuple] = []
            size = 0
            for line in reversed(ring.lines.values()):  # newest first, until the cursor or the time
                if line[0] <= after or (since is not None and line[1] < since):
                    break
                if (version is None or line[2] == version) and (call is None or line[4] == call):
                    size += line[8]
                    if len(picked) >= limit or size > MAX_ANSWER_BYTES:
                        break
                    picked.append(line)
        picked.reverse()
        return {"ok": True, "book": self.id, "newest": newest, "lost": lost,
                "lines": [list(line[:8]) for line in picked]}

    def serve(self, transport: Transport, authorizer: Authorizer | None = None) -> Subscription:
        """Answer log queries on ``essa/logs/<id>`` until the returned subscription is closed."""
        return transport.serve(topics.logs(self.id), lambda request: self.answer(request, authorizer))

    def stats(self) -> dict:
        """Deployments and bytes kept (for tests and ``essa status``)."""
        with self._lock:
            return {"deployments": len(self._rings), "bytes": self._bytes,
                    "lines": sum(len(r.lines) for r in self._rings.values())}


def _check_query(request: Message, book: str) -> tuple[str, int | None, float | None, str | None, int, int]:
    """The fields of a log query, checked; a one-line :class:`EssaError` for a bad one."""
    if not isinstance(request, dict):
        raise EssaError("not a log query")
    deployment = check_name(request.get("deployment"))  # type: ignore[arg-type]
    version = request.get("version")
    if not (version is None or (isinstance(version, int) and not isinstance(version, bool) and version > 0)):
        raise EssaError("malformed log query: 'version' is not a positive number")
    since = request.get("since")
    if not (since is None or (isinstance(since, (int, float)) and not isinstance(since, bool))):
        raise EssaError("malformed log query: 'since' is not a time")
    call = request.get("call")
    if not (call is None or (isinstance(call, str) and len(call) <= MAX_NAME)):
        raise EssaError("malformed log query: 'call' is not a call id")
    cursors = request.get("after") or {}
    after = cursors.get(book, 0) if isinstance(cursors, dict) else None
    if not (isinstance(after, int) and not isinstance(after, bool) and after >= 0):
        raise EssaError("malformed log query: 'after' is not a map of book ids to line numbers")
    limit = request.get("limit", MAX_ANSWER_LINES)
    if not (isinstance(limit, int) and not isinstance(limit, bool) and limit > 0):
        raise EssaError("malformed log query: 'limit' is not a positive number")
    return deployment, version, since, call, after, min(limit, MAX_ANSWER_LINES)


class CallLog:
    """The output of one call's guest: written on, kept by line in its book, the end of its stderr remembered.

    Made by :meth:`LogBook.call_log`; the executor hands it to the invocation
    as its output and :meth:`close`\\ s it when the call ends.
    """

    __slots__ = ("_book", "_output", "_deployment", "_request", "_executor", "_who", "_pending", "_kept",
                 "_kept_bytes", "_tail")

    def __init__(self, book: LogBook, output: Any, deployment: str | None, request: Message, executor: str) -> None:
        # A call that prints nothing costs only this: the rest is made on first use.
        self._book = book
        self._output = output
        self._deployment = deployment
        self._request = request
        self._executor = executor
        #: (version, function, call id) of the lines; the lines begun but not ended; (seq, cost) of this call's
        #: lines in the book, oldest first; the last lines of stderr.
        self._who = self._pending = self._kept = self._tail = None
        self._kept_bytes = 0

    def write(self, stream: int, data: bytes) -> None:
        """Pass ``data`` on, and keep its lines (see :class:`essa.wasm.abi.Output`)."""
        self._output.write(stream, data)
        if self._deployment is None and stream != 2:
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = LineBuffer()
        lines = pending.feed(stream, data)
        if lines:
            self._lines(stream, lines)

    def warn(self, message: str) -> None:
        """A line of essa's about the call, on its stderr (see :meth:`essa.cluster.executor.RunOutput.warn`)."""
        self.write(2, f"essa: {message}\n".encode())

    def note(self, message: str) -> None:
        """Keep a line of essa's about the call (``essa: MESSAGE``, on stderr), without passing it on.

        The executor notes why a call failed, so its log says it too.
        """
        if self._deployment is not None:
            self._lines(2, [f"essa: {message}"[:4096].encode()], tail=False)

    def close(self) -> None:
        """The call ended: keep the lines it began and did not end."""
        pending, self._pending = self._pending, None
        if pending is not None:
            for stream, line in pending.rest():
                self._lines(stream, [line])

    def stderr_tail(self) -> list[str]:
        """The last lines of the call's stderr (at most :data:`TAIL_LINES`), oldest first."""
        tail = list(self._tail or ())
        begun = self._pending.pending(2) if self._pending is not None else b""
        if begun:
            tail = (tail + [line_text(begun)[:TAIL_LINE_CHARS]])[-TAIL_LINES:]
        return tail

    def _lines(self, stream: int, lines: list[bytes], tail: bool = True) -> None:
        texts = [line_text(raw) for raw in lines]
        if stream == 2 and tail:
            last = self._tail
            if last is None:
                last = self._tail = collections.deque(maxlen=TAIL_LINES)
            last.extend(text[:TAIL_LINE_CHARS] for text in texts[-TAIL_LINES:])
        deployment = self._deployment
        if deployment is None:
            return
        book = self._book
        bound = book.bounds.call
        kept = self._kept
        if kept is None:
            kept = self._kept = collections.deque()
            version = self._request.get("version")
            self._who = (version if isinstance(version, int) else None, display_name(self._request["function"]),
                         self._request["id"])
        version, function, call = self._who
        now = time.time()
        name = STREAMS.get(stream, "stderr")
        with book._lock:
            for text in texts:
                cost = len(text) + LINE_OVERHEAD
                seq = next(book._seq)
                line = (seq, now, version, function, call, name, self._executor, text, cost)
                book._add(deployment, line, cost)
                kept.append((seq, cost))
                self._kept_bytes += cost
                while self._kept_bytes > bound:
                    old, old_cost = kept.popleft()
                    self._kept_bytes -= old_cost
                    book._drop(deployment, old)


def with_stderr(reply: Message, tail: list[str]) -> Message:
    """A failed call's reply whose message ends with the last lines of its stderr, which ``stderr`` lists.

    At most the last three lines go into the one-line message (joined with
    `` | ``, at most 300 characters); ``stderr`` has up to :data:`TAIL_LINES`.
    """
    if not tail:
        return reply
    shown = " | ".join(line.strip() for line in tail[-3:] if line.strip())
    if len(shown) > 300:
        shown = "..." + shown[-297:]
    message = reply.get("message", "")
    if shown:
        message = f"{message}; stderr: {shown}" if message else f"stderr: {shown}"
    return {**reply, "message": message, "stderr": list(tail)}


__all__ = ["LINE_OVERHEAD", "CallLog", "LogBook", "LogBounds", "with_stderr"]
