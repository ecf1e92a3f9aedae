"""Placement of calls on executors, over the in-process transport."""

from __future__ import annotations

import pytest

from essa import topics
from essa.pool import WorkPool
from essa.scheduler import NoExecutors, Scheduler
from essa.transport.local import LocalTransport


def test_calls_go_to_the_least_loaded_executor():
    transport = LocalTransport()
    pool = WorkPool(1)
    held = []
    for executor in ("a", "b"):
        transport.serve(topics.executor_call(executor), lambda msg, e=executor: held.append(e) or pool.submit(lambda: {"by": e}))
    scheduler = Scheduler(transport)
    scheduler.start()
    scheduler.add_executor("a")
    scheduler.add_executor("b")
    first = transport.request(topics.SCHEDULER_CALL, {})
    second = transport.request(topics.SCHEDULER_CALL, {})
    assert sorted(held) == ["a", "b"]  # the busy one is not picked twice
    assert {first.result(5)["by"], second.result(5)["by"]} == {"a", "b"}
    assert all(e.in_flight == 0 for e in scheduler.executors.values())
    assert sum(e.placed for e in scheduler.executors.values()) == 2


def test_no_executor_is_a_clear_error():
    transport = LocalTransport()
    scheduler = Scheduler(transport)
    scheduler.start()
    with pytest.raises(NoExecutors, match="no executor"):
        transport.request(topics.SCHEDULER_CALL, {})


def test_request_to_an_unserved_topic_is_an_error():
    from essa.errors import EssaError

    with pytest.raises(EssaError, match="nobody serves"):
        LocalTransport().request("essa/nowhere", {})
