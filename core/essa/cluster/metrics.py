"""Prometheus metrics of essa's processes (prometheus-client, the default registry).

Every long-running process keeps them; ``--metrics HOST:PORT`` on ``essa
scheduler``, ``essa executor``, ``essa anna routing|kvs`` and ``essa serve``
serves them at ``http://HOST:PORT/metrics`` (:func:`serve`). Names follow
Prometheus conventions: ``_total`` counters, units in names, base units
(seconds, bytes). Labels are bounded: ``deployment`` is the deployment a call
was made by (``""`` for runs and calls by module), ``function`` a function the
module exports (``"-"`` when the call named none it has).

Executors
    ``essa_calls_total{deployment,function,outcome}``, ``essa_call_duration_seconds{deployment,function}``,
    ``essa_call_queue_seconds``, ``essa_calls_running``, ``essa_call_bytes_total{direction}``,
    ``essa_module_loads_total{source}`` (compiled or artifact), ``essa_module_load_duration_seconds{source}``,
    ``essa_store_operations_total{op}``, ``essa_store_operation_duration_seconds{op}``
Schedulers
    ``essa_scheduler_calls_placed_total``, ``essa_scheduler_calls_in_flight``,
    ``essa_scheduler_calls_unconfirmed`` (done, the caller's receipt not in yet),
    ``essa_scheduler_calls_waiting`` (no executor yet), ``essa_scheduler_executors``
``essa up`` (its own endpoint with ``--metrics``)
    ``essa_up_restarts_total{process}``, ``essa_up_given_up_total{process}`` (see :mod:`essa.cluster.supervise`)

A process exports the metrics of the roles it plays, and only those: an
executor's once one starts in it, a scheduler's once one starts
(:func:`serving`). So ``essa serve`` on a cluster, which plays neither,
shows no executor or scheduler counters stuck at zero, only its own and the
cluster's totals.

``ESSA_METRICS=off`` turns the per-call updates off (for measuring their cost).
"""

from __future__ import annotations

import os
import re
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from essa.errors import EssaError

#: Whether per-call metrics are updated (``ESSA_METRICS=off`` to compare their cost).
ENABLED = os.environ.get("ESSA_METRICS", "on").lower() not in ("off", "0", "false", "no")

#: Buckets for call and store latencies: 100 µs to 60 s.
LATENCY = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

CALLS = Counter("essa_calls_total", "Calls an executor ran, by how they ended (ok or the failure kind).",
                ["deployment", "function", "outcome"], registry=None)
CALL_DURATION = Histogram("essa_call_duration_seconds", "Time an executor spent running a call.",
                          ["deployment", "function"], buckets=LATENCY, registry=None)
CALL_QUEUE = Histogram("essa_call_queue_seconds", "Time a call waited on its executor before it ran.",
                       buckets=LATENCY, registry=None)
CALLS_RUNNING = Gauge("essa_calls_running", "Calls an executor runs right now.", registry=None)
CALL_BYTES = Counter("essa_call_bytes_total", "Argument bytes in and result bytes out of an executor's calls.",
                     ["direction"], registry=None)
MODULE_LOADS = Counter("essa_module_loads_total", "Modules an executor made runnable, by how: compiled or "
                       "loaded from an artifact.", ["source"], registry=None)
MODULE_LOAD_DURATION = Histogram("essa_module_load_duration_seconds", "Time to compile or load a module.",
                                 ["source"], buckets=LATENCY, registry=None)
STORE_OPS = Counter("essa_store_operations_total", "Store operations of guests and control requests.", ["op"],
                    registry=None)
STORE_DURATION = Histogram("essa_store_operation_duration_seconds", "Latency of store operations.", ["op"],
                           buckets=LATENCY, registry=None)

PLACED = Counter("essa_scheduler_calls_placed_total", "Calls a scheduler placed on executors (retries included).",
                 registry=None)
# Read when scraped, from the process's scheduler (one per process).
SCHEDULER_IN_FLIGHT = Gauge("essa_scheduler_calls_in_flight", "Calls placed on executors and not done yet.",
                            registry=None)
SCHEDULER_UNCONFIRMED = Gauge("essa_scheduler_calls_unconfirmed",
                              "Calls done on their executor whose callers have not confirmed the reply yet.",
                              registry=None)
