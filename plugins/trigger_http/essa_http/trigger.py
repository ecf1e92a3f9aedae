"""The ``http`` trigger: essa's public API over HTTP/1.1 (starlette on uvicorn).

This module stays light (``essa plugins`` and every ``essa`` command load
it); starlette, uvicorn and prometheus-client are imported by :meth:`serve`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import logging
import socket
from typing import Callable

from essa.plugin import EssaError, Trigger, TriggerConfig, install_hint

from .limits import ConnectionLimits, descriptor_room

#: Modules the trigger needs (the distribution depends on them).
REQUIRED = ("starlette", "uvicorn", "httptools", "prometheus_client")


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"`` or ``":8080"`` (every interface) -> ``(host, port)``."""
    address = text.strip().removeprefix("http://").rstrip("/")
    host, sep, port = address.rpartition(":")
    host = host.strip("[]") if host.startswith("[") else host
    if not sep or not port.isdigit() or int(port) > 65535 or ("[" in host or "]" in host):
        raise EssaError(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free one)")
    return host or "0.0.0.0", int(port)


def _positive(options: dict[str, str], key: str, default: float, kind: type) -> float:
    raw = options.pop(key, None)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise EssaError(f"--trigger-option {key}={raw!r}: give a positive {'whole ' if kind is int else ''}number")
    return value


class HttpTrigger(Trigger):
    """Answers HTTP requests with calls, state and deployments of its connection.

    Routes, statuses, limits, shutdown and metrics: see the plugin's README.
    Options (``--trigger-option``): see :attr:`option_help`.
    """

    default_listen = "127.0.0.1:8080"
    option_help = {
        "max-requests": "requests served at once (a request counts once its body has arrived); more are "
                        "answered 503 (default 1000)",
        "max-connections": "connections open at once, idle and slow ones included (default 10000, at most what "
                           "the descriptor limit allows); a new one over it closes the one waiting longest for a "
                           "request",
        "header-timeout": "seconds a request's line and headers may take to arrive (default 10); then 408, closed",
        "body-timeout": "seconds a request's body may take to arrive, plus 1 s per KiB received (default 20); "
                        "then 408, closed",
        "keep-alive": "seconds an idle connection stays open after an answer (default 5)",
        "threads": "threads running the API's blocking parts: a call's first lookup of its deployment, state and "
                   "deployment requests (default 32); calls whose deployment was just looked up start on the "
                   "event loop",
    }

    def __init__(self, connection, config: TriggerConfig) -> None:
        super().__init__(connection, config)
        self.host, self.port = parse_listen(config.listen or self.default_listen)
        options = dict(config.options)
        defaults = ConnectionLimits()
        self.max_requests = int(_positive(options, "max-requests", 1000, int))
        self._max_connections_given = "max-connections" in options
        self.limits = ConnectionLimits(
            max_connections=int(_positive(options, "max-connections", defaults.max_connections, int)),
            header_timeout=float(_positive(options, "header-timeout", defaults.header_timeout, float)),
            body_timeout=float(_positive(options, "body-timeout", defaults.body_timeout, float)),
            keep_alive=float(_positive(options, "keep-alive", defaults.keep_alive, float)),
        )
        self.threads = int(_positive(options, "threads", 32, int))
        if options:
            raise EssaError(f"the http trigger has no option {sorted(options)[0]!r} "
                            f"(options: {', '.join(self.option_help)})")
        self._server = None
        self._routes = None
        self._stopping = 0  # 1: graceful stop asked, 2: forced

    @classmethod
    def unavailable_reason(cls) -> str | None:
        missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
        return f"missing {', '.join(missing)} ({install_hint('essa-plugin-http')})" if missing else None

    def serve(self, ready: Callable[[str], None] | None = None) -> None:
        from .app import Routes
        from .metrics import HttpMetrics
        from .server import make_server

        sock = self._bind()
        host, port = sock.getsockname()[:2]
        address = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="essa-http")
        try:
            metrics = HttpMetrics()
            routes = self._routes = Routes(self.connection, self.config.max_message_bytes, metrics, pool,
                                           self.max_requests)
            server = make_server(routes.app(), lambda: ready and ready(address), self._fitted_limits(), metrics,
                                 self.config.shutdown_timeout, pool)
            self._server = server
            self._apply_stop()  # a stop asked before the server existed
            server.run(sockets=[sock])
        finally:
            sock.close()
            pool.shutdown(wait=False, cancel_futures=True)

    def _fitted_limits(self) -> ConnectionLimits:
        """:attr:`limits` with ``max-connections`` lowered to what the descriptor limit allows (raised first)."""
        room = descriptor_room()
        if self.limits.max_connections <= room:
            return self.limits
        level = logging.WARNING if self._max_connections_given else logging.INFO
        logging.getLogger("essa.http").log(
            level, "max-connections lowered from %d to %d: the limit of open descriptors (ulimit -n) leaves room "
            "for no more", self.limits.max_connections, room)
        return dataclasses.replace(self.limits, max_connections=room)

    def stop(self, force: bool = False) -> None:
        self._stopping = max(self._stopping, 2 if force else 1)
        self._apply_stop()

    def _apply_stop(self) -> None:
        server = self._server
        if server is not None and self._stopping:
            server.should_exit = True
            server.force_exit = self._stopping > 1
            if self._routes is not None:
                self._routes.stopping = True  # followed log answers end

    def _bind(self) -> socket.socket:
        where = f"{self.host}:{self.port}"
        try:
            family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM, 0,
                                                                 socket.AI_PASSIVE)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise EssaError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise EssaError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        return sock


__all__ = ["HttpTrigger", "parse_listen"]
