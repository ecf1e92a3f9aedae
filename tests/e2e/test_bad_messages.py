"""Rogue and malformed messages against a real cluster: one line each, no traceback, nothing stops.

A scheduler and an executor run as processes; a zenoh session of the test
publishes fuzzed messages on every topic they serve. Afterwards the cluster
still runs the test function, its logs hold no traceback, and the warnings
are rate-limited lines, not one per message.
"""

from __future__ import annotations

import random

import pytest

from .test_cli import (
    EXPECTED_TEST_FUNCTION_OUTPUT,
    TEST_FUNCTION,
    assert_one_line_error,
)

pytest.importorskip("zenoh")
pytest.importorskip("essa_lmdb")

DEADLINE = 60.0
BAD_TOPICS = ["", "a//b", "$*", "essa/**", "essa/inbox/", "essa/inbox/x/**", "/lead", "trail/", "essa/inbox/a b"]
KEYS = ["id", "reply_to", "module", "function", "namespace", "run", "args", "wasm", "executor", "reason", "ids",
        "code", "value", "message", "exit", "oversized", "stream", "data"]


def fuzzed_value(rng: random.Random):
    return rng.choice([
        None, True, -1, 0, 7, 2**63 - 1, 1.5, "", "x", rng.choice(BAD_TOPICS), "essa/inbox/nobody-1",
        "_start", b"", b"\x00" * 9, [], [1, "a", None], {"nested": {"deeper": []}}, "é" * 300,
        ["x"] * 2000,
    ])


def fuzzed_message(rng: random.Random) -> dict:
    return {key: fuzzed_value(rng) for key in rng.sample(KEYS, rng.randint(0, len(KEYS)))}


@pytest.fixture
def cluster(engine_name, tmp_path):
    from .test_cluster import Cluster

    c = Cluster(engine_name, tmp_path)
    yield c
    c.stop()


def test_a_call_with_a_bad_reply_topic_does_not_stop_the_scheduler(cluster):
    """Regression: {"id": "bad", "reply_to": "a//b"} killed the scheduler's backlog thread."""
    from essa.cluster.processes import open_transport

    cluster.scheduler()  # no executor: calls wait in the backlog
    transport = open_transport(connect=[cluster.endpoint], connect_timeout=DEADLINE)
    try:
        _wait_for_scheduler(transport)
        for reply_to in BAD_TOPICS:
            transport.publish("essa/scheduler/calls", {"id": "bad", "reply_to": reply_to, "module": "m",
                                                       "function": "f", "namespace": "n", "run": "r"})
    finally:
        transport.close()
    result = cluster.run(TEST_FUNCTION)
    assert_one_line_error(result, "no executor joined within 10 s")
    cluster.stop()
    assert "Traceback" not in cluster.log_text()


def _wait_for_scheduler(transport) -> None:
    import threading

    seen = threading.Event()
    transport.watch_tokens("essa/live/scheduler", lambda key, alive: alive and seen.set())
    assert seen.wait(DEADLINE), "the scheduler's token did not reach this session"


def test_fuzzed_messages_on_every_topic_change_nothing(cluster):
    from essa.cluster.processes import open_transport

    cluster.scheduler()
    cluster.executor("0")
    cluster.wait_for_executors(1)
    assert cluster.run(TEST_FUNCTION).returncode == 0  # routes between all three exist

    rng = random.Random(20261130)
    topics = ["essa/scheduler/calls", "essa/scheduler/done", "essa/scheduler/received", "essa/executor/0/calls",
              "essa/cancel"]
    transport = open_transport(connect=[cluster.endpoint], connect_timeout=DEADLINE)
    sent = 0
    try:
        _wait_for_scheduler(transport)
        for _ in range(150):
            for topic in topics:
                transport.publish(topic, fuzzed_message(rng))
                transport._session.put(topic, rng.randbytes(rng.randint(0, 40)))
                sent += 2
            for selector in ("essa/tracking/**", "essa/status/**"):
                transport.query(selector, fuzzed_message(rng), timeout=0.2)
    finally:
        transport.close()

    result = cluster.run(TEST_FUNCTION)
    assert result.returncode == 0, result.stderr + cluster.log_text()
    assert result.stdout == EXPECTED_TEST_FUNCTION_OUTPUT
    cluster.stop()
    logs = cluster.log_text()
    assert "Traceback" not in logs
    warnings = [line for line in logs.splitlines() if "drop" in line or "refused" in line or "ignored" in line
                or "error in" in line]
    assert warnings, "the bad messages were not noticed at all"
    assert len(warnings) < sent / 10, f"{len(warnings)} warning lines for {sent} messages: not rate-limited"
