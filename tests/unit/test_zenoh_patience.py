"""Patient publishing over real zenoh sessions: a message for a subscriber not known yet is delivered once it is."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("zenoh")

DEADLINE = 60.0


def subscribe(transport, topic: str) -> tuple[list, threading.Event]:
    received, arrived = [], threading.Event()

    def got(message) -> None:
        received.append(message["n"])
        if len(received) == 3:
            arrived.set()

    transport.subscribe(topic, got)
    return received, arrived


def test_messages_for_a_subscriber_that_appears_later_arrive_in_order(zenoh_pair):
    a, b = zenoh_pair
    for n in range(3):  # nobody subscribes yet: a plain put would be dropped
        a.publish("essa/inbox/late", {"n": n}, patient=True)
    time.sleep(0.3)
    received, arrived = subscribe(b, "essa/inbox/late")
    assert arrived.wait(DEADLINE), received
    assert received == [0, 1, 2]


def test_without_patience_such_messages_are_dropped(zenoh_pair):
    a, b = zenoh_pair
    fence = threading.Event()
    b.subscribe("essa/inbox/fence", lambda message: fence.set())
    a.publish("essa/inbox/gone", {"n": 0})
    # Messages from a reach b in order: once a later one has, the first was dropped (no subscriber yet), not
    # merely still on its way (it would then find the subscription made below).
    a.publish("essa/inbox/fence", {"n": -1}, patient=True)
    assert fence.wait(DEADLINE)
    received, _arrived = subscribe(b, "essa/inbox/gone")
    a.publish("essa/inbox/gone", {"n": 1}, patient=True)  # the subscription exists now: this one arrives
    deadline = time.monotonic() + DEADLINE
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received == [1]


def test_forget_drops_what_is_held_for_a_receiver_that_is_gone(zenoh_pair):
    a, b = zenoh_pair
    topic = "essa/executor/gone/calls"
    for n in range(3):  # its executor died: nobody subscribes, the messages are held
        a.publish(topic, {"n": n}, patient=True)
    assert a._patient.holds(topic) and topic in a._publishers
    a.forget(topic)
    assert not a._patient.holds(topic) and a._patient._count == 0 and topic not in a._publishers
    received, _arrived = subscribe(b, topic)  # an executor of that id joins again
    a.publish(topic, {"n": 7}, patient=True)  # a later message still goes out
    deadline = time.monotonic() + DEADLINE
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # any held message would have followed by now
    assert received == [7]


def test_zenoh_shared_memory_is_off(zenoh_pair):
    """With it, a process mapped a 16 MiB pool of each peer that sent it a message over 3 KB, for good."""
    a, _b = zenoh_pair
    assert a._config().get_json("transport/shared_memory/enabled") == "false"  # what a's session was opened with
