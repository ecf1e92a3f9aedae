"""The engine interface itself: compile, artifacts, linking, threads, limits, traps, WASI.

These tests drive the engine directly (``compile`` / ``serialize`` /
``deserialize`` / ``prepare`` / ``Program.run``) with a standalone host, so a
failure points at the engine adapter, not at the runtime around it.
"""

from __future__ import annotations

import struct
import threading
import time

import pytest

from essa.errors import GuestExit, GuestTrap, ModuleError
from essa.testing.conformance.support import invocation
from essa.testing.conformance.wat import module, wat2wasm
from essa.wasm.limits import Limits

pytestmark = pytest.mark.usefixtures("essa_home")

PAGE = 0x10000
ECHO = "__essa_wrapper__echo"


def open_engine(name: str, limits: Limits | None = None):
    from essa.cluster.embedded import open_engine

    return open_engine(name, limits)


@pytest.fixture
def engine(essa_engine):
    return open_engine(essa_engine)


def prepared(engine, wasm: bytes):
    return engine.prepare(engine.compile(wasm))


def call(program, export: str, args: bytes = b""):
    """Run ``export`` with ``args``; return the invocation (result, output, ...)."""
    inv = invocation(args)
    program.run(inv, export, len(args))
    return inv


def result_codes(inv, count: int) -> list[int]:
    return list(struct.unpack_from(f"<{count}i", inv.result))


# -- identity and artifacts ----------------------------------------------------------


def test_version_and_artifact_tag_name_the_engine(engine, essa_engine):
    assert isinstance(engine.version, str) and engine.version
    assert engine.artifact_tag.startswith(f"{essa_engine}-{engine.version}")


def test_artifact_round_trip_runs_the_same(engine):
    compiled = engine.compile(module())
    artifact = engine.serialize(compiled)
    assert isinstance(artifact, bytes) and artifact
    program = engine.prepare(engine.deserialize(artifact))
    assert call(program, ECHO, b"from an artifact").result == b"from an artifact"
    assert program.info == engine.prepare(compiled).info


def test_artifact_survives_a_new_engine_instance(essa_engine):
    first = open_engine(essa_engine)
    artifact = first.serialize(first.compile(module()))
    second = open_engine(essa_engine)
    program = second.prepare(second.deserialize(artifact))
    assert call(program, ECHO, b"x").result == b"x"


@pytest.mark.parametrize("junk", [b"", b"garbage", b"\0asm\x01\0\0\0"], ids=["empty", "text", "wasm-not-artifact"])
def test_unusable_artifact_is_a_module_error(engine, junk):
    with pytest.raises(ModuleError):
        engine.deserialize(junk)


@pytest.mark.parametrize(
    "wasm", [b"\0asm\x01\0\0\0\xff\xff", b"\0asm\x02\0\0\0", b"\0asm\x01\0\0\0\x01\x02"],
    ids=["bad-section", "bad-version", "truncated"],
)
def test_invalid_module_is_a_module_error(engine, wasm):
    with pytest.raises(ModuleError, match="not a valid Wasm module"):
        engine.compile(wasm)


# -- module facts and linking --------------------------------------------------------


def test_module_info_lists_exported_functions_with_their_types(engine):
    info = prepared(engine, module()).info
    assert info.functions[ECHO] == (("i32",), ())
    assert info.functions["__essa_wrapper__two_params"] == (("i32", "i32"), ())
    assert info.has_start
    assert "memory" not in info.functions
    assert info.callable_status(ECHO) == "ok"
    assert info.callable_status("__essa_wrapper__two_params") == "bad-signature"
    assert info.callable_status("memory") == "missing"


@pytest.mark.parametrize(
    "imports, named",
    [
        ('(import "env" "mystery" (func))', "mystery"),
        ('(import "host" "essa_nope" (func (param i32) (result i32)))', "essa_nope"),
        ('(import "host" "essa_call" (func (param i32) (result i32)))', "essa_call"),
        ('(import "wasi_snapshot_preview1" "fd_write" (func (param i32)))', "fd_write"),
        ('(import "wasi_snapshot_preview1" "no_such_call" (func))', "no_such_call"),
        ('(import "env" "memory" (memory 1))', "memory"),
    ],
    ids=["unknown-module", "unknown-host-function", "wrong-host-type", "wrong-wasi-type", "unknown-wasi", "memory"],
)
def test_imports_essa_does_not_provide_are_refused_by_name(engine, imports, named):
    wasm = wat2wasm(f'(module {imports} (func (export "_start")))')
    with pytest.raises(ModuleError, match=named):
        prepared(engine, wasm)


