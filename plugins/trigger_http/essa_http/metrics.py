"""The trigger's Prometheus metrics, its access log, and its last line of defence.

:class:`Instrumented` wraps the ASGI application: it counts every request
by route, method and status, times it, keeps the number in flight, writes
one access-log line per request (logger ``essa.http.access``, at INFO: shown
with ``essa -v``), and turns anything the application raised into a 500
answer and one log line, never a traceback.

``GET /metrics`` (:func:`exposition`) is prometheus-client's default
registry of this process, then these HTTP metrics, then
:func:`cluster_totals`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Awaitable, Callable

from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from essa.plugin import RateLimitedLog, describe

log = logging.getLogger("essa.http")
access_log = logging.getLogger("essa.http.access")
problems = RateLimitedLog(log)

#: The route label of requests that matched no route (or not its method).
OTHER_ROUTE = "other"
#: Latency buckets (seconds): a warm call answers in about a millisecond.
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpMetrics:
    """The trigger's own metrics, in a registry of their own (one per trigger)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("essa_http_requests", "HTTP requests answered, by route, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.duration = Histogram("essa_http_request_duration_seconds",
                                  "Seconds from a request's arrival to the end of its answer, by route.",
                                  ["route"], buckets=BUCKETS, registry=self.registry)
        self.in_flight = Gauge("essa_http_requests_in_flight", "HTTP requests being answered.",
                               registry=self.registry)
        #: Set to count the server's connections when it starts (:func:`essa_http.server.make_server`).
        self.connections = Gauge("essa_http_connections", "HTTP connections open.", registry=self.registry)
        self.closed = Counter("essa_http_connections_closed", "Connections the server closed before their request "
                              "was answered, by reason: header-timeout, body-timeout, evicted (the one waiting "
                              "longest, for a new one over max-connections), refused (a new one over "
                              "max-connections, all busy).", ["reason"], registry=self.registry)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # few: routes and statuses are the trigger's, methods those HTTP/1.1 parses
            children = (self.requests.labels(route, method, str(status)), self.duration.labels(route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def cluster_totals(connection: Any) -> bytes:
    """The cluster's totals for ``/metrics``, in the Prometheus text format.

    Gathered with :meth:`essa.api.Connection.status` (what ``essa status``
    shows), one series per executor, so a restarted executor resets only its
    own counters: ``essa_cluster_executor_calls_total{executor}`` (calls and
    runs), ``essa_cluster_executor_failures_total{executor}``,
    ``essa_cluster_executor_cancelled_total{executor}``,
    ``essa_cluster_executor_running{executor}``, and
    ``essa_cluster_executors``, ``essa_cluster_calls_in_flight``,
    ``essa_cluster_calls_waiting`` from the scheduler. Nothing if the cluster
    does not answer within half a second.
    """
    try:
        answers = connection.status(timeout=0.5)
    except Exception:  # the cluster is unreachable: /healthz says so; /metrics still serves the rest
        return b""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ClusterCollector(answers))
    return generate_latest(registry)


class _ClusterCollector:
    """Metric families built from one set of status answers."""

    def __init__(self, answers: list[dict]) -> None:
        self.answers = answers

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        executors = [a for a in self.answers if a.get("role") == "executor" and isinstance(a.get("id"), str)]
        schedulers = [a for a in self.answers if a.get("role") == "scheduler"]
        families = {
            "calls": CounterMetricFamily("essa_cluster_executor_calls", "Calls and runs an executor served.",
                                         labels=["executor"]),
            "failures": CounterMetricFamily("essa_cluster_executor_failures", "Calls that failed on an executor.",
                                            labels=["executor"]),
            "cancelled": CounterMetricFamily("essa_cluster_executor_cancelled", "Calls cancelled on an executor.",
                                             labels=["executor"]),
            "running": GaugeMetricFamily("essa_cluster_executor_running", "Calls an executor runs now.",
                                         labels=["executor"]),
        }
        for e in executors:
            number = lambda key: e.get(key) if isinstance(e.get(key), int) else 0  # noqa: E731
            families["calls"].add_metric([e["id"]], number("calls") + number("runs"))
            families["failures"].add_metric([e["id"]], number("failures"))
            families["cancelled"].add_metric([e["id"]], number("cancelled"))
            families["running"].add_metric([e["id"]], number("running"))
        yield from families.values()
        yield GaugeMetricFamily("essa_cluster_executors", "Executors that answered.", value=len(executors))
        for name, key, text in (("essa_cluster_calls_in_flight", "in_flight", "Calls placed and not done."),
                                ("essa_cluster_calls_waiting", "waiting", "Calls waiting for an executor.")):
            yield GaugeMetricFamily(name, text, value=sum(s.get(key) for s in schedulers
                                                          if isinstance(s.get(key), int)))


def exposition(metrics: HttpMetrics, connection: Any) -> bytes:
    """The body of ``GET /metrics``: this process's default registry, the HTTP metrics, the cluster's totals."""
    return generate_latest(PROCESS_REGISTRY) + generate_latest(metrics.registry) + cluster_totals(connection)


class Instrumented:
    """ASGI middleware: metrics, access log, and a 500 for anything the application raised."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_note)
        except Exception as exc:  # a bug: the routes answer every error they expect
            problems.warning("app", "error answering %s %s: %s", scope["method"], _path(scope), describe(exc),
                              exc_info=exc)
            if not status:
                status = 500
                body = json.dumps({"error": f"internal error: {describe(exc)}", "kind": "error"}).encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            self.metrics.observe(scope.get("essa.route", OTHER_ROUTE), scope["method"], status or 500, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info("http %s %s %s %d %.1f ms", f"{client[0]}:{client[1]}" if client else "-",
                                scope["method"], _path(scope), status or 500, elapsed * 1e3)


def _path(scope: Scope) -> str:
    """The request's path and query as received, safe for one log line."""
    raw = scope.get("raw_path") or scope.get("path", "").encode()
    query = scope.get("query_string") or b""
    text = (raw + (b"?" + query if query else b"")).decode("ascii", "backslashreplace")
    return text if len(text) <= 200 else text[:200] + "..."


__all__ = ["HttpMetrics", "Instrumented", "cluster_totals", "exposition"]
