"""Untrusted guests: limits, isolation, and the nasty-module corpus.

Every nasty guest of :mod:`.nasty` must end with its own error (time, memory
or output limit exceeded, a trap, no result) while a well-behaved call on the
same runtime, at the same time, completes normally; every host function must
survive any pointer and length a guest passes (a code, or a one-line trap of
that guest only).
"""

from __future__ import annotations

import struct
import threading

import pytest

from essa.cluster.embedded import EmbeddedRuntime, open_engine
from essa.errors import GuestExit, LimitExceeded, RunFailed
from essa.testing.conformance.nasty import EXPECTED, LIMITS, nasty_module
from essa.testing.conformance.support import Output, invocation
from essa.testing.conformance.wat import (
    DATA,
    SCRATCH,
    call,
    driver_module,
    load,
    module,
    parse_drive_result,
    wat2wasm,
)
from essa.wasm.abi import EssaResult
from essa.wasm.limits import Limits

pytestmark = pytest.mark.usefixtures("essa_home")

R = EssaResult
ECHO = "__essa_wrapper__echo"
#: How each failing nasty call's reply says it failed (``CallOutcome.kind``).
KINDS = {"spin": "time-limit", "recurse": "trap", "grow": "memory-limit", "big_alloc": "memory-limit",
         "hoard": "time-limit", "flood": "output-limit", "burst": "output-limit", "sleep": "time-limit",
         "big_result": "message-size", "trap": "trap"}


@pytest.fixture
def runtime(essa_engine):
    with EmbeddedRuntime(engine=essa_engine, store="memory", executors=2, limits=LIMITS) as rt:
        yield rt


def check_outcome(name: str, outcome, output: Output) -> None:
    kind, *expected = EXPECTED[name]
    if kind == "code":
        assert outcome.code == R.Ok, outcome.message
        assert struct.unpack("<i", outcome.value) == tuple(expected)
    elif kind == "no-result":
        assert outcome.code == R.NoResult
    else:
        assert outcome.code == R.UnknownError
        message = outcome.message
        assert "\n" not in message and len(message) < 400, message
        for fragment in expected:
            assert fragment in message
        assert outcome.kind == KINDS[name], outcome
        # The caller has the message; the console gets no more than one-line warnings.
        assert all(len(line) < 400 for line in output.stderr.splitlines() if line.startswith("essa: ")), output.stderr


# -- each nasty guest, while a well-behaved one runs ------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED))
def test_a_nasty_call_ends_with_its_error_while_a_good_one_completes(runtime, name):
    wasm = runtime.client.publish(nasty_module())
    output = Output()
    ended: dict = {}

    def nasty() -> None:
        ended["outcome"] = runtime.client.call(wasm, f"__essa_wrapper__{name}", b"", output=output, timeout=60)

    thread = threading.Thread(target=nasty)
    thread.start()
    served = 0
    while thread.is_alive() or not served:
        args = b"well-behaved %d" % served
        echo = runtime.client.call(wasm, ECHO, args, timeout=60)
        assert (echo.code, echo.value) == (R.Ok, args), echo.message
        served += 1
    thread.join()
    check_outcome(name, ended["outcome"], output)
    if name in ("flood", "burst"):
        assert output.stream(1) == (b"\0" * LIMITS.max_output_bytes), "output stops exactly at the limit"
    assert runtime.client.call(wasm, ECHO, b"after", timeout=60).value == b"after"


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e[0] != "code"])
def test_a_nasty_remote_callee_fails_only_the_call_with_a_warning(runtime, name):
    wasm = runtime.client.publish(nasty_module())
    output = Output()
    outcome = runtime.client.call(wasm, "__essa_wrapper__call", f"__essa_wrapper__{name}".encode(), output=output,
                                  timeout=60)
    assert outcome.code == R.Ok, outcome.message
    started, waited = struct.unpack("<ii", outcome.value)
    assert started == R.Ok
    if EXPECTED[name][0] == "no-result":
        assert waited == R.NoResult
        return
    assert waited == R.UnknownError
    # The run's console has one warning line naming the callee and what happened.
    warning = next(line for line in output.stderr.splitlines() if f" {name}" in line)
    assert warning.startswith("essa: ") and len(warning) < 400
    for fragment in EXPECTED[name][1:]:
        if "returned no result" not in fragment:  # that part is the caller's message only
            assert fragment in warning


