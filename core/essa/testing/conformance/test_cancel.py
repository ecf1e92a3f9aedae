"""Cancellation: a cancelled run or call ends on the executors, whatever its guest is doing.

Calls run without a time limit here, so only the cancel can end them: a guest
that computes in a loop, one that sleeps in WASI ``poll_oneoff``, and one that
waits for a remote call which itself computes. Each test cancels through the
client API and then waits (generous deadline, no timing asserts) until the
executors run nothing and counted the cancelled calls.
"""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from essa.cluster.embedded import EmbeddedRuntime
from essa.errors import RunFailed
from essa.testing.conformance.wat import module
from essa.wasm.limits import Limits

pytestmark = pytest.mark.usefixtures("essa_home")

#: Generous: other work may keep every core of the machine busy.
DEADLINE = 60.0

SPIN_NAME = b"__essa_wrapper__spin"

POLL_ONEOFF = '(import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))'

GUESTS = f"""
  (func (export "__essa_wrapper__spin") (param i32) (loop $l (br $l)))
  (func (export "__essa_wrapper__sleep") (param i32)
    ;; one clock subscription at 0x2000: userdata 7, tag 0 (clock), monotonic, one hour
    (i64.store (i32.const 0x2000) (i64.const 7))
    (i32.store8 (i32.const 0x2008) (i32.const 0))
    (i32.store (i32.const 0x2010) (i32.const 1))
    (i64.store (i32.const 0x2018) (i64.const 3600000000000))
    (drop (call $poll_oneoff (i32.const 0x2000) (i32.const 0x2100) (i32.const 1) (i32.const 0x2200))))
  (func (export "__essa_wrapper__wait_on_spin") (param i32)
    (if (call $essa_call (i32.const 0x600) (i32.const {len(SPIN_NAME)}) (i32.const 0) (i32.const 0) (i32.const 0x400))
      (then unreachable))
    (drop (call $essa_get_result_len (i32.load (i32.const 0x400)) (i32.const 0x404))))
"""


def _module() -> bytes:
    return module(GUESTS, {0x600: SPIN_NAME}, imports=POLL_ONEOFF)


@pytest.fixture
def runtime(essa_engine):
    with EmbeddedRuntime(engine=essa_engine, store="memory", executors=2, limits=Limits(time_limit=None)) as rt:
        yield rt


def _running(runtime) -> int:
    return sum(e.status()["running"] for e in runtime.executors)


def _cancelled(runtime) -> int:
    return sum(e.stats.cancelled for e in runtime.executors)


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE:g} s: {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("function, calls", [("spin", 1), ("sleep", 1), ("wait_on_spin", 2)])
def test_a_cancelled_call_ends_on_the_executors(runtime, function, calls):
    name = runtime.client.publish(_module())
    handle = runtime.client.start_call(name, f"__essa_wrapper__{function}", b"")
    _wait_until(lambda: _running(runtime) == calls, f"{calls} calls running")
    assert handle.cancel("stopped by the test")
    assert handle.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        handle.result(0)
    _wait_until(lambda: _running(runtime) == 0 and _cancelled(runtime) == calls, "the guests ended as cancelled")


def test_a_run_that_is_not_answered_in_time_is_cancelled(runtime):
    name = runtime.client.publish(_module())
    with pytest.raises(RunFailed, match=r"no answer within 0.5 s"):
        runtime.client.call(name, "__essa_wrapper__spin", b"", timeout=0.5)
    _wait_until(lambda: _running(runtime) == 0 and _cancelled(runtime) == 1, "the guest ended as cancelled")


def test_cancelling_an_ended_call_changes_nothing(runtime):
    name = runtime.client.publish(module())
    handle = runtime.client.start_call(name, "__essa_wrapper__echo", b"hi")
    assert handle.result(DEADLINE).value == b"hi"
    assert not handle.cancel()
    assert _cancelled(runtime) == 0


def test_the_executors_serve_calls_after_a_cancel(runtime):
    name = runtime.client.publish(_module())
    handle = runtime.client.start_call(name, "__essa_wrapper__wait_on_spin", b"")
    _wait_until(lambda: _running(runtime) == 2, "2 calls running")
    handle.cancel()
    _wait_until(lambda: _running(runtime) == 0, "the guests ended")
    assert runtime.client.call(name, "__essa_wrapper__echo", b"again", timeout=DEADLINE).value == b"again"
