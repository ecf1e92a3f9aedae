"""Placement, membership and failure handling of the scheduler, over the in-process transport.

The executors here are stand-ins that record what they receive: these tests
are about the scheduler's decisions; tests/engine and tests/e2e use real ones.
"""

from __future__ import annotations

import collections
import time

import pytest

from essa.cluster.calls import Caller, call_request
from essa.cluster.processes import topics
from essa.cluster.scheduler import Scheduler
from essa.placement import Placement
from essa.transport.local import LocalTransport
from essa.wasm.abi import EssaResult


class RecordingExecutor:
    def __init__(self, transport: LocalTransport, executor_id: str) -> None:
        self.transport = transport
        self.id = executor_id
        self.received: list[dict] = []
        self._sub = transport.subscribe(topics.executor_calls(executor_id), self.received.append)
        self._token = transport.declare_token(topics.live_executor(executor_id))
        self._find = transport.serve(topics.executor_find(executor_id), self.find)
        self.finished: set[str] = set()

    def find(self, query: dict) -> dict:
        """Like a real executor: the calls asked for that it received and did not finish run here."""
        asked = {call_id for call_id, _inbox, _namespace in query["calls"]}
        running = [r["id"] for r in self.received if r["id"] in asked and r["id"] not in self.finished]
        for request in self.received:
            if request["id"] in running:
                request["scheduler"] = query["scheduler"]
        return {"executor": self.id, "running": running, "finished": []}

    def finish(self, request: dict, value: bytes = b"ok") -> None:
        self.reply(request, value)
        self.done(request)

    def reply(self, request: dict, value: bytes = b"ok") -> None:
        self.transport.publish(request["reply_to"], {"id": request["id"], "code": 0, "value": value, "message": ""})

    def done(self, request: dict) -> None:
        self.finished.add(request["id"])
        self.transport.publish(topics.scheduler_done(request["scheduler"]), {"ids": [request["id"]], "executor": self.id})

    def die(self) -> None:
        self._sub.close()
        self._token.close()
        self._find.close()


@pytest.fixture
def cluster():
    transport = LocalTransport()
    scheduler = Scheduler(transport, wait_for_executors=0.5)
    scheduler.recover_after = 0  # a dead executor's calls are placed again at once (see the test of the wait)
    scheduler.start()
    caller = Caller(transport)
    yield transport, scheduler, caller
    caller.close()
    scheduler.stop()


def start(caller: Caller, function: str = "__essa_wrapper__f", module: str = "m"):
    return caller.start(call_request(module, function, b"", "ns", "run"))


