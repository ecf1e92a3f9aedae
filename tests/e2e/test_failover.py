"""An executor killed under load, with real processes over zenoh on loopback: no call is lost.

A scheduler and two executors run as child processes, and so does the client
(``slow_client.py``, through :func:`essa.connect`): it starts thousands of
calls at once from several threads. Once they flow, the client turns slow
(each answer costs it 50 ms: a client busy with its results), so replies
queue up on their way to it, and an executor's done notice reaches the
scheduler while its reply still waits in the executor's outgoing queue. The
executors' and the client's socket buffers are small (64 KiB: a link with
little room), so that happens within a few hundred calls. Once executor 1
is blocked sending (it has calls left, and ends none), it is killed
(SIGKILL), which takes the replies in its outgoing queue with it besides its
queued and running calls, and started again. The scheduler must place every
one of them again, and track nothing once all are answered. This process
watches the scheduler over a zenoh session of its own.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

import essa
from essa.testing.conformance.wat import module

from .test_cluster import Cluster

pytest.importorskip("zenoh")
pytest.importorskip("essa_lmdb")

CALLS = 4000
THREADS = 4
#: Bytes of each call's arguments and result (under 3 KB: zenoh's shared memory would take larger ones).
SIZE = 2048
#: What each answer costs the slow client, in seconds.
ANSWER_COST = 0.05
#: The client turns slow once this many calls answered (they flow).
FLOWING = 300
#: Executor 1 is killed once it has QUEUED calls left and has ended none for STALLED seconds: it is
#: blocked sending a reply, its outgoing queue full of replies whose done notices went out.
QUEUED = 10
STALLED = 1.0
DEADLINE = 90.0


@pytest.fixture
def cluster(engine_name, tmp_path):
    c = Cluster(engine_name, tmp_path)
    yield c
    c.stop()


class SlowClient:
    """``slow_client.py`` as a child process: its answer count as it reports it, and its final report."""

    def __init__(self, endpoint: str, config: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("slow_client.py")), endpoint, str(CALLS), str(THREADS),
             str(SIZE), str(ANSWER_COST), config],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.answered = 0
        self.report: dict | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "answered":
                self.answered = int(rest)
            elif word == "done":
                self.report = json.loads(rest)

    def tell(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def finish(self) -> dict:
        """Its final report (it exits once every call answered)."""
        try:
            self.proc.wait(DEADLINE + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reader.join(DEADLINE)
        assert self.report is not None, f"the client reported nothing: {self.proc.stderr.read()[-5000:]}"
        return self.report

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def scheduler_status(connection: essa.Connection) -> dict | None:
    return next((a for a in connection.status(timeout=2.0) if a.get("role") == "scheduler"), None)


class Progress:
    """An executor's progress as the scheduler sees it: calls placed there, and ended (done notice in)."""

    def __init__(self, connection: essa.Connection, executor: str) -> None:
        self.connection = connection
        self.executor = executor
        self.ended = -1
        self.since = time.monotonic()

    def blocked(self) -> bool:
        """Whether it has QUEUED calls left and has ended none for STALLED seconds."""
        status = scheduler_status(self.connection)
        state = (status or {}).get("executors", {}).get(self.executor)
        if state is None:
            return False
        ended = state["placed"] - state["in_flight"]
        if ended != self.ended:
            self.ended, self.since = ended, time.monotonic()
        return state["in_flight"] >= QUEUED and time.monotonic() - self.since >= STALLED


def eventually(condition: Callable[[], bool], failure: Callable[[], str], cluster: Cluster) -> None:
    """Poll ``condition`` until it holds; after :data:`DEADLINE` s fail with ``failure()`` and the logs."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{failure()} within {DEADLINE:g} s; logs:\n{cluster.log_text()[-20000:]}")
        time.sleep(0.05)


def test_no_call_is_lost_when_an_executor_is_killed_under_load(cluster, tmp_path):
    small = tmp_path / "small-buffers.json5"
    small.write_text('{transport: {link: {tcp: {so_sndbuf: 65536, so_rcvbuf: 65536}}}}')
    cluster.scheduler()
    cluster.executor("0", extra=("--zenoh-config", str(small)))
    cluster.executor("1", extra=("--zenoh-config", str(small)))
    cluster.wait_for_executors(2)
    with essa.connect(cluster.endpoint, timeout=DEADLINE) as connection:
        connection.deploy(module(), name="echo")
        for _ in range(20):  # both executors have the module
            assert connection.call("echo", "echo", b"warm") == b"warm"
        client = SlowClient(cluster.endpoint, str(small))
        try:
            eventually(lambda: client.answered >= FLOWING, lambda: "calls did not flow", cluster)
            client.tell("slow")

            progress = Progress(connection, "1")
            eventually(progress.blocked, lambda: "executor 1 did not block sending its replies", cluster)
            cluster.procs["executor-1"].send_signal(signal.SIGKILL)
            cluster.procs["executor-1"].wait(DEADLINE)
            client.tell("fast")
            cluster.executor("1", extra=("--zenoh-config", str(small)))
            report = client.finish()
        finally:
            client.stop()
        assert report == {"answered": CALLS, "failures": {}}, report

        def nothing_tracked() -> bool:
            status = scheduler_status(connection)
            return (status is not None and len(status["executors"]) == 2
                    and (status["in_flight"], status["unconfirmed"], status["waiting"]) == (0, 0, 0)
                    and all((e["in_flight"], e["unconfirmed"]) == (0, 0) for e in status["executors"].values()))

        eventually(nothing_tracked, lambda: f"the scheduler still tracks calls: {scheduler_status(connection)}", cluster)
    logs = cluster.log_text()
    assert "executor 1 went away" in logs and "Traceback" not in logs