SCHEDULER_WAITING = Gauge("essa_scheduler_calls_waiting", "Calls waiting for an executor to join.", registry=None)
SCHEDULER_EXECUTORS = Gauge("essa_scheduler_executors", "Executors the scheduler sees.", registry=None)

RESTARTS = Counter("essa_up_restarts_total", "Times essa up restarted a process of its cluster that died.",
                   ["process"], registry=None)
GIVEN_UP = Counter("essa_up_given_up_total", "Processes essa up gave up restarting: they kept dying.", ["process"],
                   registry=None)

_ROLES = {
    "executor": (CALLS, CALL_DURATION, CALL_QUEUE, CALLS_RUNNING, CALL_BYTES, MODULE_LOADS, MODULE_LOAD_DURATION,
                 STORE_OPS, STORE_DURATION),
    "scheduler": (PLACED, SCHEDULER_IN_FLIGHT, SCHEDULER_UNCONFIRMED, SCHEDULER_WAITING, SCHEDULER_EXECUTORS),
    "supervisor": (RESTARTS, GIVEN_UP),
}
_serving: set[str] = set()
_serving_lock = threading.Lock()


def serving(role: str) -> None:
    """Export the metrics of ``role`` (``executor``, ``scheduler``, ``supervisor``) from this process, once a part
    plays it."""
    with _serving_lock:
        if role not in _serving:
            _serving.add(role)
            for collector in _ROLES[role]:
                REGISTRY.register(collector)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def label(text: object) -> str:
    """``text`` if it can be a label value from a peer (a deployment name), else ``""``."""
    return text if isinstance(text, str) and _NAME.fullmatch(text) else ""


_BYTES_IN, _BYTES_OUT = CALL_BYTES.labels("in"), CALL_BYTES.labels("out")
#: Label children by label values: ``labels()`` costs more than the update itself.
_children: dict[tuple, tuple] = {}


def call_ended(deployment: str, function: str, outcome: str, queued: float, ran: float, args: int,
               result: int) -> None:
    """Count one call an executor ran."""
    calls_ended([(deployment, function, outcome, queued, ran, args, result)])


def calls_ended(calls: list[tuple[str, str, str, float, float, int, int]]) -> None:
    """Count calls an executor ran (each as :func:`call_ended` takes it), with one update per counter: a DAG's
    stages end in batches."""
    if not ENABLED:
        return
    counts: dict[Any, int] = {}
    bytes_in = bytes_out = 0
    for deployment, function, outcome, queued, ran, args, result in calls:
        key = (deployment, function, outcome)
        children = _children.get(key)
        if children is None:
            if len(_children) > 10_000:  # label values come from requests: bound the cache
                _children.clear()
            children = _children[key] = (CALLS.labels(*key), CALL_DURATION.labels(deployment, function))
        counts[children[0]] = counts.get(children[0], 0) + 1
        children[1].observe(ran)
        CALL_QUEUE.observe(queued)
        bytes_in += args
        bytes_out += result
    for counter, n in counts.items():
        counter.inc(n)
    _BYTES_IN.inc(bytes_in)
    _BYTES_OUT.inc(bytes_out)


@contextmanager
def store_operation(op: str) -> Iterator[None]:
    """Count and time one store operation (``get``, ``put``, ...)."""
    if not ENABLED:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        STORE_OPS.labels(op).inc()
        STORE_DURATION.labels(op).observe(time.perf_counter() - started)


def module_loaded(source: str, seconds: float) -> None:
    MODULE_LOADS.labels(source).inc()
    MODULE_LOAD_DURATION.labels(source).observe(seconds)


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9100"``, ``":9100"`` or ``"9100"`` -> (host, port); one-line error otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise EssaError(f"--metrics {text!r}: give HOST:PORT, e.g. 127.0.0.1:9100")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve(address: str) -> str:
    """Serve this process's metrics at ``http://ADDRESS/metrics``; return that URL."""
    host, port = parse_address(address)
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise EssaError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    return f"http://{host}:{port}/metrics"


__all__ = ["ENABLED", "call_ended", "label", "module_loaded", "serve", "serving", "store_operation"]