def test_every_host_function_links(engine):
    program = prepared(engine, module())  # imports all eight host functions, fd_write, proc_exit
    assert call(program, ECHO, b"linked").result == b"linked"


# -- calls ---------------------------------------------------------------------------

COUNTER = """
  (func (export "__essa_wrapper__count") (param i32)
    (i32.store (i32.const 0x2000) (i32.add (i32.load (i32.const 0x2000)) (i32.const 1)))
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (i32.store (i32.const 0x2004) (global.get $g))
    (drop (call $essa_set_result (i32.const 0x2000) (i32.const 8))))
  (global $g (mut i32) (i32.const 0))
"""


def test_every_call_gets_a_fresh_instance(engine):
    program = prepared(engine, module(COUNTER))
    for _ in range(3):
        assert result_codes(call(program, "__essa_wrapper__count"), 2) == [1, 1]


def test_a_program_runs_on_other_threads_and_concurrently(engine):
    program = prepared(engine, module())
    results: dict[tuple[int, int], bytes | None] = {}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(20):
                results[t, i] = call(program, ECHO, f"{t}:{i}".encode()).result
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert results == {(t, i): f"{t}:{i}".encode() for t in range(4) for i in range(20)}
    assert call(program, ECHO, b"main again").result == b"main again"


def test_start_runs_without_an_argument(engine):
    program = prepared(engine, module(start="(drop (call $essa_set_result (i32.const 0) (i32.const 0)))"))
    inv = invocation()
    program.run(inv, "_start")
    assert inv.result == b""


def test_invocation_memory_is_attached_only_while_running(engine):
    program = prepared(engine, module())
    inv = call(program, ECHO, b"abc")
    assert inv.memory is None and inv.result == b"abc"


# -- exit and traps ------------------------------------------------------------------

EXITS = """
  (func (export "__essa_wrapper__exit0") (param i32)
    (drop (call $essa_set_result (i32.const 0) (i32.const 1)))
    (call $proc_exit (i32.const 0))
    unreachable)
"""


def test_proc_exit_with_status_is_guest_exit(engine):
    with pytest.raises(GuestExit) as info:
        call(prepared(engine, module()), "__essa_wrapper__exits")
    assert info.value.status == 3


def test_proc_exit_zero_returns_normally(engine):
    inv = call(prepared(engine, module(EXITS)), "__essa_wrapper__exit0")
    assert inv.result == b"\0"


TRAPS = """
  (func $recurse (export "__essa_wrapper__stack") (param i32) (call $recurse (local.get 0)))
  (func (export "__essa_wrapper__divide") (param i32) (drop (i32.div_s (i32.const 1) (local.get 0))))
  (func (export "__essa_wrapper__load") (param i32) (drop (i32.load (i32.const 0x7ffffff0))))
  (func (export "__essa_wrapper__overflow") (param i32) (drop (i32.trunc_f32_s (f32.const 1e30))))
"""


@pytest.mark.parametrize(
    "export, reason",
    [
        ("__essa_wrapper__trap", "unreachable"),
        ("__essa_wrapper__divide", "divide by zero"),
        ("__essa_wrapper__load", "out of bounds"),
        ("__essa_wrapper__stack", "stack"),
        ("__essa_wrapper__overflow", "overflow"),
    ],
)
def test_a_trap_is_one_line_with_its_reason(engine, export, reason):
    program = prepared(engine, module(TRAPS))
    with pytest.raises(GuestTrap) as info:
        call(program, export)
    message = str(info.value)
    assert reason in message
    assert "\n" not in message and len(message) < 400


def test_an_engine_recovers_after_a_trap(engine):
    program = prepared(engine, module(TRAPS))
    for _ in range(3):
        with pytest.raises(GuestTrap):
            call(program, "__essa_wrapper__stack")
        assert call(program, ECHO, b"fine").result == b"fine"


