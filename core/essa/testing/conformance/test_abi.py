"""Every host function and every error code of the guest ABI, through a real engine.

Each test builds a WAT module, runs it on an embedded runtime (real engine,
real scheduler and executors, the built-in memory store) and checks the codes
the host returned and the bytes it wrote into guest memory.
"""

from __future__ import annotations

import struct

import pytest

from essa.state.bincode import encode_lattice
from essa.state.lattice import LwwLattice, SetLattice
from essa.testing.conformance.support import Output
from essa.testing.conformance.wat import (
    ARGS_LEN,
    DATA,
    PAGE,
    SCRATCH,
    call,
    driver_module,
    load,
    parse_drive_result,
)
from essa.wasm.abi import EssaResult

pytestmark = pytest.mark.usefixtures("essa_home")

R = EssaResult
ECHO = b"__essa_wrapper__echo"


@pytest.fixture
def runtime(essa_engine):
    from essa.cluster.embedded import EmbeddedRuntime

    with EmbeddedRuntime(engine=essa_engine, store="memory", executors=2) as rt:
        yield rt


def drive(runtime, calls, data=None, args=b"", namespace="test", output=None):
    module = runtime.client.publish(driver_module(calls, data))
    outcome = runtime.client.call(module, "__essa_wrapper__drive", args, namespace=namespace, output=output)
    assert outcome.code == R.Ok, outcome.message
    return parse_drive_result(outcome.value, len(calls))


def drive_fails(runtime, calls, data=None, args=b""):
    """Run a driver expected to trap; return the caller-visible message and warnings."""
    module = runtime.client.publish(driver_module(calls, data))
    output = Output()
    outcome = runtime.client.call(module, "__essa_wrapper__drive", args, output=output)
    assert outcome.code == R.UnknownError
    return outcome.message, output.stderr


# -- essa_get_args / essa_set_result ------------------------------------------------


def test_get_args_copies_the_arguments(runtime):
    codes, scratch = drive(runtime, [call("essa_get_args", SCRATCH, ARGS_LEN)], args=b"abcdef")
    assert codes == [R.Ok]
    assert scratch[:7] == b"abcdef\0"


def test_get_args_buffer_too_small_writes_nothing(runtime):
    codes, scratch = drive(runtime, [call("essa_get_args", SCRATCH, 5)], args=b"abcdef")
    assert codes == [R.BufferTooSmall]
    assert scratch[:6] == bytes(6)


def test_get_args_with_empty_arguments(runtime):
    codes, _ = drive(runtime, [call("essa_get_args", SCRATCH, 0)])
    assert codes == [R.Ok]


def test_set_result_is_what_the_caller_gets(runtime):
    module = runtime.client.publish(driver_module([]))
    outcome = runtime.client.call(module, "__essa_wrapper__echo", b"\x00\xffpayload")
    assert (outcome.code, outcome.value) == (R.Ok, b"\x00\xffpayload")


def test_function_without_set_result_gives_no_result(runtime):
    module = runtime.client.publish(driver_module([]))
    outcome = runtime.client.call(module, "__essa_wrapper__no_result", b"")
    assert outcome.code == R.NoResult


# -- essa_call / essa_get_result_len / essa_get_result ------------------------------


def _start_call(name: bytes, args: bytes = b"ping"):
    data = {DATA: name, DATA + 0x100: args}
    return data, call("essa_call", DATA, len(name), DATA + 0x100, len(args), SCRATCH)


def test_remote_call_round_trip(runtime):
    data, start = _start_call(ECHO, b"ping")
    handle = load(SCRATCH)
    codes, scratch = drive(
        runtime,
        [
            start,
            call("essa_get_result_len", handle, SCRATCH + 4),
            call("essa_get_result", handle, SCRATCH + 16, 4, SCRATCH + 8),
        ],
        data,
    )
    assert codes == [R.Ok, R.Ok, R.Ok]
    handle_value, length, written = struct.unpack_from("<III", scratch)
    assert handle_value == 1  # handles start at 1, like essa-rs
    assert (length, written) == (4, 4)
    assert scratch[16:20] == b"ping"


