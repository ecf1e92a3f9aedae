"""uvicorn, fitted to essa: signal handling, bounded connections and request heads, deadlines, one-line logs.

- :class:`Server` leaves SIGINT and SIGTERM to ``essa serve`` (which calls
  :meth:`essa.api.trigger.Trigger.stop`) instead of installing its own handlers,
  which would re-raise the signal after a graceful shutdown and so end the
  process with 128 + signal instead of 0; and it reports when it listens.
- :class:`BoundedHttpToolsProtocol` (always httptools: :func:`make_server`
  pins it, so uvicorn's h11 protocol never runs) refuses a request whose line
  and headers exceed :data:`MAX_HEAD` bytes (httptools sets no bound of its
  own), with 400, like any malformed request; and it puts deadlines on the
  parts of a request that the client sends (:class:`~essa_http.limits.ConnectionLimits`), so a
  slow client cannot hold a connection for long.
- :class:`Connections` caps the connections open at once. A connection costs
  a descriptor and a few KiB until it has sent a whole request head; what the
  server spends serving requests is capped by the routes (``max-requests``,
  see :class:`essa_http.app.RequestSlots`), so idle and slow connections never
  take a request's place.
- :class:`OneLineLog` turns uvicorn's warnings and errors (a malformed
  request) into rate-limited single lines in essa's log, tracebacks at debug
  level only.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
import socket
from typing import Any, Callable, Iterator

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from essa.plugin import RateLimitedLog

from .errors import error_body
from .limits import BODY_MIN_RATE, ConnectionLimits
from .metrics import HttpMetrics, problems

#: Most bytes of a request line and headers together.
MAX_HEAD = 64 << 10


class HeadTooLarge(ValueError):
    """A request's line and headers exceed :data:`MAX_HEAD`."""


class Connections:
    """The open connections of one server, at most ``limits.max_connections``.

    A new connection over the cap makes room by closing the connection that
    has waited longest for a request (idle after an answer, or still sending
    its head): an idle one without an answer (HTTP lets a server close idle
    connections), one halfway through its head with 503. If every open
    connection has a request under way, the new one is answered 503 and
    closed at once.
    """

    def __init__(self, limits: ConnectionLimits, metrics: HttpMetrics) -> None:
        self.limits = limits
        self.metrics = metrics
        #: Connections without a request under way, the one waiting longest first.
        self._waiting: collections.OrderedDict[BoundedHttpToolsProtocol, None] = collections.OrderedDict()

    def waiting(self, connection: "BoundedHttpToolsProtocol") -> None:
        """``connection`` waits for a request (it opened, or answered one): it may be closed to make room."""
        self._waiting.pop(connection, None)
        self._waiting[connection] = None

    def not_waiting(self, connection: "BoundedHttpToolsProtocol") -> None:
        """``connection`` has a request under way (its head arrived), or closed."""
        self._waiting.pop(connection, None)

    def make_room(self, open_now: int) -> bool:
        """Whether a new connection (one of ``open_now``) may stay, closing one that waits if need be."""
        if open_now <= self.limits.max_connections:
            return True
        if self._waiting:
            victim, _ = self._waiting.popitem(last=False)
            self.closing("evicted", "%d connections open (max-connections): closed the one waiting longest for a "
                         "request", self.limits.max_connections)
            victim.close_waiting()
            return True
        self.closing("refused", "%d connections open (max-connections), each with a request under way: refused a "
                     "new one with 503", self.limits.max_connections)
        return False

    def closing(self, reason: str, line: str, *args: object) -> None:
        """Note a connection closed early for ``reason``: counted, and logged (rate-limited, per kind of line)."""
        self.metrics.closed.labels(reason).inc()
        problems.warning(line, line, *args)  # one kind of line each


class OneWrite:
    """A connection's transport that sends what is written in one turn of the event loop as one write.

    uvicorn writes an answer's head and body apart: two sends, two packets,
    two wake-ups of the client. Written in the same turn, they leave together
    at its end (a body over :data:`COALESCE` bytes goes as it is, after the
    head). Everything else is the transport's; closing sends what is pending
    first.
    """

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)
            if len(data) > COALESCE:
                self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            if len(pending) == 1 or sum(map(len, pending)) > COALESCE:
                for data in pending:
                    self._transport.write(data)
            else:
                self._transport.write(b"".join(pending))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: Bytes up to which an answer's head and body are joined into one write.
