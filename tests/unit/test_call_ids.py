"""A call's id across the cluster: receipts confirm replies by id; an executor runs an id once at a time."""

from __future__ import annotations

import contextlib
import threading
import time

from essa.cluster import topics
from essa.cluster.adopt import child_id
from essa.cluster.calls import Caller, IdBatches, Receipts, call_request, check_request
from essa.cluster.embedded import open_engine, open_store
from essa.cluster.executor import Executor
from essa.cluster.programs import ProgramCache, publish_module
from essa.testing.conformance.wat import module
from essa.transport.local import LocalTransport

DEADLINE = 60.0


def test_receipts_go_out_in_batches_and_close_sends_the_rest():
    transport = LocalTransport()
    sent: list[dict] = []
    transport.subscribe(topics.scheduler_received("s1"), sent.append)
    receipts = Receipts(transport, "essa/inbox/me")
    ids = [f"me/{n}" for n in range(2500)]
    for call_id in ids:
        receipts.add(call_id, "s1")
    receipts.close()  # sends what it holds
    assert [i for message in sent for i in message["ids"]] == ids
    assert all(message["inbox"] == "essa/inbox/me" and len(message["ids"]) <= Receipts.most for message in sent)
    assert len(sent) <= 6  # many ids to a message, not one each


def test_done_notices_carry_the_records_of_their_own_ids_only():
    transport = LocalTransport()
    sent: list[dict] = []
    transport.subscribe(topics.scheduler_done("s1"), sent.append)
    batches = IdBatches(transport, "done-test", topics.scheduler_done, lambda: {"executor": "e"}, linger=10)
    for n in range(2500):
        batches.add(f"c{n}", "s1", ["m", "f", "ns", [f"k{n}"]] if n % 1000 == 999 else None)
    batches.close()
    assert [i for message in sent for i in message["ids"]] == [f"c{n}" for n in range(2500)]
    for message in sent:  # each id's record goes in the message with the id
        numbers = {int(i[1:]) for i in message["ids"]}
        assert [r[3] for r in message.get("reads", [])] == [[f"k{n}"] for n in sorted(numbers) if n % 1000 == 999]
    assert sum(len(m.get("reads", [])) for m in sent) == 2


def test_an_id_sent_now_does_not_wait_for_others():
    transport = LocalTransport()
    sent: list[dict] = []
    transport.subscribe(topics.scheduler_done("s1"), sent.append)
    batches = IdBatches(transport, "done-test", topics.scheduler_done, lambda: {"executor": "e"}, linger=DEADLINE)
    try:
        batches.add("c1", "s1")
        batches.add("c2", "s1", now=True)  # an idle executor's last call: the message goes at once
        deadline = time.monotonic() + DEADLINE / 2
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent == [{"executor": "e", "ids": ["c1", "c2"]}]
    finally:
        batches.close()


def test_a_caller_confirms_every_reply_it_receives():
    transport = LocalTransport()
    sent: list[dict] = []
    transport.subscribe(topics.scheduler_received("s1"), sent.append)
    _token = transport.declare_token(topics.live_scheduler("s1"))
    caller = Caller(transport)
    try:
        reply = {"id": "not-pending/1", "code": 0, "value": b"", "message": ""}
        transport.publish(caller.inbox, reply)  # a duplicate, or a call given up: still confirmed
        transport.publish(caller.inbox, {"id": 7})  # malformed: ignored, not confirmed
        deadline = time.monotonic() + DEADLINE
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent == [{"inbox": caller.inbox, "ids": ["not-pending/1"]}]
    finally:
        caller.close()


def test_an_executor_runs_a_call_it_queues_already_only_once(engine_name):
    transport = LocalTransport()
    store = open_store("memory")
    caller = Caller(transport, "executor")
    executor = Executor("x", ProgramCache(open_engine(engine_name), store), store, transport, caller, workers=1)
    executor.start()
    replies: list[dict] = []
    transport.subscribe("essa/inbox/test", replies.append)
    try:
        request = {"id": "test/1", "reply_to": "essa/inbox/test",
                   **call_request(publish_module(store, module()), "__essa_wrapper__echo", b"hi", "ns", "run")}
        gate = threading.Event()
        executor.pool.submit(gate.wait, DEADLINE)  # its only worker is busy: the call stays queued
        executor.submit(request)
        executor.submit(dict(request))  # placed again while queued (a retry, a resubmission)
        gate.set()
        assert executor.pool.wait_idle(DEADLINE)
        assert [r["value"] for r in replies] == [b"hi"] and executor.stats.calls == 1
        executor.submit(dict(request))  # once it ended, the id may run again
        assert executor.pool.wait_idle(DEADLINE)
        assert len(replies) == 2
    finally:
        executor.stop()
        caller.close()
        store.close()