def test_message_size_limit_refuses_oversized_arguments_from_the_client(runtime):
    wasm = runtime.client.publish(nasty_module())
    outcome = runtime.client.call(wasm, "__essa_wrapper__no_result", bytes(LIMITS.max_message_bytes + 1))
    assert outcome.code == R.UnknownError and "message size limit (1 MiB)" in outcome.message
    assert runtime.client.call(wasm, "__essa_wrapper__no_result", bytes(LIMITS.max_message_bytes)).code == R.NoResult


def test_a_state_key_over_the_message_size_limit_is_refused(runtime):
    """A key is at most the message size limit: longer ones get UnknownError (unread) and one warning line."""
    n = LIMITS.max_message_bytes
    body = f"""
  (func (export "__essa_wrapper__keys") (param i32)
    (i32.store (i32.const 0) (call $essa_put_lattice (i32.const 0x10000) (i32.const {n + 1}) (i32.const 0x100) (i32.const 21)))
    (i32.store (i32.const 4) (call $essa_get_lattice_len (i32.const 0x10000) (i32.const {n + 1}) (i32.const 0x40)))
    (i32.store (i32.const 8) (call $essa_put_lattice (i32.const 0x10000) (i32.const {n}) (i32.const 0x100) (i32.const 21)))
    (i32.store (i32.const 12) (call $essa_get_lattice_len (i32.const 0x10000) (i32.const {n}) (i32.const 0x40)))
    (drop (call $essa_set_result (i32.const 0) (i32.const 16))))"""
    one_element_set = bytes.fromhex("01000000" "0100000000000000" "0100000000000000") + b"v"
    wasm = runtime.client.publish(module(body, data={0x100: one_element_set}, memory="18"))
    output = Output()
    outcome = runtime.client.call(wasm, "__essa_wrapper__keys", b"", namespace="big-keys", output=output)
    assert outcome.code == R.Ok, outcome.message
    assert struct.unpack("<4i", outcome.value) == (R.UnknownError, R.UnknownError, R.Ok, R.Ok)
    assert f"refused a state key of {n + 1} bytes: message size limit exceeded (1 MiB)" in output.stderr
    assert runtime.store.keys("big-keys/data/") == ["big-keys/data/" + "\0" * n]


# -- main functions: the run fails with the limit ----------------------------------------


@pytest.mark.parametrize(
    "start, expected",
    [
        ("(loop $l (br $l))", "the module's _start: time limit exceeded (0.5 s)"),
        ("(if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1)) (then unreachable))",
         "the module's _start: memory limit exceeded (4 MiB)"),
    ],
    ids=["time", "memory"],
)
def test_a_run_over_a_limit_fails_in_one_line(runtime, start, expected):
    wasm = runtime.client.publish(module(start=start))
    with pytest.raises(RunFailed) as info:
        runtime.client.run(wasm, output=Output())
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)
    assert info.value.exit_status == 1


def test_an_exit_after_a_refused_grow_reports_the_memory_limit_and_keeps_the_status(runtime):
    start = "(if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1)) (then (call $proc_exit (i32.const 3))))"
    wasm = runtime.client.publish(module(start=start))
    with pytest.raises(RunFailed, match="memory limit exceeded") as info:
        runtime.client.run(wasm, output=Output())
    assert info.value.exit_status == 3


def test_a_refused_grow_of_a_memory_the_module_does_not_export_is_reported(essa_engine):
    wat = """(module (memory 63)
      (func (export "__essa_wrapper__grow") (param i32)
        (if (i32.eq (memory.grow (i32.const 2)) (i32.const -1)) (then unreachable))))"""
    engine = open_engine(essa_engine, LIMITS)  # 4 MiB: 64 pages
    program = engine.prepare(engine.compile(wat2wasm(wat)))
    with pytest.raises(LimitExceeded, match=r"memory limit exceeded \(4 MiB\)"):
        program.run(invocation(), "__essa_wrapper__grow", 0)


