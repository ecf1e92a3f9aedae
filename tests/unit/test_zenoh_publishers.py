"""Declared zenoh publishers of a long-lived process stay bounded: idle ones are undeclared, and messages still arrive."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("zenoh")

import essa.transport.zenoh as zenoh_transport  # noqa: E402
from essa.testing.ports import free_port  # noqa: E402
from essa.transport.zenoh import ZenohTransport  # noqa: E402

DEADLINE = 60.0


def collect(transport: ZenohTransport, topic: str) -> tuple[list, threading.Condition]:
    received: list = []
    arrived = threading.Condition()

    def got(message) -> None:
        with arrived:
            received.append(message["n"])
            arrived.notify_all()

    transport.subscribe(topic, got)
    return received, arrived


def wait_for(received: list, arrived: threading.Condition, count: int) -> None:
    with arrived:
        assert arrived.wait_for(lambda: len(received) >= count, DEADLINE), f"{len(received)} of {count} arrived"


def test_publishers_of_topics_no_longer_used_are_undeclared(zenoh_pair, monkeypatch):
    monkeypatch.setattr(zenoh_transport, "PUBLISHER_IDLE", 0.2)
    a, b = zenoh_pair
    received, arrived = collect(b, "essa/run/*/output")
    for n in range(20):  # twenty runs' output topics, each used once (patient: b may not be known yet)
        a.publish(f"essa/run/r{n}/output", {"n": n}, patient=True)
    wait_for(received, arrived, 20)
    assert len(a._publishers) == 20
    time.sleep(0.5)  # every one of them is idle now
    a.publish("essa/run/next/output", {"n": 20})
    assert list(a._publishers) == ["essa/run/next/output"]
    a.publish("essa/run/r3/output", {"n": 21})  # a swept topic is declared again when used again
    wait_for(received, arrived, 22)
    assert sorted(received) == list(range(22))
    # Swept publishers stay declared for a grace period (a put made just before may still be queued), then go.
    assert len(a._retired) == 20
    monkeypatch.setattr(zenoh_transport, "PUBLISHER_GRACE", 0.0)
    time.sleep(0.5)
    a.publish("essa/run/last/output", {"n": 22})  # a declaration sweeps, and undeclares the retired ones
    assert len(a._retired) == 2  # the two just swept (their grace counts from now)


def test_messages_arrive_while_publishers_are_swept_under_them(zenoh_pair, monkeypatch):
    monkeypatch.setattr(zenoh_transport, "PUBLISHER_IDLE", 0.0)  # every declaration sweeps every other
    a, b = zenoh_pair
    received, arrived = collect(b, "essa/inbox/*")
    a.publish("essa/inbox/t0", {"n": -1}, patient=True)
    wait_for(received, arrived, 1)  # b's subscription is known to a

    def sender(t: int) -> None:
        for i in range(300):
            a.publish(f"essa/inbox/t{t}-{i % 7}", {"n": t * 1000 + i})

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    wait_for(received, arrived, 1 + 4 * 300)
    assert sorted(received) == [-1] + sorted(t * 1000 + i for t in range(4) for i in range(300))
    assert len(a._publishers) <= 4 * 7 + 1


def test_closing_the_last_session_waits_for_zenohs_callback_threads():
    """A callback thread alive when the interpreter finalizes aborts the process ("FATAL: exception not rethrown")."""
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    transport = ZenohTransport({"listen": [endpoint]})
    for i in range(4):
        transport.subscribe(f"essa/test/{i}", lambda message: None)
    assert [t for t in threading.enumerate() if zenoh_transport._CALLBACK_THREAD in t.name]
    transport.close()
    assert [t.name for t in threading.enumerate() if zenoh_transport._CALLBACK_THREAD in t.name] == []