def test_handles_are_distinct_and_results_independent(runtime):
    data = {DATA: ECHO, DATA + 0x100: b"first", DATA + 0x200: b"second"}
    codes, scratch = drive(
        runtime,
        [
            call("essa_call", DATA, len(ECHO), DATA + 0x100, 5, SCRATCH),
            call("essa_call", DATA, len(ECHO), DATA + 0x200, 6, SCRATCH + 4),
            call("essa_get_result", load(SCRATCH + 4), SCRATCH + 32, 16, SCRATCH + 8),
            call("essa_get_result", load(SCRATCH), SCRATCH + 64, 16, SCRATCH + 12),
        ],
        data,
    )
    assert codes == [R.Ok] * 4
    h1, h2, n2, n1 = struct.unpack_from("<IIII", scratch)
    assert h1 != h2
    assert scratch[32 : 32 + n2] == b"second" and scratch[64 : 64 + n1] == b"first"


def test_call_of_missing_function_is_no_such_function(runtime):
    data, start = _start_call(b"__essa_wrapper__nope")
    codes, scratch = drive(runtime, [start], data)
    assert codes == [R.NoSuchFunction]
    assert scratch[:4] == bytes(4)  # no handle written


def test_call_of_a_non_function_export_is_no_such_function(runtime):
    data, start = _start_call(b"memory")
    codes, _ = drive(runtime, [start], data)
    assert codes == [R.NoSuchFunction]


def test_call_of_wrong_signature_is_invalid_function_signature(runtime):
    data, start = _start_call(b"__essa_wrapper__two_params")
    codes, _ = drive(runtime, [start], data)
    assert codes == [R.InvalidFunctionSignature]


def test_call_with_non_utf8_name_is_no_such_function(runtime):
    data, start = _start_call(b"\xff\xfe")
    codes, _ = drive(runtime, [start], data)
    assert codes == [R.NoSuchFunction]


def test_unknown_handle_is_not_found(runtime):
    codes, _ = drive(
        runtime,
        [call("essa_get_result_len", 99, SCRATCH), call("essa_get_result", 99, SCRATCH, 16, SCRATCH + 4)],
    )
    assert codes == [R.NotFound, R.NotFound]


def test_get_result_buffer_too_small_keeps_the_handle_then_forgets_it(runtime):
    data, start = _start_call(ECHO, b"12345678")
    handle = load(SCRATCH)
    codes, scratch = drive(
        runtime,
        [
            start,
            call("essa_get_result", handle, SCRATCH + 16, 7, SCRATCH + 4),
            call("essa_get_result", handle, SCRATCH + 16, 8, SCRATCH + 4),
            call("essa_get_result", handle, SCRATCH + 16, 8, SCRATCH + 4),
            call("essa_get_result_len", handle, SCRATCH + 8),
        ],
        data,
    )
    assert codes == [R.Ok, R.BufferTooSmall, R.Ok, R.NotFound, R.NotFound]
    assert scratch[16:24] == b"12345678"


def test_get_result_len_can_be_asked_twice(runtime):
    data, start = _start_call(ECHO, b"abc")
    handle = load(SCRATCH)
    codes, scratch = drive(
        runtime,
        [start, call("essa_get_result_len", handle, SCRATCH + 4), call("essa_get_result_len", handle, SCRATCH + 8)],
        data,
    )
    assert codes == [R.Ok, R.Ok, R.Ok]
    assert struct.unpack_from("<II", scratch, 4) == (3, 3)


def test_callee_without_result_gives_no_result(runtime):
    data, start = _start_call(b"__essa_wrapper__no_result")
    codes, _ = drive(runtime, [start, call("essa_get_result_len", load(SCRATCH), SCRATCH + 4)], data)
    assert codes == [R.Ok, R.NoResult]


def test_callee_trap_gives_unknown_error_and_tells_the_user(runtime):
    data, start = _start_call(b"__essa_wrapper__trap")
    output = Output()
    codes, _ = drive(
        runtime,
        [start, call("essa_get_result", load(SCRATCH), SCRATCH + 16, 16, SCRATCH + 4)],
        data,
        output=output,
    )
    assert codes == [R.Ok, R.UnknownError]
    assert "remote call of trap trapped" in output.stderr
    assert "unreachable" in output.stderr


