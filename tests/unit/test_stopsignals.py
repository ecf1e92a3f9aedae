"""StopSignals: SIGINT/SIGTERM seen by a polling main loop, whatever instant they arrive at."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from essa.util.stopsignals import StopSignals


@pytest.fixture
def restored_handlers():
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def test_a_signal_at_any_instant_of_the_wait_loop_ends_it(restored_handlers):
    # `essa up` once waited on a threading.Event set by its handler: a SIGTERM arriving while the main thread
    # held the Event's lock deadlocked it. Signals land at random instants of short waits here, as there.
    for sig in [signal.SIGTERM, signal.SIGINT] * 50:
        stop = StopSignals().install()
        sender = threading.Timer(random.uniform(0, 0.003), os.kill, (os.getpid(), sig))
        sender.start()
        deadline = time.monotonic() + 60
        while not stop.wait(0.001) and time.monotonic() < deadline:
            pass
        sender.join()
        assert stop.received == sig


def test_wait_without_a_signal_returns_false_after_its_timeout(restored_handlers):
    stop = StopSignals().install()
    assert stop.wait(0.05) is False and not stop.is_set()
    assert stop.wait(0) is False


def test_only_the_first_signal_is_kept(restored_handlers):
    stop = StopSignals().install()
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.wait(60) and stop.received == signal.SIGINT
