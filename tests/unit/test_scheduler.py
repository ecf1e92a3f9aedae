"""Placement, membership and failure handling of the scheduler, over the in-process transport.

The executors here are stand-ins that record what they receive: these tests
are about the scheduler's decisions; tests/engine and tests/e2e use real ones.
"""

from __future__ import annotations

import time

import pytest

from essa.cluster import topics
from essa.cluster.calls import Caller, call_request
from essa.cluster.scheduler import Placement, Scheduler
from essa.transport.local import LocalTransport
from essa.wasm.abi import EssaResult


class RecordingExecutor:
    def __init__(self, transport: LocalTransport, executor_id: str) -> None:
        self.transport = transport
        self.id = executor_id
        self.received: list[dict] = []
        self._sub = transport.subscribe(topics.executor_calls(executor_id), self.received.append)
        self._token = transport.declare_token(topics.live_executor(executor_id))

    def finish(self, request: dict, value: bytes = b"ok") -> None:
        self.transport.publish(request["reply_to"], {"id": request["id"], "code": 0, "value": value, "message": ""})
        self.transport.publish(topics.SCHEDULER_DONE, {"id": request["id"], "executor": self.id})

    def die(self) -> None:
        self._sub.close()
        self._token.close()


@pytest.fixture
def cluster():
    transport = LocalTransport()
    scheduler = Scheduler(transport, wait_for_executors=0.5)
    scheduler.start()
    caller = Caller(transport)
    yield transport, scheduler, caller
    caller.close()
    scheduler.stop()


def start(caller: Caller, function: str = "__essa_wrapper__f", module: str = "m"):
    return caller.start(call_request(module, function, b"", "ns", "run"))


def test_calls_go_to_the_least_loaded_executor(cluster):
    transport, scheduler, caller = cluster
    a, b = RecordingExecutor(transport, "a"), RecordingExecutor(transport, "b")
    first, second = start(caller), start(caller)
    assert len(a.received) == len(b.received) == 1  # the busy one is not picked twice
    a.finish(a.received[0], b"from a")
    b.finish(b.received[0], b"from b")
    assert {first.result(1)["value"], second.result(1)["value"]} == {b"from a", b"from b"}
    assert all(e.in_flight == 0 for e in scheduler.executors.values())


def test_an_executor_that_has_the_module_is_preferred(cluster):
    transport, scheduler, caller = cluster
    a, b = RecordingExecutor(transport, "a"), RecordingExecutor(transport, "b")
    start(caller, module="m1")
    warm = a if a.received else b
    warm.finish(warm.received[0])
    for _ in range(3):
        future = start(caller, module="m1")
        warm.finish(warm.received[-1])
        future.result(1)
    assert len(warm.received) == 4
    assert scheduler.executors[warm.id].modules == {"m1"}


def test_placement_policy_is_replaceable(cluster):
    transport, scheduler, caller = cluster

    class Always(Placement):
        name = "always-b"

        def choose(self, executors, request):
            return next(e for e in executors if e.id == "b")

    scheduler.placement = Always()
    a, b = RecordingExecutor(transport, "a"), RecordingExecutor(transport, "b")
    for _ in range(3):
        start(caller)
    assert (len(a.received), len(b.received)) == (0, 3)


def test_a_new_executor_is_used_at_once(cluster):
    transport, scheduler, caller = cluster
    a = RecordingExecutor(transport, "a")
    start(caller)
    b = RecordingExecutor(transport, "b")
    start(caller)
    assert len(b.received) == 1 and len(a.received) == 1


def test_calls_of_a_dead_executor_are_retried_once_elsewhere(cluster):
    transport, scheduler, caller = cluster
    a = RecordingExecutor(transport, "a")
    future = start(caller)
    b = RecordingExecutor(transport, "b")
    a.die()
    assert len(b.received) == 1 and b.received[0]["id"] == future.id
    b.die()  # the retry dies too: now the caller hears about it
    reply = future.result(1)
    assert reply["code"] == EssaResult.UnknownError
    assert "executor b went away while running f" in reply["message"]


def test_a_run_of_a_dead_executor_fails_instead_of_running_twice(cluster):
    transport, scheduler, caller = cluster
    a, b = RecordingExecutor(transport, "a"), RecordingExecutor(transport, "b")
    future = start(caller, function="_start")
    (a if a.received else b).die()
    assert "went away while running the module" in future.result(1)["message"]


def test_calls_wait_for_a_first_executor(cluster):
    transport, scheduler, caller = cluster
    future = start(caller)
    a = RecordingExecutor(transport, "a")
    assert len(a.received) == 1
    a.finish(a.received[0])
    assert future.result(1)["code"] == EssaResult.Ok