def test_a_host_function_fault_is_the_trap_message(engine):
    body = """
  (func (export "__essa_wrapper__bad") (param i32)
    (drop (call $essa_set_result (i32.const 0xfffe) (i32.const 16))))
"""
    with pytest.raises(GuestTrap, match="essa_set_result.*outside the guest's memory"):
        call(prepared(engine, module(body)), "__essa_wrapper__bad")


# -- memory limit --------------------------------------------------------------------

GROW = """
  (func (export "__essa_wrapper__grow") (param i32)
    (i32.store (i32.const 0x2000) (memory.grow (i32.const 1)))
    (i32.store (i32.const 0x2004) (memory.grow (i32.const 1)))
    (i32.store (i32.const 0x2008) (memory.size))
    (drop (call $essa_set_result (i32.const 0x2000) (i32.const 12))))
"""


def limited(essa_engine, pages: int):
    return open_engine(essa_engine, Limits(max_memory_bytes=pages * PAGE))


@pytest.mark.parametrize("memory", ["1", "1 10", "1 65536"], ids=["no-maximum", "larger-maximum", "4GiB-maximum"])
def test_memory_cannot_grow_past_the_limit(essa_engine, memory):
    engine = limited(essa_engine, 2)
    program = prepared(engine, module(GROW, memory=memory))
    assert result_codes(call(program, "__essa_wrapper__grow"), 3) == [1, -1, 2]


def test_a_smaller_declared_maximum_still_holds(essa_engine):
    engine = limited(essa_engine, 4)
    program = prepared(engine, module(GROW, memory="1 2"))
    assert result_codes(call(program, "__essa_wrapper__grow"), 3) == [1, -1, 2]


def test_memory_can_grow_up_to_the_default_limit(engine):
    program = prepared(engine, module(GROW))
    assert result_codes(call(program, "__essa_wrapper__grow"), 3) == [1, 2, 3]


def test_a_memory_larger_than_the_limit_fails_the_call(essa_engine):
    engine = limited(essa_engine, 2)
    with pytest.raises((GuestTrap, ModuleError), match="memory"):
        call(prepared(engine, module(memory="3")), ECHO, b"x")


GROWN = """
  (func (export "__essa_wrapper__grown") (param $len i32)
    (drop (memory.grow (i32.const 1)))
    (if (call $essa_get_args (i32.const 0x10010) (local.get $len)) (then unreachable))
    (drop (call $essa_set_result (i32.const 0x10010) (local.get $len))))
"""


def test_host_functions_reach_memory_grown_during_the_call(engine):
    program = prepared(engine, module(GROWN))
    assert call(program, "__essa_wrapper__grown", b"in the second page").result == b"in the second page"


def test_the_limit_holds_for_artifacts_too(essa_engine):
    engine = limited(essa_engine, 2)
    artifact = engine.serialize(engine.compile(module(GROW)))
    program = engine.prepare(engine.deserialize(artifact))
    assert result_codes(call(program, "__essa_wrapper__grow"), 3) == [1, -1, 2]


# -- WASI ----------------------------------------------------------------------------

PRINT = """
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (param $nwritten i32)
    (i32.store (i32.const 0x100) (local.get $ptr))
    (i32.store (i32.const 0x104) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0x100) (i32.const 1) (local.get $nwritten))))
  (func (export "__essa_wrapper__print") (param i32)
    (call $write (i32.const 1) (i32.const 0x600) (i32.const 5) (i32.const 0x200))
    (call $write (i32.const 2) (i32.const 0x610) (i32.const 4) (i32.const 0x204))
    (call $write (i32.const 1) (i32.const 0x620) (i32.const 3) (i32.const 0x208))
    (drop (call $essa_set_result (i32.const 0x200) (i32.const 12))))
"""
PRINT_DATA = {0x600: b"abcd\n", 0x610: b"err\n", 0x620: b"ef\n"}