def test_callee_exit_gives_unknown_error(runtime):
    data, start = _start_call(b"__essa_wrapper__exits")
    codes, _ = drive(runtime, [start, call("essa_get_result_len", load(SCRATCH), SCRATCH + 4)], data)
    assert codes == [R.Ok, R.UnknownError]


# -- essa_put_lattice / essa_get_lattice_len / essa_get_lattice_data ---------------

KEY = b"some-key"
SET_AB = encode_lattice(SetLattice({b"a", b"b"}))


def _put(value: bytes, key: bytes = KEY):
    return {DATA: key, DATA + 0x100: value}, call("essa_put_lattice", DATA, len(key), DATA + 0x100, len(value))


def test_put_then_get_lattice(runtime):
    data, put = _put(SET_AB)
    codes, scratch = drive(
        runtime,
        [
            put,
            call("essa_get_lattice_len", DATA, len(KEY), SCRATCH),
            call("essa_get_lattice_data", DATA, len(KEY), SCRATCH + 16, 128, SCRATCH + 4),
        ],
        data,
    )
    assert codes == [R.Ok, R.Ok, R.Ok]
    length, written = struct.unpack_from("<II", scratch)
    assert length == written == len(SET_AB)
    assert scratch[16 : 16 + length] == SET_AB


def test_put_merges_instead_of_overwriting(runtime):
    data = {DATA: KEY, DATA + 0x100: SET_AB, DATA + 0x200: encode_lattice(SetLattice({b"c"}))}
    drive(
        runtime,
        [
            call("essa_put_lattice", DATA, len(KEY), DATA + 0x100, len(SET_AB)),
            call("essa_put_lattice", DATA, len(KEY), DATA + 0x200, len(data[DATA + 0x200])),
        ],
        data,
        namespace="merge",
    )
    stored = runtime.store.get("merge/data/some-key")
    assert stored == SetLattice({b"a", b"b", b"c"})


def test_state_is_kept_under_the_namespace(runtime):
    data, put = _put(SET_AB)
    drive(runtime, [put], data, namespace="ns1")
    assert runtime.store.get_bytes("ns1/data/some-key") == SET_AB
    codes, _ = drive(runtime, [call("essa_get_lattice_len", DATA, len(KEY), SCRATCH)], data, namespace="ns2")
    assert codes == [R.NotFound]


def test_get_lattice_of_missing_key_is_not_found(runtime):
    codes, scratch = drive(
        runtime,
        [
            call("essa_get_lattice_len", DATA, 3, SCRATCH),
            call("essa_get_lattice_data", DATA, 3, SCRATCH + 16, 64, SCRATCH + 4),
        ],
        {DATA: b"nah"},
    )
    assert codes == [R.NotFound, R.NotFound]
    assert scratch[:8] == bytes(8)


def test_get_lattice_data_buffer_too_small(runtime):
    data, put = _put(SET_AB)
    codes, scratch = drive(
        runtime,
        [put, call("essa_get_lattice_data", DATA, len(KEY), SCRATCH + 16, len(SET_AB) - 1, SCRATCH)],
        data,
    )
    assert codes == [R.Ok, R.BufferTooSmall]
    assert scratch[16 : 16 + len(SET_AB)] == bytes(len(SET_AB))


@pytest.mark.parametrize(
    "value",
    [
        b"\x01\x00\x00\x00\xff",  # truncated Set
        b"\x09\x00\x00\x00",  # unknown variant
        b"",  # nothing
        b"\x05\x00\x00\x00" + bytes(8),  # a host-side Max lattice: not a guest value
    ],
    ids=["truncated", "unknown-tag", "empty", "host-only-type"],
)
def test_put_of_invalid_value_is_refused_and_changes_nothing(runtime, value):
    data, put = _put(value)
    output = Output()
    codes, _ = drive(runtime, [put], data, namespace="bad", output=output)
    assert codes == [R.UnknownError]
    assert runtime.store.get_bytes("bad/data/some-key") is None
    assert "refused put of key 'some-key'" in output.stderr