COALESCE = 64 << 10


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded heads, deadlines, and a place among :class:`Connections`.

    It answers requests it cannot parse, or that arrive too slowly, as the
    routes answer errors: ``{"error": LINE, "kind": KIND}`` (uvicorn's own
    answer is plain text), then closes the connection.

    :param connections: the server's connections (limits and room).
    """

    _head_bytes = 0
    _refusal = ""

    def __init__(self, *args: Any, connections: Connections, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections = connections
        self._limits = connections.limits
        #: The current deadline (loop time) and what it is for ("head" or "body"); None: no deadline.
        self._deadline: float | None = None
        self._deadline_for = ""
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = False  # bytes of a request head arrived, not all of it
        self._body_started = 0.0
        self._body_bytes = 0

    # -- the connection's life ------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWrite(transport, self.loop))  # type: ignore[arg-type]
        if not self._connections.make_room(len(self.connections)):
            self._answer_and_close(503, f"the server has {self._limits.max_connections} connections open "
                                        "(max-connections), each with a request under way; try again", "busy")
            return
        self._connections.waiting(self)
        self._watch(self.loop.time() + self._limits.header_timeout, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.not_waiting(self)
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def close_waiting(self) -> None:
        """Close this connection, which has no request under way, to make room for another."""
        if self._in_head:
            self._answer_and_close(503, f"the server has {self._limits.max_connections} connections open "
                                        "(max-connections): this one, still sending its request, was closed; "
                                        "try again", "busy")
        else:
            self.transport.close()

    # -- parser callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._in_head = True
        if self._deadline is None and not self._answering():  # a later request on a kept-alive connection
            self._watch(self.loop.time() + self._limits.header_timeout, "head")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        # Raising in a parser callback makes httptools fail the request: uvicorn answers 400 and closes.
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD:
            self._refusal = f"the request line and headers exceed {MAX_HEAD // 1024} KiB"
            raise HeadTooLarge(self._refusal)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._connections.not_waiting(self)
        now = self.loop.time()
        self._body_started, self._body_bytes = now, 0
        self._watch(now + self._limits.body_timeout, "body")  # until the message completes (now, if bodiless)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        self._deadline = self._body_started + self._limits.body_timeout + self._body_bytes / BODY_MIN_RATE
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._deadline = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        idle = not self.pipeline  # else the next request, already read, starts now
        super().on_response_complete()
        if idle and not self.transport.is_closing():
            self._connections.waiting(self)
            if self._in_head and self._deadline is None:  # the next head began while this answer was made
                self._watch(self.loop.time() + self._limits.header_timeout, "head")

    def _answering(self) -> bool:
        """Whether a request's answer is under way (a head deadline then waits for its end: see above)."""
        return self.cycle is not None and not self.cycle.response_complete

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(400, self._refusal or "malformed HTTP request", "invalid")

    # -- deadlines --------------------------------------------------------------------

    def _watch(self, deadline: float, what: str) -> None:
        """Close the connection at ``deadline`` (loop time) unless :attr:`_deadline` is cleared or moved first.

        One timer per connection: when it fires early (the deadline moved
        later, as a body arrives) it is set again for the new deadline.
        """
        self._deadline, self._deadline_for = deadline, what
        if self._timer is not None and self._timer.when() <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self._deadline is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if self._deadline_for == "body" and self.flow.read_paused:
            # The server itself is not reading (a pipelined request waits for the one before, or the
            # application is behind): the client cannot be late. Its clock starts again.
            self._body_started, self._body_bytes = now, 0
            self._watch(now + self._limits.body_timeout, "body")
        elif now < self._deadline:
            self._watch(self._deadline, self._deadline_for)
        elif self._deadline_for == "head":
            self._head_late()
        else:
            self._body_late()

    def _head_late(self) -> None:
        timeout = self._limits.header_timeout
        if not self._in_head:  # it sent nothing since it opened
            self._connections.closing("header-timeout", "closed a connection that sent no request within %g s "
                                      "(header-timeout)", timeout)
            self.transport.close()
            return
        self._connections.closing("header-timeout", "answered 408 to a request whose head did not arrive within "
                                  "%g s (header-timeout), and closed its connection", timeout)
        self._answer_and_close(408, f"the request's line and headers did not arrive within {timeout:g} s "
                                    "(header-timeout)", "timeout")

    def _body_late(self) -> None:
        timeout = self._limits.body_timeout
        self._connections.closing("body-timeout", "answered 408 to a request whose body arrived too slowly (%d "
                                  "bytes in %.0f s; body-timeout %g s plus 1 s per %d bytes), and closed its "
                                  "connection", self._body_bytes, self.loop.time() - self._body_started, timeout,
                                  BODY_MIN_RATE)
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self.transport.close()
            return
        self._answer_and_close(408, f"the request's body arrived too slowly: {self._body_bytes} bytes in "
                                    f"{self.loop.time() - self._body_started:.0f} s (body-timeout: {timeout:g} s, "
                                    f"plus 1 s per {BODY_MIN_RATE} bytes)", "timeout")
        # The application, still waiting for the body, is told the client is gone (its answer is dropped).
        cycle.scope["essa.closed"] = "body-timeout"  # type: ignore[typeddict-unknown-key]
        cycle.disconnected = True
        cycle.message_event.set()

    def _answer_and_close(self, status: int, line: str, kind: str) -> None:
        """Answer ``{"error": line, "kind": kind}`` with ``status`` and close the connection (unless closing)."""
        if self.transport.is_closing():
            return
        body = error_body(line, kind)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                 b"\r\nconnection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


