"""Where an executor runs DAG stages (essa.cluster.executor.Executor.submit_stages), in one process.

An idle executor runs short stages on the thread that received their inputs
(no worker to wake); a function never seen or slow last time, a busy
executor, or stages beyond the receiving thread's budget go to the workers,
so the thread goes back to receiving. The local transport delivers on the
publishing thread, so the test's thread is the receiving one, and the
thread that sends the branches' results to the sink's executor ("y") is the
one that ran them.
"""

from __future__ import annotations

import threading

import pytest
from test_scheduler import eventually  # noqa: E402  (tests/unit is on sys.path)

from essa.cluster import topics
from essa.cluster.calls import Caller
from essa.cluster.embedded import open_engine, open_store
from essa.cluster.executor import Executor
from essa.cluster.programs import ProgramCache, publish_module
from essa.testing.dag_modules import tags_module
from essa.transport.local import LocalTransport

INBOX = "essa/inbox/test/1"


class Setup:
    """An executor "x" and what reaches the sink's executor "y" and the caller."""

    def __init__(self, engine_name: str) -> None:
        self.transport = LocalTransport()
        self.store = open_store("memory")
        self.caller = Caller(self.transport, "executor")
        self.executor = Executor("x", ProgramCache(open_engine(engine_name), self.store), self.store, self.transport,
                                 self.caller, workers=2)
        self.executor.spread_after = 60.0  # every stage that ran counts as short: no test depends on speed
        self.executor.start()
        self.module = publish_module(self.store, tags_module())
        #: (thread name, message) of each input message the sink's executor got
        self.to_sink: list[tuple[str, dict]] = []
        self.replies: list[dict] = []
        self._subscriptions = [
            self.transport.subscribe(topics.executor_stages("y"),
                                     lambda m: self.to_sink.append((threading.current_thread().name, m))),
            self.transport.subscribe(INBOX, self.replies.append)]
        self._calls = 0

    def fan_in(self, functions: list[str]) -> str:
        """Send executor "x" the inputs of one branch stage per function, all feeding a sink on "y"; the DAG call id."""
        self._calls += 1
        dag = f"dag-{self._calls}"
        sink = len(functions) + 1
        stages = {i: {"name": f"t.{f}", "module": self.module, "function": f"__essa_wrapper__{f}", "namespace": "t",
                      "deployment": "t", "parts": 1, "next": [[sink, i - 1]], "executor": "x"}
                  for i, f in enumerate(functions, 1)}
        stages[sink] = {"name": "t.echo", "module": self.module, "function": "__essa_wrapper__echo", "namespace": "t",
                        "deployment": "t", "parts": len(functions), "next": [], "executor": "y"}
        self.transport.publish(topics.executor_stages("x"), {
            "dag": dag, "reply_to": INBOX, "run": f"run-{self._calls}", "name": "fan", "scheduler": "s0",
            "stages": [[i, s] for i, s in stages.items()], "inputs": [[i, 0, b"x"] for i in stages if i != sink]})
        return dag

    def sent_to_sink(self, dag: str) -> tuple[str, dict]:
        eventually(lambda: any(m["dag"] == dag for _t, m in self.to_sink), f"the results of {dag} reach the sink")
        return next((t, m) for t, m in self.to_sink if m["dag"] == dag)

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self.executor.stop()
        self.caller.close()
        self.store.close()


@pytest.fixture
def setup(engine_name):
    s = Setup(engine_name)
    yield s
    s.close()


def test_an_idle_executor_runs_stages_known_short_on_the_thread_that_received_them(setup):
    first = setup.fan_in(["tag_b", "tag_c"])  # never seen here: the workers run them
    thread, message = setup.sent_to_sink(first)
    assert thread != threading.current_thread().name
    assert sorted(message["inputs"]) == [[3, 0, b"xb"], [3, 1, b"xc"]]
    again = setup.fan_in(["tag_b", "tag_c"])  # known short now: run before the message's delivery returns
    thread, message = next((t, m) for t, m in setup.to_sink if m["dag"] == again)
    assert thread == threading.current_thread().name
    assert sorted(message["inputs"]) == [[3, 0, b"xb"], [3, 1, b"xc"]]


def test_stages_not_known_short_go_to_the_workers(setup):
    setup.sent_to_sink(setup.fan_in(["tag_b"]))
    setup.executor.spread_after = 0.0  # tag_b took longer than that
    thread, message = setup.sent_to_sink(setup.fan_in(["tag_b"]))
    assert thread != threading.current_thread().name and message["inputs"] == [[2, 0, b"xb"]]


def test_a_busy_executor_hands_stages_to_its_workers_and_receives_on(setup):
    setup.sent_to_sink(setup.fan_in(["tag_b"]))
    spinning = setup.fan_in(["spin"])  # runs on a worker until its run is cancelled
    eventually(lambda: setup.executor.status()["running"] == 1, "the spinning stage runs")
    thread, message = setup.sent_to_sink(setup.fan_in(["tag_b"]))  # received and run meanwhile
    assert thread != threading.current_thread().name and message["inputs"] == [[2, 0, b"xb"]]
    setup.executor.cancel({"run": "run-2", "reason": "the test is over"})
    eventually(lambda: any(r["id"] == spinning for r in setup.replies), "the cancelled stage fails the DAG call")
    failure = next(r for r in setup.replies if r["id"] == spinning)
    assert "stage t.spin" in failure["message"] and "the test is over" in failure["message"]


def test_the_receiving_thread_hands_stages_beyond_its_budget_to_the_workers(setup):
    branches = ["tag_b", "tag_c", "tag_d"]
    setup.sent_to_sink(setup.fan_in(branches))
    setup.executor.receiver_budget = 0.0  # spent before the first stage: the workers run them
    thread, message = setup.sent_to_sink(setup.fan_in(branches))
    assert thread != threading.current_thread().name
    assert sorted(message["inputs"]) == [[4, 0, b"xb"], [4, 1, b"xc"], [4, 2, b"xd"]]
