"""A shared topic's servers are interchangeable: one query runs one handler (a deploy is done once)."""

from __future__ import annotations

import threading
import time

import pytest

from essa.testing.ports import free_port
from essa.transport.local import LocalTransport

QUERIES = 20


def _counting(counts: dict[str, int], name: str, lock: threading.Lock):
    def handler(_request: dict) -> dict:
        with lock:
            counts[name] = counts.get(name, 0) + 1
        return {"ok": True, "by": name}

    return handler


def test_a_shared_topic_in_one_process_answers_each_query_once():
    transport = LocalTransport()
    counts: dict[str, int] = {}
    lock = threading.Lock()
    first = transport.serve("essa/control", _counting(counts, "first", lock), shared=True)
    second = transport.serve("essa/control", _counting(counts, "second", lock), shared=True)
    for _ in range(QUERIES):
        assert len(transport.query("essa/control", {}, one=True)) == 1
    assert sum(counts.values()) == QUERIES
    first.close()
    assert transport.query("essa/control", {}, one=True) == [{"ok": True, "by": "second"}]
    second.close()
    assert transport.query("essa/control", {}, one=True) == []


def test_a_topic_served_twice_without_sharing_is_refused():
    transport = LocalTransport()
    transport.serve("essa/status/x", lambda request: {"ok": True})
    with pytest.raises(Exception, match="already served"):
        transport.serve("essa/status/x", lambda request: {"ok": True})


def test_over_zenoh_one_query_runs_one_of_several_servers():
    """Two servers in two processes' sessions, both linked to the asker: each query runs exactly one handler."""
    pytest.importorskip("zenoh")
    from essa.transport.zenoh import ZenohTransport

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    asker = ZenohTransport({"listen": [endpoint]})
    servers = [ZenohTransport({"connect": [endpoint], "connect_timeout": 60.0}) for _ in range(2)]
    counts: dict[str, int] = {}
    lock = threading.Lock()
    served = [t.serve("essa/control", _counting(counts, f"s{i}", lock), shared=True) for i, t in enumerate(servers)]
    try:
        deadline = time.monotonic() + 60
        while not asker.query("essa/control", {}, timeout=5.0, one=True):  # both servers' declarations arrive
            assert time.monotonic() < deadline, "no server of the shared topic answered within 60 s"
        time.sleep(0.5)
        with lock:
            counts.clear()
        for _ in range(QUERIES):
            answers = asker.query("essa/control", {}, timeout=30.0, one=True)
            assert len(answers) == 1
        time.sleep(0.5)  # a second handler run would have been counted by now
        with lock:
            assert sum(counts.values()) == QUERIES, counts
    finally:
        for item in served:
            item.close()
        for t in servers:
            t.close()
        asker.close()
