"""A call's own realtime clock (Invocation.realtime_ns): the same readings in every execution, past its callees'."""

from __future__ import annotations

import time

from essa.testing.conformance.support import invocation
from essa.wasm.abi import CallOutcome, EssaResult


class Finished:
    def __init__(self, outcome: CallOutcome) -> None:
        self.outcome = outcome

    def wait(self, timeout=None) -> CallOutcome:
        return self.outcome


def test_readings_start_at_the_calls_clock_and_step_a_nanosecond():
    inv = invocation()
    inv.clock = 1_000
    assert [inv.realtime_ns() for _ in range(3)] == [1_000, 1_001, 1_002]
    assert inv.clock_end() == 1_003


def test_the_clock_moves_past_where_a_remote_calls_clock_ended_once_its_result_is_read():
    inv = invocation()
    inv.clock = 1_000
    inv._handles[1] = Finished(CallOutcome(EssaResult.Ok, b"", clock=5_000))
    inv._handles[2] = Finished(CallOutcome(EssaResult.Ok, b"", clock=2_000))  # ended earlier: no move back
    inv._outcome(1)
    assert inv.realtime_ns() == 5_000  # a write after the result is stamped after the callee's writes
    inv._outcome(2)
    assert inv.realtime_ns() == 5_001


def test_without_a_clock_of_its_own_a_call_reads_the_systems():
    inv = invocation()
    inv._handles[1] = Finished(CallOutcome(EssaResult.Ok, b"", clock=5_000))
    inv._outcome(1)
    before = time.time_ns()
    assert before <= inv.realtime_ns() <= time.time_ns() and inv.clock_end() is None
