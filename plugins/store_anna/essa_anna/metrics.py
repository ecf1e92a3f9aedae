"""Prometheus metrics of anna's routing and KVS nodes (``essa anna kvs|routing --metrics HOST:PORT``).

``essa_anna_requests_total{outcome}`` and ``essa_anna_request_duration_seconds``
count and time the operations a KVS node answers (``ok``, ``not_found``,
``wrong_owner``, ``type_mismatch``, ``bad_value``, ``timeout``, ``error``);
``essa_anna_keys`` and ``essa_anna_bytes`` are read from the node when scraped;
``essa_anna_address_requests_total`` counts a routing node's answers.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import Counter, Gauge, Histogram

from essa.plugin import LATENCY

from . import protocol as P

OUTCOMES = {P.OK: "ok", P.NOT_FOUND: "not_found", P.WRONG_OWNER: "wrong_owner", P.TYPE_MISMATCH: "type_mismatch",
            P.BAD_VALUE: "bad_value", P.TIMEOUT: "timeout", P.ERROR: "error"}

REQUESTS = Counter("essa_anna_requests_total", "Operations a KVS node answered, by outcome.", ["outcome"])
REQUEST_DURATION = Histogram("essa_anna_request_duration_seconds", "Time from a request's arrival to its answer.",
                             buckets=LATENCY)
ADDRESS_REQUESTS = Counter("essa_anna_address_requests_total", "Key address requests a routing node answered.")
KEYS = Gauge("essa_anna_keys", "Keys the KVS node holds.")
BYTES = Gauge("essa_anna_bytes", "Bytes of values the KVS node holds.")

_children = {code: REQUESTS.labels(name) for code, name in OUTCOMES.items()}


def answered(code: int, seconds: float) -> None:
    """Count one answered operation."""
    child = _children.get(code)
    if child is not None:
        child.inc()
    REQUEST_DURATION.observe(seconds)


def watch_node(keys: Callable[[], float], size: Callable[[], float]) -> None:
    """Read the node's key count and bytes when scraped."""
    KEYS.set_function(keys)
    BYTES.set_function(size)
