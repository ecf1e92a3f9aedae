"""An executor killed under load, with real processes over zenoh on loopback: no call is lost.

A scheduler and two executors run as child processes; this process is the
client (:func:`essa.connect`). Thousands of calls are started at once from
several threads, and each answer costs the client 2 ms (a client that
processes its results), so 16 KiB replies queue up on their way to it: an
executor's done notice reaches the scheduler while its reply still waits in
the executor's outgoing queue. Killing an executor (SIGKILL) then takes such
replies with it, besides its queued and running calls. The scheduler must
place every one of them again, and track nothing once all are answered.
"""

from __future__ import annotations

import collections
import signal
import struct
import threading
import time
from typing import Callable

import pytest

import essa
from essa.testing.conformance.wat import module

from .test_cluster import Cluster

pytest.importorskip("zenoh")
pytest.importorskip("essa_lmdb")

CALLS = 3000
THREADS = 4
#: Bytes of each call's arguments and result: the replies fill the links to the client quickly.
SIZE = 16 * 1024
#: What each answer costs the client, in seconds.
ANSWER_COST = 0.002
#: The executor is killed once this many calls answered (they flow), at least IN_TRANSIT replies
#: are on their way to the client (done notices in, not received) and it still has QUEUED calls.
FLOWING = 300
IN_TRANSIT = 200
QUEUED = 10
DEADLINE = 90.0


@pytest.fixture
def cluster(engine_name, tmp_path):
    c = Cluster(engine_name, tmp_path)
    yield c
    c.stop()


class Load:
    """``CALLS`` echo calls started at once from ``THREADS`` threads; answers checked and counted."""

    def __init__(self, connection: essa.Connection) -> None:
        self.connection = connection
        self.answered = 0
        self.failures: collections.Counter[str] = collections.Counter()
        self._cond = threading.Condition()

    def start(self) -> None:
        for index in range(THREADS):
            threading.Thread(target=self._submit, args=(index,), daemon=True).start()

    def _submit(self, index: int) -> None:
        for number in range(index, CALLS, THREADS):
            args = struct.pack("<Q", number) * (SIZE // 8)  # its own answer: a mix-up shows
            future = self.connection.call_async("echo", "echo", args)
            future.add_done_callback(lambda f, a=args: self._answered(f, a))

    def _answered(self, future, args: bytes) -> None:
        time.sleep(ANSWER_COST)  # the client's work with the answer (it runs on zenoh's thread)
        error = future.exception()
        problem = str(error) if error is not None else None if future.result() == args else "a wrong answer"
        with self._cond:
            self.answered += 1
            if problem is not None:
                self.failures[problem] += 1
            self._cond.notify_all()

    def wait_answered(self, count: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.answered >= count, DEADLINE)


def scheduler_status(connection: essa.Connection) -> dict | None:
    return next((a for a in connection.status(timeout=2.0) if a.get("role") == "scheduler"), None)


def ended_on_executors(status: dict) -> int:
    """Calls the executors ended (done notice in): placed minus still in flight."""
    return sum(e["placed"] - e["in_flight"] for e in status["executors"].values())


def eventually(condition: Callable[[], bool], failure: Callable[[], str], cluster: Cluster) -> None:
    """Poll ``condition`` until it holds; after :data:`DEADLINE` s fail with ``failure()`` and the logs."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{failure()} within {DEADLINE:g} s; logs:\n{cluster.log_text()[-20000:]}")
        time.sleep(0.05)


def test_no_call_is_lost_when_an_executor_is_killed_under_load(cluster):
    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    # Status queries go through a connection of their own: the loaded one is slow to read anything.
    with essa.connect(cluster.endpoint, timeout=DEADLINE) as connection, \
            essa.connect(cluster.endpoint, timeout=DEADLINE) as monitor:
        connection.deploy(module(), name="echo")
        for _ in range(20):  # both executors have the module
            assert connection.call("echo", "echo", b"warm") == b"warm"
        load = Load(connection)
        load.start()
        assert load.wait_answered(FLOWING), f"calls did not flow; logs:\n{cluster.log_text()}"

        def replies_in_transit() -> bool:
            status = scheduler_status(monitor)
            return (status is not None and ended_on_executors(status) - load.answered >= IN_TRANSIT
                    and status["executors"].get("1", {}).get("in_flight", 0) >= QUEUED)

        eventually(replies_in_transit, lambda: "replies did not queue up on their way to the client", cluster)
        cluster.procs["executor-1"].send_signal(signal.SIGKILL)
        cluster.procs["executor-1"].wait(DEADLINE)
        cluster.executor("1")

        eventually(lambda: load.answered == CALLS, lambda: f"{load.answered} of {CALLS} calls were answered", cluster)
        assert not load.failures, dict(load.failures)

        def nothing_tracked() -> bool:
            status = scheduler_status(monitor)
            return (status is not None and len(status["executors"]) == 2
                    and (status["in_flight"], status["unconfirmed"], status["waiting"]) == (0, 0, 0)
                    and all((e["in_flight"], e["unconfirmed"]) == (0, 0) for e in status["executors"].values()))

        eventually(nothing_tracked, lambda: f"the scheduler still tracks calls: {scheduler_status(monitor)}", cluster)
    logs = cluster.log_text()
    assert "executor 1 went away" in logs and "Traceback" not in logs
