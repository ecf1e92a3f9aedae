"""Call traces: where a run's time went, across executors.

A traced run (``essa run --trace FILE``, ``essa call --trace FILE``, or
``trace=True`` in the API) carries ``"trace": true`` in its call request, and
so does every remote call it makes, each with ``"parent"``: the id of the call
that made it, and ``"sent"``: when its caller sent it. The executor that runs
a traced call publishes one span to ``essa/run/<run>/trace`` as the call ends
(:func:`span`), and the client collects them. :func:`chrome_trace` turns the
spans into the Chrome trace-event format, which Perfetto
(https://ui.perfetto.dev) and ``chrome://tracing`` open: one track per
executor thread, a slice per call (and one for the time it waited in the
queue), and an arrow from each call to the calls it made.

Times are wall-clock seconds of the processes involved (``time.time()``), so
spans from several hosts line up only as well as their clocks do.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterable

from essa.cluster.deployments import display_name
from essa.transport.base import Message


def span(request: Message, executor: str, received: float, started: float, ended: float, reply: Message) -> Message:
    """The span of one traced call, as an executor publishes it."""
    return {
        "id": request["id"],
        "parent": request.get("parent"),
        "function": display_name(request["function"]),
        "executor": executor,
        "thread": threading.current_thread().name,
        "sent": request.get("sent"),
        "received": received,
        "started": started,
        "ended": ended,
        "result_bytes": len(reply.get("value", b"")),
        "outcome": "ok" if reply.get("code") == 0 else (reply.get("kind") or "error"),
    }


def check_span(message: Any) -> Message | None:
    """``message`` if it is a span (from a peer: checked), else ``None``."""
    if not isinstance(message, dict) or not isinstance(message.get("id"), str):
        return None
    numbers = ("received", "started", "ended")
    if not all(isinstance(message.get(k), (int, float)) for k in numbers):
        return None
    if not all(isinstance(message.get(k), str) for k in ("function", "executor", "thread", "outcome")):
        return None
    return message


def chrome_trace(spans: Iterable[Message]) -> dict:
    """The spans of a run in the Chrome trace-event JSON format."""
    spans = sorted(spans, key=lambda s: s["started"])
    origin = min((s.get("sent") or s["received"] for s in spans), default=0.0)
    by_id = {s["id"]: s for s in spans}

    def us(t: float) -> float:
        return round((t - origin) * 1e6, 1)

    events: list[dict] = []
    for s in spans:
        track = {"pid": f"executor {s['executor']}", "tid": s["thread"]}
        queued_from = s.get("sent") or s["received"]
        args = {"call": s["id"], "parent": s.get("parent"), "executor": s["executor"], "outcome": s["outcome"],
                "result_bytes": s["result_bytes"], "queue_wait_ms": round((s["started"] - queued_from) * 1e3, 3),
                "run_ms": round((s["ended"] - s["started"]) * 1e3, 3)}
        events.append({"name": s["function"], "cat": "call", "ph": "X", "ts": us(s["started"]),
                       "dur": us(s["ended"]) - us(s["started"]), "args": args, **track})
        if s["started"] > queued_from:
            events.append({"name": f"queued: {s['function']}", "cat": "queue", "ph": "X", "ts": us(queued_from),
                           "dur": us(s["started"]) - us(queued_from), "args": {"call": s["id"]}, **track})
        caller = by_id.get(s.get("parent"))
        if caller is not None:  # an arrow from the caller's slice to this call
            flow = {"name": "call", "cat": "flow", "id": s["id"]}
            events.append({**flow, "ph": "s", "ts": us(max(s.get("sent") or s["received"], caller["started"])),
                           "pid": f"executor {caller['executor']}", "tid": caller["thread"]})
            events.append({**flow, "ph": "f", "bp": "e", "ts": us(s["started"]), **track})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"calls": len(spans), "tool": "essa"}}


def write_chrome_trace(spans: Iterable[Message], path: str) -> int:
    """Write the spans to ``path`` as Chrome trace JSON; return how many calls it holds."""
    trace = chrome_trace(spans)
    with open(path, "w") as f:
        json.dump(trace, f)
    return trace["otherData"]["calls"]


__all__ = ["chrome_trace", "check_span", "span", "write_chrome_trace"]