def test_an_executor_found_running_or_finished_answers_the_caller_who_asks_again(engine_name):
    transport = LocalTransport()
    store = open_store("memory")
    caller = Caller(transport, "executor")
    executor = Executor("x", ProgramCache(open_engine(engine_name), store), store, transport, caller, workers=1)
    executor.start()
    first: list[dict] = []
    second: list[dict] = []
    transport.subscribe("essa/inbox/first", first.append)
    transport.subscribe("essa/inbox/second", second.append)
    try:
        request = {"id": "p/1.1", "reply_to": "essa/inbox/first", "scheduler": "s1",
                   **call_request(publish_module(store, module()), "__essa_wrapper__echo", b"hi", "ns", "run")}
        gate = threading.Event()
        executor.pool.submit(gate.wait, DEADLINE)  # its only worker is busy: the call stays queued
        executor.submit(request)
        # A re-executed parent's caller asks for the call: it runs here, and will answer the new inbox.
        asked = {"scheduler": "s2", "calls": [["p/1.1", "essa/inbox/second", "ns"], ["p/1.2", "essa/inbox/second", "ns"]]}
        elsewhere = {"scheduler": "s2", "calls": [["p/1.1", "essa/inbox/rogue", "another-ns"]]}
        assert executor.find(elsewhere)["running"] == []  # found only in its own namespace
        assert executor.find(asked) == {"executor": "x", "running": ["p/1.1"], "finished": []}
        gate.set()
        assert executor.pool.wait_idle(DEADLINE)
        assert first == [] and [r["value"] for r in second] == [b"hi"]
        # Once finished, its recorded reply answers (sent again), and it does not run again.
        asked["calls"] = [["p/1.1", "essa/inbox/first", "ns"]]
        assert executor.find(elsewhere)["finished"] == []
        assert executor.find(asked) == {"executor": "x", "running": [], "finished": ["p/1.1"]}
        assert [r["value"] for r in first] == [b"hi"] and executor.stats.calls == 1
        assert first[0]["again"] is True and "again" not in second[0]  # marked: the caller may have the first
        assert executor.find({"scheduler": "s/2", "calls": []})["running"] == []  # malformed: nothing
    finally:
        executor.stop()
        caller.close()
        store.close()


def test_child_ids_are_the_parents_and_a_number_and_stay_short():
    assert child_id("client-1/7", 3) == "client-1/7.3"
    deep = "x" * 300
    assert child_id(deep, 1) == child_id(deep, 1) != child_id(deep, 2)
    assert len(child_id(deep, 1)) < 50


@contextlib.contextmanager
def caller_of_scheduler(scheduler: str = "s1"):
    """A caller on a local transport with one live scheduler; yields it and the calls that scheduler receives."""
    transport = LocalTransport()
    sent: list[dict] = []
    transport.subscribe(topics.scheduler_calls(scheduler), sent.append)
    token = transport.declare_token(topics.live_scheduler(scheduler))
    caller = Caller(transport)
    try:
        yield caller, sent, token
    finally:
        caller.close()


def wait_until(condition) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_call_keeps_the_clock_it_was_first_sent_with():
    with caller_of_scheduler() as (caller, sent, _token):
        before = time.time_ns()
        caller.start(call_request("m", "f", b"", "ns", "run"))
        caller.start(call_request("m", "f", b"", "ns", "run", clock=12345))  # a guest's call: its parent's clock
        wait_until(lambda: len(sent) >= 2)
        assert before <= sent[0]["clock"] <= time.time_ns() and sent[1]["clock"] == 12345
        assert all(check_request(message, "scheduler") is None for message in sent)
        for bad in (-1, 1 << 63, "now", True, 1.5):
            assert "'clock'" in check_request({**sent[0], "clock": bad}, "scheduler")


def test_a_call_waits_for_a_new_scheduler_as_long_as_its_caller_waits():
    with caller_of_scheduler() as (caller, _sent, token):
        resent: list[dict] = []
        caller.transport.subscribe(topics.scheduler_calls("s2"), resent.append)
        brief = caller.start(call_request("m", "f", b"", "ns", "run"), patience=0.2)
        patient = caller.start(call_request("m", "f", b"", "ns", "run"))  # no timeout: Caller.failover_wait
        token.close()  # its scheduler went away, and no other is left
        wait_until(brief.done)
        assert "no other appeared within 0.2 s" in brief.result(0)["message"]
        assert not patient.done()
        _token = caller.transport.declare_token(topics.live_scheduler("s2"))
        wait_until(lambda: resent)
        assert [(m["id"], m["adopt"]) for m in resent] == [(patient.id, True)]


def test_a_callers_next_call_is_stamped_after_the_clock_its_last_reply_ended_at():
    with caller_of_scheduler() as (caller, sent, _token):
        first = caller.start(call_request("m", "f", b"", "ns", "run"))
        ahead = time.time_ns() + 3_600 * 10**9  # a callee whose clock ran an hour ahead (many reads)
        caller.deliver({"id": first.id, "code": 0, "value": b"", "message": "", "clock": ahead})
        caller.start(call_request("m", "f", b"", "ns", "run"))
        wait_until(lambda: len(sent) >= 2)
        assert sent[1]["clock"] >= ahead
