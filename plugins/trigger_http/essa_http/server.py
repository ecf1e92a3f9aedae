"""uvicorn, fitted to essa: essa's signal handling, bounded request heads, one-line logs.

- :class:`Server` leaves SIGINT and SIGTERM to ``essa serve`` (which calls
  :meth:`essa.trigger.Trigger.stop`) instead of installing its own handlers,
  which would re-raise the signal after a graceful shutdown and so end the
  process with 128 + signal instead of 0; and it reports when it listens.
- :class:`BoundedHttpToolsProtocol` refuses a request whose line and headers
  exceed :data:`MAX_HEAD` bytes (httptools sets no bound of its own), with
  400, like any malformed request.
- :class:`OneLineLog` turns uvicorn's warnings and errors (a malformed
  request, too many connections) into rate-limited single lines in essa's
  log, tracebacks at debug level only.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any, Callable, Iterator

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from essa.util.ratelimit import RateLimitedLog

from .errors import error_body

#: Most bytes of a request line and headers together.
MAX_HEAD = 64 << 10


class HeadTooLarge(ValueError):
    """A request's line and headers exceed :data:`MAX_HEAD`."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing request heads over :data:`MAX_HEAD` bytes.

    It answers requests it cannot parse as the routes answer errors: 400 with
    ``{"error": LINE, "kind": "invalid"}`` (uvicorn's own answer is plain text).
    """

    _head_bytes = 0
    _refusal = ""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        body = error_body(self._refusal or "malformed HTTP request", "invalid")
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                 b"\r\nconnection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

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
    """

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._ready = ready

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # essa serve owns SIGINT and SIGTERM

    def install_signal_handlers(self) -> None:  # uvicorn before 0.29
        pass

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._ready()


def make_server(app: Any, ready: Callable[[], None], keep_alive: float, max_connections: int,
                shutdown_timeout: float | None) -> Server:
    """A :class:`Server` for ``app`` with essa's settings (no access log of uvicorn's own: see metrics)."""
    OneLineLog.install()
    config = uvicorn.Config(
        app,
        http=BoundedHttpToolsProtocol,
        ws="none",
        lifespan="off",
        interface="asgi3",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=keep_alive,
        limit_concurrency=max_connections,
        timeout_graceful_shutdown=shutdown_timeout,
    )
    return Server(config, ready)


__all__ = ["MAX_HEAD", "BoundedHttpToolsProtocol", "OneLineLog", "Server", "make_server"]