def test_a_refused_grow_the_guest_handles_is_no_error(runtime):
    body = """
  (func (export "__essa_wrapper__careful") (param i32)
    (i32.store (i32.const 0x7000) (memory.grow (i32.const 1000)))
    (drop (call $essa_set_result (i32.const 0x7000) (i32.const 4))))"""
    wasm = runtime.client.publish(module(body))
    outcome = runtime.client.call(wasm, "__essa_wrapper__careful", b"")
    assert (outcome.code, outcome.value) == (R.Ok, struct.pack("<i", -1))


# -- the engine itself -------------------------------------------------------------------


@pytest.fixture
def limited(essa_engine):
    engine = open_engine(essa_engine, LIMITS)
    return engine.prepare(engine.compile(nasty_module()))


@pytest.mark.parametrize(
    "name, limit",
    [("spin", "time"), ("sleep", "time"), ("hoard", "time"), ("grow", "memory"), ("big_alloc", "memory"),
     ("flood", "output"), ("burst", "output")],
)
def test_the_engine_raises_limit_exceeded_and_recovers(limited, name, limit):
    inv = invocation()
    with pytest.raises(LimitExceeded) as info:
        limited.run(inv, f"__essa_wrapper__{name}", 0)
    assert str(info.value).startswith(LIMITS.exceeded(limit))
    assert inv.exceeded == LIMITS.exceeded(limit) or (limit == "memory" and inv.memory_refused)
    echo = invocation(b"again")
    limited.run(echo, ECHO, 5)
    assert echo.result == b"again"


def test_no_time_limit_lets_a_long_call_finish(essa_engine):
    engine = open_engine(essa_engine, Limits(time_limit=None))
    body = """
  (func (export "__essa_wrapper__count") (param i32) (local $n i32)
    (local.set $n (i32.const 3000000))
    (loop $l (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $l (local.get $n)))
    (drop (call $essa_set_result (i32.const 0) (i32.const 4))))"""
    inv = invocation()
    engine.prepare(engine.compile(module(body))).run(inv, "__essa_wrapper__count", 0)
    assert inv.result == bytes(4)


def test_a_spinning_call_does_not_stop_other_threads(limited):
    """Engine level: one thread spins until its limit while another keeps calling."""
    errors: list[BaseException] = []

    def spin() -> None:
        try:
            limited.run(invocation(), "__essa_wrapper__spin", 0)
        except LimitExceeded:
            pass
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=spin)
    thread.start()
    calls = 0
    while thread.is_alive() or not calls:
        inv = invocation(b"%d" % calls)
        limited.run(inv, ECHO, len(inv.args))
        assert inv.result == inv.args
        calls += 1
    thread.join()
    assert not errors, errors


def test_exit_is_still_an_exit_under_limits(limited):
    with pytest.raises(GuestExit):
        limited.run(invocation(), "__essa_wrapper__exits", 0)


# -- pointers and lengths: a code or a one-line trap of that guest only ------------------

KEY = b"k"
LATTICE = b"\x01\x00\x00\x00" + struct.pack("<Q", 1) + struct.pack("<Q", 1) + b"x"  # Set {b"x"}

#: Values no valid pointer or length of a one-page memory has.
BAD = {
    "negative": -1,
    "min-i32": -0x80000000,
    "wraps-past-4GiB": 0xFFFFFFF0 - (1 << 32),
    "past-the-end": 0x10000,
    "huge": 0x7FFFFFFF,
}

#: Each host function with good arguments; the slots holding pointers, then lengths.
HOST_CALLS = {
    "essa_get_args": ((SCRATCH, 64), (0,), (1,)),
    "essa_set_result": ((SCRATCH, 8), (0,), (1,)),
    "essa_call": ((DATA, len(ECHO), DATA, 4, SCRATCH), (0, 2, 4), (1, 3)),
    "essa_get_result_len": ((load(SCRATCH), SCRATCH + 4), (1,), ()),
    "essa_get_result": ((load(SCRATCH), SCRATCH + 16, 64, SCRATCH + 4), (1, 3), (2,)),
    "essa_put_lattice": ((DATA + 0x100, len(KEY), DATA + 0x200, len(LATTICE)), (0, 2), (1, 3)),
    "essa_get_lattice_len": ((DATA + 0x100, len(KEY), SCRATCH), (0, 2), (1,)),
    "essa_get_lattice_data": ((DATA + 0x100, len(KEY), SCRATCH + 16, 64, SCRATCH), (0, 2, 4), (1, 3)),
}
_SETUP = [call("essa_call", DATA, len(ECHO), DATA, 4, SCRATCH), call("essa_put_lattice", DATA + 0x100, len(KEY),
                                                                     DATA + 0x200, len(LATTICE))]
