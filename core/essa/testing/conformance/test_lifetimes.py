"""Nothing a call creates outlives it: an engine serves thousands of calls with flat resources.

Each test warms up, takes a sample of the process's memory mappings, open
file descriptors and threads (:mod:`essa.testing.resources`), serves
:data:`CALLS` more calls, and asserts that none of the counts grew with the
number of calls. A leak of one mapping, descriptor or thread per call shows
up as thousands; the slack only absorbs the allocator and the interpreter
settling. Counts, not times: the tests pass on a busy machine.
"""

from __future__ import annotations

import gc
import struct
import time

import pytest

from essa.cluster.embedded import EmbeddedRuntime
from essa.cluster.pool import WorkPool
from essa.testing.conformance.support import Output
from essa.testing.conformance.test_runtime import FAN, FAN_NAME, PRINT_HELLO
from essa.testing.conformance.wat import module
from essa.testing.resources import Resources, python_threads, sample
from essa.wasm.abi import EssaResult

pytestmark = pytest.mark.usefixtures("essa_home")

#: Calls served between the two samples.
CALLS = 5000
WARM_UP = 300
#: Growth allowed for things that settle rather than leak (a leak of one per call is thousands).
SLACK = Resources(mappings=64, fds=4, threads=4, rss=0, rss_anon=0, rss_file=0, vsz=0)

PRINT = f"""
  (func (export "__essa_wrapper__print") (param i32)
{PRINT_HELLO}
    (drop (call $essa_set_result (i32.const 0x600) (i32.const 6))))
"""


@pytest.fixture
def runtime(essa_engine, monkeypatch):
    # Threads started for a burst of blocked waiters end once idle: soon, here.
    monkeypatch.setattr(WorkPool, "idle_timeout", 0.2)
    with EmbeddedRuntime(engine=essa_engine, store="memory", executors=2) as rt:
        yield rt


def _assert_flat(before: Resources, after: Resources, threads_before: list[str]) -> None:
    deadline = time.monotonic() + 60
    while after.threads - before.threads > SLACK.threads and time.monotonic() < deadline:
        time.sleep(0.1)  # extra pool threads of the last burst: they end after idle_timeout
        after = sample()
    grown = {
        name: (getattr(before, name), getattr(after, name))
        for name in ("mappings", "fds", "threads")
        if getattr(after, name) - getattr(before, name) > getattr(SLACK, name)
    }
    assert not grown, (
        f"grew over {CALLS} calls (before, after): {grown}; "
        f"Python threads before {threads_before}, after {python_threads()}"
    )


def _serve(runtime, name: str, count: int, calls: list[tuple[str, bytes, EssaResult]]) -> None:
    for i in range(count):
        function, args, expected = calls[i % len(calls)]
        outcome = runtime.client.call(name, function, args, output=None)
        assert outcome.code == expected, (function, outcome)


def _measure(runtime, name: str, calls: list[tuple[str, bytes, EssaResult]]) -> None:
    _serve(runtime, name, WARM_UP, calls)
    gc.collect()
    before, threads_before = sample(), python_threads()
    _serve(runtime, name, CALLS, calls)
    gc.collect()
    _assert_flat(before, sample(), threads_before)


def test_echo_calls_leave_nothing_behind(runtime):
    name = runtime.client.publish(module())
    _measure(runtime, name, [("__essa_wrapper__echo", b"12345678", EssaResult.Ok)])


def test_calls_that_print_trap_or_exit_leave_nothing_behind(runtime):
    name = runtime.client.publish(module(PRINT, {0x600: b"hello\n", 0x610: b"oops\n"}))
    _measure(runtime, name, [
        ("__essa_wrapper__print", b"", EssaResult.Ok),
        ("__essa_wrapper__trap", b"", EssaResult.UnknownError),
        ("__essa_wrapper__exits", b"", EssaResult.UnknownError),
        ("__essa_wrapper__no_result", b"", EssaResult.NoResult),
    ])


def test_remote_calls_leave_nothing_behind(runtime):
    # fan(0, 4): 7 calls, three levels of guests waiting for remote results.
    name = runtime.client.publish(module(FAN, {0x600: FAN_NAME}))
    calls = [("__essa_wrapper__fan", struct.pack("<II", 0, 4), EssaResult.Ok)]
    _serve(runtime, name, WARM_UP // 7, calls)
    gc.collect()
    before, threads_before = sample(), python_threads()
    _serve(runtime, name, CALLS // 7, calls)
    gc.collect()
    _assert_flat(before, sample(), threads_before)


def test_runs_leave_nothing_behind(runtime):
    name = runtime.client.publish(module(start=PRINT_HELLO, data={0x600: b"hello\n", 0x610: b"oops\n"}))

    def runs(count: int) -> None:
        for _ in range(count):
            assert runtime.client.run(name, output=Output()) == 0

    runs(WARM_UP)
    gc.collect()
    before, threads_before = sample(), python_threads()
    runs(CALLS // 5)
    gc.collect()
    _assert_flat(before, sample(), threads_before)