def eventually(condition, what: str, deadline: float = 60.0) -> None:
    """Wait until ``condition()`` holds (receipts travel on the caller's own thread)."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, what
        time.sleep(0.01)


def tracked(scheduler: Scheduler) -> tuple[int, int, int]:
    status = scheduler.status()
    return status["in_flight"], status["unconfirmed"], status["waiting"]


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


def test_calls_of_a_dead_executor_are_retried_up_to_their_retry_limit(cluster):
    transport, scheduler, caller = cluster
    a = RecordingExecutor(transport, "a")
    future = caller.start(call_request("m", "__essa_wrapper__f", b"", "ns", "run", retries=2))
    executors = [a]
    for attempt in (2, 3):
        executors.append(RecordingExecutor(transport, f"e{attempt}"))
        executors[-2].die()
        request = executors[-1].received[0]
        assert request["id"] == future.id and request["attempt"] == attempt
    executors.append(RecordingExecutor(transport, "last"))
    executors[-2].die()  # the third execution dies too: its 2 retries are used up
    assert not executors[-1].received
    reply = future.result(1)
    assert reply["code"] == EssaResult.UnknownError
    assert "executor e3 went away while running f, and its 2 retries are used up" in reply["message"]


def test_a_run_of_a_dead_executor_is_retried_unless_its_deployment_says_retries_0(cluster):
    transport, scheduler, caller = cluster
    a, b = RecordingExecutor(transport, "a"), RecordingExecutor(transport, "b")
    future = start(caller, function="_start")
    first, second = (a, b) if a.received else (b, a)
    first.die()
    assert second.received[0]["id"] == future.id and second.received[0]["attempt"] == 2
    second.finish(second.received[0])
    assert future.result(1)["code"] == EssaResult.Ok
    second.die()
    c = RecordingExecutor(transport, "c")
    once = caller.start(call_request("m", "_start", b"", "ns", "run", retries=0))
    RecordingExecutor(transport, "d")
    c.die()
    assert "went away while running the module, and it may not run again (retries 0)" in once.result(1)["message"]


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


def test_pending_calls_fail_when_the_scheduler_goes_away_and_no_other_comes(cluster):
    transport, scheduler, caller = cluster
    RecordingExecutor(transport, "a")
    caller.failover_wait = 0.2
    future = start(caller)
    scheduler.stop()
    message = future.result(30)["message"]
    assert "the scheduler went away while the call was pending, and no other appeared within 0.2 s" == message


def test_calls_go_to_every_scheduler_and_move_with_their_ids_when_one_goes_away(cluster):
    transport, first, caller = cluster
    second = Scheduler(transport, scheduler_id="second")
    second.start()
    try:
        executor = RecordingExecutor(transport, "a")
        home = start(caller)
        caller.spread_above = 1  # a busy caller: its calls go to every scheduler in turn
        futures = [home] + [start(caller) for _ in range(3)]
        placed_by = collections.Counter(r["scheduler"] for r in executor.received)
        assert set(placed_by) == {first.id, second.id} and sum(placed_by.values()) == 4
        running = next(r for r in executor.received if r["scheduler"] == first.id)
        first.stop()  # its calls go to the second, which finds them running on the executor
        eventually(lambda: second.status()["executors"]["a"]["in_flight"] == 4, "the calls were not adopted")
        assert len(executor.received) == 4  # not placed again: they still run
        executor.finish(running)
        assert futures[[f.id for f in futures].index(running["id"])].result(5)["value"] == b"ok"
    finally:
        second.stop()


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
    executor.done(executor.received[0])  # the reply never comes
    for _ in range(3):
        caller.check_liveness()
    assert not future.done()  # replied, not confirmed: the scheduler still tracks it
    assert tracked(scheduler) == (0, 1, 0)
    scheduler.receipt_timeout = 0
    scheduler._expire_unconfirmed()  # no receipt in time: forgotten
    caller.check_liveness()
    assert not future.done()  # unknown once: its reply may still be on its way
    caller.check_liveness()
    reply = future.result(0)
    assert reply["code"] == EssaResult.UnknownError
    assert "the cluster lost the call" in reply["message"]


def test_a_call_is_tracked_until_its_caller_confirms_the_reply(cluster):
    transport, scheduler, caller = cluster
    executor = RecordingExecutor(transport, "a")
    future = start(caller)
    assert tracked(scheduler) == (1, 0, 0)
    request = executor.received[0]
    executor.done(request)  # the done notice overtakes the reply
    assert tracked(scheduler) == (0, 1, 0)
    assert scheduler.executors["a"].in_flight == 0  # done: no load any more
    assert scheduler.status()["executors"]["a"]["unconfirmed"] == 1
    executor.reply(request)
    assert future.result(0)["value"] == b"ok"
    eventually(lambda: tracked(scheduler) == (0, 0, 0), "the receipt did not reach the scheduler")


def test_a_receipt_before_the_done_notice_ends_the_call_and_its_load(cluster):
    transport, scheduler, caller = cluster
    executor = RecordingExecutor(transport, "a")
    start(caller)
    request = executor.received[0]
    executor.reply(request)  # the reply, and so its receipt, overtake the done notice
    eventually(lambda: tracked(scheduler) == (0, 0, 0), "the receipt did not reach the scheduler")
    assert scheduler.executors["a"].in_flight == 0 and scheduler.executors["a"].modules == {"m"}
    executor.done(request)  # late: changes nothing
    assert tracked(scheduler) == (0, 0, 0) and scheduler.executors["a"].in_flight == 0


@pytest.mark.parametrize("state", ["queued", "replied"])
def test_every_call_of_a_dead_executor_is_placed_again_with_its_id(cluster, state):
    """Queued, in transit or running: no done notice yet. Replied: done notice in, reply lost with the executor."""
    transport, scheduler, caller = cluster
    a = RecordingExecutor(transport, "a")
    futures = [start(caller) for _ in range(3)]
    b = RecordingExecutor(transport, "b")
    if state == "replied":
        for request in a.received:
            a.done(request)  # their replies were still in a's outgoing queue when it died
    a.die()
    assert sorted(r["id"] for r in b.received) == sorted(f.id for f in futures)
    assert tracked(scheduler) == (3, 0, 0)
    for request in list(b.received):
        b.finish(request, b"from b")
    assert [f.result(1)["value"] for f in futures] == [b"from b"] * 3
    eventually(lambda: tracked(scheduler) == (0, 0, 0), "the receipts did not reach the scheduler")
    assert scheduler.executors["b"].in_flight == 0


def test_a_dead_executors_calls_whose_replies_reached_their_callers_are_not_run_again(cluster):
    """The soak with kills (bench/soak_failover.py) found calls run twice: their replies had reached the
    caller, whose receipts were still on their way when the executor died. The scheduler waits for them."""
    transport, scheduler, caller = cluster
    scheduler.recover_after = 3600.0  # placed again only when the test says (below), whatever the machine's speed
    a = RecordingExecutor(transport, "a")
    answered, replied_unconfirmed, running = start(caller), start(caller), start(caller)
    b = RecordingExecutor(transport, "b")
    first, second, third = a.received
    a.finish(first)  # done notice, then the reply: confirmed by a receipt, soon
    a.reply(second)  # the reply overtook the done notice, then a died
    a.die()
    assert answered.result(1)["value"] == replied_unconfirmed.result(1)["value"] == b"ok"
    eventually(lambda: tracked(scheduler) == (1, 0, 0), "the receipts did not reach the scheduler")
    assert not b.received and not running.done()
    scheduler._recover_due(time.monotonic() + scheduler.recover_after)
    assert [r["id"] for r in b.received] == [running.id]  # only the call no caller got a reply of runs again
    b.finish(b.received[0], b"from b")
    assert running.result(1)["value"] == b"from b"
    eventually(lambda: tracked(scheduler) == (0, 0, 0), "the receipt did not reach the scheduler")
    assert scheduler.executors["b"].in_flight == 0


def test_a_call_of_a_dead_executor_is_not_load_on_one_restarted_under_its_id(cluster):
    transport, scheduler, caller = cluster
    scheduler.recover_after = 3600.0
    a = RecordingExecutor(transport, "a")
    future = start(caller)
    request = a.received[0]
    a.die()
    again = RecordingExecutor(transport, "a")  # essa up restarted it: the same id, nothing of the old one's
    a.reply(request)  # the old one's reply had reached the caller: its receipt comes now
    assert future.result(1)["value"] == b"ok"
    eventually(lambda: tracked(scheduler) == (0, 0, 0), "the receipt did not reach the scheduler")
    assert scheduler.executors["a"].in_flight == 0
    scheduler._recover_due(time.monotonic() + scheduler.recover_after)
    assert not again.received


def test_a_replied_run_of_a_dead_executor_runs_again_unless_retries_0(cluster):
    transport, scheduler, caller = cluster
    a = RecordingExecutor(transport, "a")
    future = caller.start(call_request("m", "_start", b"", "ns", "run", retries=0))
    RecordingExecutor(transport, "b")
    a.done(a.received[0])
    a.die()
    assert "went away while running the module" in future.result(1)["message"]
    assert tracked(scheduler) == (0, 0, 0)


def test_a_request_for_a_call_placed_already_is_dropped(cluster):
    transport, scheduler, caller = cluster
    a = RecordingExecutor(transport, "a")
    future = start(caller)
    transport.publish(topics.scheduler_calls(scheduler.id), dict(a.received[0]))  # the same call id again
    assert len(a.received) == 1 and scheduler.executors["a"].in_flight == 1
    a.finish(a.received[0])
    assert future.result(1)["code"] == EssaResult.Ok


def test_unconfirmed_calls_of_a_caller_that_went_away_are_forgotten(cluster):
    transport, scheduler, caller = cluster
    executor = RecordingExecutor(transport, "a")
    gone = Caller(transport, "gone")
    start(gone)
    gone.close()
    executor.finish(executor.received[0])  # nobody receives the reply: no receipt
    assert tracked(scheduler) == (0, 1, 0)
    scheduler.receipt_timeout = 0.05
    eventually(lambda: tracked(scheduler) == (0, 0, 0), "the scheduler kept a call of a caller that went away")


@pytest.mark.parametrize("receipt", [{}, {"ids": "x"}, {"ids": [1, None, b"x", ["y"]]}, {"ids": []},
                                     {"ids": ["a"], "inbox": "essa/**"}, {"inbox": "essa/inbox/x"}])
def test_malformed_receipts_change_nothing(cluster, receipt):
    transport, scheduler, caller = cluster
    executor = RecordingExecutor(transport, "a")
    future = start(caller)
    executor.done(executor.received[0])
    transport.publish(topics.scheduler_received(scheduler.id), receipt)
    assert tracked(scheduler) == (0, 1, 0)
    executor.reply(executor.received[0])
    assert future.result(1)["code"] == EssaResult.Ok


def test_a_receipt_from_another_inbox_does_not_end_a_call(cluster):
    transport, scheduler, caller = cluster
    _executor = RecordingExecutor(transport, "a")  # placed on, and never confirms
    future = start(caller)
    transport.publish(topics.scheduler_received(scheduler.id), {"ids": [future.id], "inbox": "essa/inbox/someone-else"})
    assert tracked(scheduler) == (1, 0, 0)


class UnansweredChunk(LocalTransport):
    """A transport whose tracking queries that ask about ``lost_id`` get no answer (a busy scheduler)."""

    lost_id = ""

    def query(self, selector, message, timeout=2.0, one=False):
        if selector.startswith(topics.TRACKING) and self.lost_id in message.get("ids", ()):
            return []
        return super().query(selector, message, timeout, one)


def test_calls_whose_tracking_query_went_unanswered_are_not_failed():
    transport = UnansweredChunk()
    scheduler = Scheduler(transport)
    scheduler.start()
    caller = Caller(transport)
    try:
        executor = RecordingExecutor(transport, "a")
        caller.liveness_interval = 0
        futures = [start(caller) for _ in range(1001)]  # two queries: 1000 ids, then 1
        for request in executor.received:
            executor.done(request)  # and every reply is lost
        scheduler.receipt_timeout = 0
        scheduler._expire_unconfirmed()  # the scheduler knows none of them now
        transport.lost_id = futures[0].id  # the first query is never answered
        for _ in range(2):
            caller.check_liveness()
        # The second query's call fails; the first query's are not decided on.
        assert [f.done() for f in futures] == [False] * 1000 + [True]
    finally:
        caller.close()
        scheduler.stop()


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
    transport.publish(topics.scheduler_calls(scheduler.id), {"id": "bad", "reply_to": reply_to, "module": "m", "function": "f",
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


@pytest.mark.parametrize("notice", [{}, {"ids": ["x"]}, {"executor": "a"}, {"ids": [1], "executor": None},
                                    {"ids": "x", "executor": "a"}, {"ids": [None, 3], "executor": "a"}])
def test_malformed_done_notices_are_ignored(cluster, notice):
    transport, scheduler, caller = cluster
    executor = RecordingExecutor(transport, "a")
    future = start(caller)
    transport.publish(topics.scheduler_done(scheduler.id), notice)
    executor.finish(executor.received[0])
    assert future.result(5)["value"] == b"ok"


def test_calls_left_without_a_scheduler_go_to_the_next_one_that_appears(cluster):
    transport, first, caller = cluster
    future = start(caller)  # no executor: it waits in the first scheduler's backlog
    first.wait_for_executors = 60
    first.stop()
    assert not future.done()  # it waits for another scheduler
    second = Scheduler(transport, scheduler_id="second")
    second.start()
    try:
        executor = RecordingExecutor(transport, "a")
        eventually(lambda: executor.received, "the call did not reach the new scheduler's executor")
        request = executor.received[0]
        assert (request["id"], request["adopt"], request["scheduler"]) == (future.id, True, "second")
        executor.finish(request)
        assert future.result(5)["value"] == b"ok"
    finally:
        second.stop()


def test_the_scheduler_learns_from_the_reads_in_its_batched_done_notices(cluster):
    transport, scheduler, caller = cluster
    executors = [RecordingExecutor(transport, "a"), RecordingExecutor(transport, "b")]
    future = start(caller)
    eventually(lambda: any(e.received for e in executors), "the call is placed")
    executor = next(e for e in executors if e.received)
    request = executor.received[0]
    executor.reply(request)
    executor.finished.add(request["id"])
    transport.publish(topics.scheduler_done(request["scheduler"]), {
        "ids": [request["id"]], "executor": executor.id, "load": 1,
        "reads": [["m", "__essa_wrapper__f", "ns", ["k1", "k2"]], ["bad"], "bad", ["m", 1, "ns", ["x"]]]})
    assert future.result(5)["value"] == b"ok"
    state = scheduler.executors[executor.id]
    eventually(lambda: "ns\0k1" in state.keys, "the keys read are learned")
    assert list(state.keys) == ["ns\0k1", "ns\0k2"]  # the malformed records are skipped