_SETUP_DATA = {DATA: ECHO.encode(), DATA + 0x100: KEY, DATA + 0x200: LATTICE}


def _cases():
    for name, (good, pointers, lengths) in HOST_CALLS.items():
        for slot in pointers + lengths:
            for bad_name, bad in BAD.items():
                yield pytest.param(name, slot, slot in pointers, bad, id=f"{name}-arg{slot}-{bad_name}")


@pytest.mark.parametrize("name, slot, is_pointer, bad", list(_cases()))
def test_a_bad_pointer_or_length_gives_a_code_or_traps_that_guest_only(runtime, name, slot, is_pointer, bad):
    good = list(HOST_CALLS[name][0])
    good[slot] = bad
    calls = [*_SETUP, call(name, *good)]
    wasm = runtime.client.publish(driver_module(calls, _SETUP_DATA))
    output = Output()
    outcome = runtime.client.call(wasm, "__essa_wrapper__drive", b"0123456789", namespace="bad", output=output)
    if outcome.code == R.Ok:
        assert not is_pointer, f"{name} used a bad pointer without trapping"
        codes, _ = parse_drive_result(outcome.value, len(calls))
        assert codes[-1] in {int(c) for c in R}
    else:
        assert outcome.code == R.UnknownError
        message = outcome.message
        assert "\n" not in message and name in message and "outside the guest's memory" in message, message
    assert all(len(line) < 400 for line in output.stderr.splitlines())
    assert runtime.client.call(wasm, ECHO, b"still serving").value == b"still serving"


def test_a_guest_never_reads_another_instances_memory(runtime):
    body = """
  (func (export "__essa_wrapper__secret") (param i32)
    (i32.store (i32.const 0x7000) (i32.const 0x5ec2e7))
    (loop $l (br $l)))
  (func (export "__essa_wrapper__dump") (param i32)
    (drop (call $essa_set_result (i32.const 0) (i32.const 0x10000))))"""
    wasm = runtime.client.publish(module(body))
    thread = threading.Thread(target=lambda: runtime.client.call(wasm, "__essa_wrapper__secret", b"", timeout=60))
    thread.start()
    try:
        dump = runtime.client.call(wasm, "__essa_wrapper__dump", b"")
        assert dump.code == R.Ok and len(dump.value) == 0x10000
        assert struct.pack("<I", 0x5EC2E7) not in dump.value
    finally:
        thread.join()


def test_random_host_call_arguments_never_harm_the_executor(runtime):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    from essa.testing.conformance.wat import HOST_IMPORTS, fuzz_module

    wasm = runtime.client.publish(fuzz_module())
    i32 = st.one_of(
        st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1),
        st.sampled_from([0, 1, 4, 8, 64, 0xFFF0, 0x10000, 0x7FFFFFFF, -1, -4, -(1 << 31), 0x7000, DATA]),
    )
    names = list(HOST_IMPORTS)
    valid = {int(c) for c in R}

    @hypothesis.settings(max_examples=150, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(st.integers(min_value=0, max_value=len(names) - 1), st.lists(i32, min_size=5, max_size=5))
    def check(selector, args):
        output = Output()
        outcome = runtime.client.call(wasm, "__essa_wrapper__fuzz", struct.pack("<6i", selector, *args),
                                      namespace="fuzz", output=output, timeout=60)
        if outcome.code == R.Ok:
            assert struct.unpack("<i", outcome.value)[0] in valid
        else:
            assert outcome.code == R.UnknownError, outcome
            assert "\n" not in outcome.message and names[selector] in outcome.message, outcome.message
        assert all(line.startswith("essa: ") and len(line) < 400 for line in output.stderr.splitlines())

    check()
    assert runtime.client.call(wasm, ECHO, b"still serving").value == b"still serving"