def test_put_of_another_lattice_type_is_refused_and_keeps_the_value(runtime):
    lww = encode_lattice(LwwLattice(1, b"x"))
    data = {DATA: KEY, DATA + 0x100: SET_AB, DATA + 0x200: lww}
    output = Output()
    codes, _ = drive(
        runtime,
        [
            call("essa_put_lattice", DATA, len(KEY), DATA + 0x100, len(SET_AB)),
            call("essa_put_lattice", DATA, len(KEY), DATA + 0x200, len(lww)),
        ],
        data,
        namespace="mismatch",
        output=output,
    )
    assert codes == [R.Ok, R.UnknownError]
    assert runtime.store.get_bytes("mismatch/data/some-key") == SET_AB
    assert "Lww" in output.stderr and "Set" in output.stderr


def test_non_utf8_key_is_refused(runtime):
    data, put = _put(SET_AB, key=b"\xc3\x28")
    codes, _ = drive(
        runtime,
        [put, call("essa_get_lattice_len", DATA, 2, SCRATCH)],
        data,
    )
    assert codes == [R.UnknownError, R.UnknownError]


# -- pointers outside guest memory trap the guest, with the function named ----------

OOB = PAGE - 2  # two bytes before the end of the single page


@pytest.mark.parametrize(
    "host_call, data, args",
    [
        (call("essa_get_args", OOB, 16), None, b"0123456789"),
        (call("essa_set_result", OOB, 16), None, b""),
        (call("essa_call", OOB, 16, DATA, 1, SCRATCH), None, b""),
        (call("essa_call", DATA, len(ECHO), DATA, 1, OOB), {DATA: ECHO}, b""),
        (call("essa_put_lattice", OOB, 8, DATA, 4), None, b""),
        (call("essa_get_lattice_len", OOB, 8, SCRATCH), None, b""),
        (call("essa_get_lattice_data", OOB, 8, SCRATCH, 8, SCRATCH), None, b""),
        (call("essa_get_lattice_len", DATA, len(KEY), OOB), "stored", b""),
        (call("essa_get_lattice_data", DATA, len(KEY), OOB, 64, SCRATCH), "stored", b""),
        (call("essa_call", DATA, len(ECHO), DATA, 1, -4), {DATA: ECHO}, b""),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else None,
)
def test_out_of_bounds_pointer_traps_the_guest(runtime, host_call, data, args):
    calls = [host_call]
    if data == "stored":
        data, put = _put(SET_AB)
        calls = [put, host_call]
    message, _ = drive_fails(runtime, calls, data, args)
    assert host_call.name in message
    assert "outside the guest's memory" in message


def test_a_module_without_memory_traps_naming_the_host_function(runtime):
    # The host reads and writes the export named "memory"; a module without one
    # traps at its first host call that touches memory, with a message that says so.
    from essa.testing.conformance.wat import wat2wasm

    wasm = wat2wasm(
        '(module (import "host" "essa_get_args" (func $get (param i32 i32) (result i32)))'
        ' (func (export "__essa_wrapper__f") (param $len i32)'
        '   (drop (call $get (i32.const 0) (local.get $len)))))'
    )
    outcome = runtime.client.call(runtime.client.publish(wasm), "__essa_wrapper__f", b"abc", output=Output())
    assert outcome.code == R.UnknownError
    assert "essa_get_args" in outcome.message and "memory" in outcome.message
    assert "AttributeError" not in outcome.message


def test_out_of_bounds_result_pointer_traps_the_waiting_guest(runtime):
    data, start = _start_call(ECHO, b"ping")
    message, _ = drive_fails(runtime, [start, call("essa_get_result_len", load(SCRATCH), OOB)], data)
    assert "essa_get_result_len" in message and "outside" in message


def test_a_trapped_guest_does_not_harm_the_executor(runtime):
    message, _ = drive_fails(runtime, [call("essa_set_result", OOB, 16)])
    assert message
    module = runtime.client.publish(driver_module([]))
    assert runtime.client.call(module, "__essa_wrapper__echo", b"still fine").value == b"still fine"