def test_without_executors_a_call_fails_after_the_wait(cluster):
    transport, scheduler, caller = cluster
    started = time.monotonic()
    reply = start(caller).result(5)
    assert "no executor joined within 0.5 s" in reply["message"]
    assert time.monotonic() - started < 3


def test_pending_calls_fail_when_the_scheduler_goes_away(cluster):
    transport, scheduler, caller = cluster
    RecordingExecutor(transport, "a")
    future = start(caller)
    scheduler.stop()
    assert "scheduler went away" in future.result(1)["message"]


def test_status_reports_executors(cluster):
    transport, scheduler, caller = cluster
    RecordingExecutor(transport, "a")
    start(caller)
    (status,) = transport.query(f"{topics.STATUS}/scheduler/**", {})
    assert status["executors"]["a"]["in_flight"] == 1
    assert status["placement"] == "least-loaded"


def test_a_call_without_any_scheduler_fails_instead_of_hanging():
    caller = Caller(LocalTransport())
    caller.scheduler_wait = 0.2
    started = time.monotonic()
    reply = start(caller).result(5)
    assert reply["message"] == "no scheduler is reachable"
    assert time.monotonic() - started < 2


# -- liveness of waiting callers, cancellation, malformed messages ----------------------


def test_a_call_whose_reply_was_lost_fails_at_the_second_liveness_check(cluster):
    transport, scheduler, caller = cluster
    executor = RecordingExecutor(transport, "a")
    caller.liveness_interval = 0  # every pending call is old enough to be asked about
    future = start(caller)
    caller.check_liveness()
    assert not future.done()  # in flight: the scheduler tracks it
    request = executor.received[0]
    transport.publish(topics.SCHEDULER_DONE, {"id": request["id"], "executor": "a"})  # the reply never comes
    caller.check_liveness()
    assert not future.done()  # unknown once: its reply may still be on its way
    caller.check_liveness()
    reply = future.result(0)
    assert reply["code"] == EssaResult.UnknownError
    assert "the cluster lost the call" in reply["message"]


def test_calls_waiting_for_an_executor_pass_the_liveness_check(cluster):
    transport, scheduler, caller = cluster
    caller.liveness_interval = 0
    future = start(caller)
    for _ in range(3):
        caller.check_liveness()
    assert not future.done()
    assert scheduler.status()["waiting"] == 1


def test_a_cancel_fails_the_runs_calls_that_wait_for_an_executor(cluster):
    transport, scheduler, caller = cluster
    waiting = [start(caller), start(caller)]
    other = caller.start(call_request("m", "f", b"", "ns", "another-run"))
    transport.publish(topics.CANCEL, {"run": "run", "reason": "stopped by the test"})
    for future in waiting:
        reply = future.result(0)
        assert reply["cancelled"] and reply["message"] == "f was cancelled: stopped by the test"
    assert not other.done()
    assert scheduler.status()["waiting"] == 1


@pytest.mark.parametrize("reply_to", ["a//b", "", "$*", "essa/**", "essa/inbox/x/**", None, 7])
def test_requests_with_a_bad_reply_topic_are_dropped(cluster, reply_to):
    transport, scheduler, caller = cluster
    transport.publish(topics.SCHEDULER_CALLS, {"id": "bad", "reply_to": reply_to, "module": "m", "function": "f",
                                               "namespace": "n", "run": "r"})
    assert scheduler.status()["waiting"] == 0
    assert start(caller).result(5)["message"] == "no executor joined within 0.5 s"  # the backlog still expires


@pytest.mark.parametrize("broken", [{"module": None}, {"run": "a/b"}, {"args": "text"}, {"function": 3}],
                         ids=["module", "run", "args", "function"])
def test_malformed_requests_that_say_where_to_answer_are_answered(cluster, broken):
    transport, scheduler, caller = cluster
    future = caller.start({**call_request("m", "f", b"", "ns", "run"), **broken})
    reply = future.result(5)
    assert reply["code"] == EssaResult.UnknownError and reply["message"].startswith("malformed call request")


@pytest.mark.parametrize("notice", [{}, {"id": "x"}, {"executor": "a"}, {"id": 1, "executor": None}])
def test_malformed_done_notices_are_ignored(cluster, notice):
    transport, scheduler, caller = cluster
    executor = RecordingExecutor(transport, "a")
    future = start(caller)
    transport.publish(topics.SCHEDULER_DONE, notice)
    executor.finish(executor.received[0])
    assert future.result(5)["value"] == b"ok"