def test_guest_output_reaches_the_invocation_in_order(engine):
    inv = call(prepared(engine, module(PRINT, PRINT_DATA)), "__essa_wrapper__print")
    assert struct.unpack("<3I", inv.result) == (5, 4, 3)  # bytes written, per fd_write
    joined: list[tuple[int, bytes]] = []
    for stream, data in inv.output.chunks:  # an engine may split or join writes to one stream
        if joined and joined[-1][0] == stream:
            joined[-1] = (stream, joined[-1][1] + data)
        else:
            joined.append((stream, data))
    assert joined == [(1, b"abcd\n"), (2, b"err\n"), (1, b"ef\n")]


WASI_IMPORTS = [
    ("fd_fdstat_get", "(param i32 i32) (result i32)"),
    ("args_sizes_get", "(param i32 i32) (result i32)"),
    ("environ_sizes_get", "(param i32 i32) (result i32)"),
    ("fd_prestat_get", "(param i32 i32) (result i32)"),
    ("fd_read", "(param i32 i32 i32 i32) (result i32)"),
    ("path_open", "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)"),
    ("clock_time_get", "(param i32 i64 i32) (result i32)"),
    ("random_get", "(param i32 i32) (result i32)"),
    ("fd_close", "(param i32) (result i32)"),
    ("poll_oneoff", "(param i32 i32 i32 i32) (result i32)"),
]

#: (code slot, call): each code is stored at 0x2000 + 4 * slot.
WASI_PROBE = """
  (func (export "__essa_wrapper__sandbox") (param i32)
    (i32.store (i32.const 0x3100) (i32.const 0x3200))
    (i32.store (i32.const 0x3104) (i32.const 16))
    (i64.store (i32.const 0x3000) (i64.const 0x1234))
    (i32.store8 (i32.const 0x3008) (i32.const 0))
    (i32.store (i32.const 0x3010) (i32.const 1))
    (i64.store (i32.const 0x3018) (i64.const 1000000))
    (i32.store (i32.const 0x2000) (call $args_sizes_get (i32.const 0x2100) (i32.const 0x2104)))
    (i32.store (i32.const 0x2004) (call $environ_sizes_get (i32.const 0x2108) (i32.const 0x210c)))
    (i32.store (i32.const 0x2008) (call $fd_prestat_get (i32.const 3) (i32.const 0x2110)))
    (i32.store (i32.const 0x200c) (call $fd_read (i32.const 0) (i32.const 0x3100) (i32.const 1) (i32.const 0x2118)))
    (i32.store (i32.const 0x2010) (call $path_open (i32.const 3) (i32.const 0) (i32.const 0x3200) (i32.const 1)
      (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0x211c)))
    (i32.store (i32.const 0x2014) (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 0x2120)))
    (i32.store (i32.const 0x2018) (call $random_get (i32.const 0x2128) (i32.const 16)))
    (i32.store (i32.const 0x201c) (call $fd_fdstat_get (i32.const 1) (i32.const 0x2140)))
    (i32.store (i32.const 0x2020) (call $poll_oneoff (i32.const 0x3000) (i32.const 0x2160) (i32.const 1) (i32.const 0x2180)))
    (i32.store (i32.const 0x2024) (call $fd_close (i32.const 1)))
    (i32.store (i32.const 0x2028) (call $fd_write (i32.const 1) (i32.const 0x3100) (i32.const 1) (i32.const 0x2184)))
    (i32.store (i32.const 0x202c) (call $fd_write (i32.const 7) (i32.const 0x3100) (i32.const 1) (i32.const 0x2184)))
    (drop (call $essa_set_result (i32.const 0x2000) (i32.const 0x200))))
"""


def wasi_module(body: str, data=None) -> bytes:
    extra = "\n".join(
        f'  (import "wasi_snapshot_preview1" "{name}" (func ${name} {sig}))' for name, sig in WASI_IMPORTS
    )
    return module(body, data, imports=extra)