class OneLineLog(logging.Filter):
    """On uvicorn's logger: warnings and errors go to essa's log as rate-limited single lines."""

    def __init__(self) -> None:
        super().__init__()
        self._problems = RateLimitedLog(logging.getLogger("essa.http"))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # startup and shutdown notes: shown with essa -v
        lines = record.getMessage().splitlines()
        exc = record.exc_info[1] if record.exc_info else None
        self._problems.warning(str(record.msg)[:80], "%s", lines[0] if lines else "uvicorn: (no message)", exc_info=exc)
        return False

    @classmethod
    def install(cls) -> None:
        """Add the filter to uvicorn's logger, once per process."""
        logger = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())


class Server(uvicorn.Server):
    """A uvicorn server stopped through :attr:`should_exit` / :attr:`force_exit` only.

    :param ready: called once it listens.
    :param executor: the event loop's default executor (where the API runs what blocks: ``acall``'s first
        resolution of a deployment, ``adeployment``).
    """

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None],
                 executor: concurrent.futures.Executor | None = None) -> None:
        super().__init__(config)
        self._ready = ready
        self._executor = executor

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # essa serve owns SIGINT and SIGTERM

    def install_signal_handlers(self) -> None:  # uvicorn before 0.29
        pass

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self._executor is not None:
            asyncio.get_running_loop().set_default_executor(self._executor)
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._ready()


def make_server(app: Any, ready: Callable[[], None], limits: ConnectionLimits, metrics: HttpMetrics,
                shutdown_timeout: float | None, executor: concurrent.futures.Executor | None = None) -> Server:
    """A :class:`Server` for ``app`` with essa's settings (no access log of uvicorn's own: see metrics).

    uvicorn's own ``limit_concurrency`` stays off: it counts connections, so
    slow ones would take requests' places. :class:`Connections` caps
    connections, the routes cap requests.
    """
    OneLineLog.install()
    connections = Connections(limits, metrics)
    config = uvicorn.Config(
        app,
        http=functools.partial(BoundedHttpToolsProtocol, connections=connections),
        ws="none",
        lifespan="off",
        interface="asgi3",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]  (a float works)
        timeout_graceful_shutdown=shutdown_timeout,
    )
    server = Server(config, ready, executor)
    metrics.connections.set_function(lambda: len(server.server_state.connections))
    return server


__all__ = ["COALESCE", "MAX_HEAD", "BoundedHttpToolsProtocol", "Connections", "OneLineLog", "OneWrite", "Server",
           "make_server"]