def test_wasi_is_a_sandbox_with_stdio_only(engine):
    program = prepared(engine, wasi_module(WASI_PROBE + PRINT, PRINT_DATA))
    before = time.time()
    inv = call(program, "__essa_wrapper__sandbox")
    r = inv.result
    codes = struct.unpack_from("<12i", r)
    args, environ, prestat, read, path_open, clock, random, fdstat, poll, close, write_closed, write_bad = codes
    assert (args, environ) == (0, 0) and struct.unpack_from("<4I", r, 0x100) == (0, 0, 0, 0), "no args, no environment"
    assert prestat == 8, "no preopened directories: fd_prestat_get(3) is EBADF"
    assert path_open == 8, "nothing can be opened"
    assert read == 0 and struct.unpack_from("<I", r, 0x118) == (0,), "stdin is empty"
    assert clock == 0 and abs(struct.unpack_from("<Q", r, 0x120)[0] / 1e9 - before) < 60
    assert random == 0 and r[0x128:0x138] != bytes(16)
    assert fdstat == 0 and struct.unpack_from("<Q", r, 0x140 + 8)[0] & (1 << 6), "stdout has the fd_write right"
    assert poll == 0 and struct.unpack_from("<I", r, 0x180) == (1,)
    assert struct.unpack_from("<QHB", r, 0x160) == (0x1234, 0, 0), "the clock subscription fired"
    assert close == 0 and write_closed == 8, "fd_close(1) closes stdout for this instance"
    assert write_bad == 8
    assert inv.output.chunks == []
    # The next instance has its own stdout again.
    inv = call(program, "__essa_wrapper__print")
    assert b"".join(d for s, d in inv.output.chunks if s == 1) == b"abcd\nef\n"


CLOCK_READS = """
  (func (export "__essa_wrapper__clocks") (param i32)
    (i32.store (i32.const 0x2000) (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 0x2100)))
    (i32.store (i32.const 0x2004) (call $clock_time_get (i32.const 0) (i64.const 1000) (i32.const 0x2108)))
    (i32.store (i32.const 0x2008) (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 0x2110)))
    (i32.store (i32.const 0x200c) (call $clock_time_get (i32.const 0) (i64.const -1) (i32.const 0x2118)))
    (drop (call $essa_set_result (i32.const 0x2000) (i32.const 0x120))))
"""


def test_a_call_with_a_clock_of_its_own_reads_the_same_times_in_every_execution(engine):
    # A call that may run again (its executor died) reads the time it was first sent, a nanosecond later
    # at each read: a deterministic guest makes the same Lww timestamps in every execution.
    program = prepared(engine, wasi_module(CLOCK_READS))
    start = 1_796_000_000_123_456_789
    readings = []
    for _ in range(2):
        inv = invocation()
        inv.clock = start
        program.run(inv, "__essa_wrapper__clocks", 0)
        assert struct.unpack_from("<4i", inv.result) == (0, 0, 0, 0)
        realtime = struct.unpack_from("<QQ", inv.result, 0x100) + struct.unpack_from("<Q", inv.result, 0x118)
        readings.append(realtime)
        assert struct.unpack_from("<Q", inv.result, 0x110)[0] > 0  # the monotonic clock is the system's
    assert readings == [(start, start + 1, start + 2)] * 2
    before = time.time_ns()
    plain = call(program, "__essa_wrapper__clocks").result  # no clock of its own: the system's
    first, second = struct.unpack_from("<QQ", plain, 0x100)
    assert before - 1_000_000_000 <= first <= second <= time.time_ns() + 1_000_000_000


@pytest.mark.parametrize("clock_id, pointer", [(0, 0x2104), (1, 0xFFF8 + 0x10000), (9, 0x2100)])
def test_clock_time_get_traps_on_a_bad_pointer_or_clock_as_wasmtime_does(engine, clock_id, pointer):
    body = f"""
  (func (export "__essa_wrapper__bad_clock") (param i32)
    (drop (call $clock_time_get (i32.const {clock_id}) (i64.const 1) (i32.const {pointer}))))
"""
    program = prepared(engine, wasi_module(body))
    with pytest.raises(GuestTrap):
        call(program, "__essa_wrapper__bad_clock")
    assert call(program, ECHO, b"after").result == b"after"


def test_a_wasi_call_with_a_pointer_outside_memory_traps(engine):
    body = """
  (func (export "__essa_wrapper__random_oob") (param i32)
    (drop (call $random_get (i32.const 0xfff0) (i32.const 0x100))))
"""
    program = prepared(engine, wasi_module(body))
    with pytest.raises(GuestTrap):
        call(program, "__essa_wrapper__random_oob")
    assert call(program, ECHO, b"after").result == b"after"
