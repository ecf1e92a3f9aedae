"""A guest's arguments and stdin (:attr:`essa.wasm.invocation.Invocation.argv`, :attr:`~essa.wasm.invocation.Invocation.stdin`).

Every engine gives a guest the invocation's argv through ``args_sizes_get`` /
``args_get``, and its stdin through ``fd_read`` and ``poll_oneoff`` on fd 0:
bytes as they arrive, then the end; no stdin reads as empty. A guest waiting
for stdin still ends at its time limit.
"""

from __future__ import annotations

import struct
import threading

import pytest

from essa.cluster.embedded import open_engine
from essa.errors import LimitExceeded
from essa.testing.conformance.support import invocation
from essa.testing.conformance.wat import module
from essa.wasm.limits import Limits
from essa.wasm.stdin import Stdin

pytestmark = pytest.mark.usefixtures("essa_home")

IMPORTS = "\n".join(
    f'  (import "wasi_snapshot_preview1" "{name}" (func ${name} (param {params}) (result i32)))'
    for name, params in (
        ("args_sizes_get", "i32 i32"), ("args_get", "i32 i32"), ("fd_read", "i32 i32 i32 i32"),
        ("poll_oneoff", "i32 i32 i32 i32"),
    )
)

BODY = """
  ;; result: argc, argv buffer size, the argv buffer
  (func (export "__essa_wrapper__argv") (param i32)
    (drop (call $args_sizes_get (i32.const 0x100) (i32.const 0x104)))
    (drop (call $args_get (i32.const 0x200) (i32.const 0x108)))
    (drop (call $essa_set_result (i32.const 0x100) (i32.add (i32.const 8) (i32.load (i32.const 0x104))))))
  ;; result: everything read from stdin until the end (one fd_read of at most 64 bytes at a time)
  (func (export "__essa_wrapper__cat") (param i32)
    (local $at i32) (local $n i32)
    (local.set $at (i32.const 0x1000))
    (block $end (loop $more
      (i32.store (i32.const 0x100) (local.get $at))
      (i32.store (i32.const 0x104) (i32.const 64))
      (drop (call $fd_read (i32.const 0) (i32.const 0x100) (i32.const 1) (i32.const 0x108)))
      (local.set $n (i32.load (i32.const 0x108)))
      (br_if $end (i32.eqz (local.get $n)))
      (local.set $at (i32.add (local.get $at) (local.get $n)))
      (br $more)))
    (drop (call $essa_set_result (i32.const 0x1000) (i32.sub (local.get $at) (i32.const 0x1000)))))
  ;; result: poll_oneoff's errno, the number of events, the first event (stdin readable, or 60 s)
  (func (export "__essa_wrapper__poll") (param i32)
    (memory.fill (i32.const 0x300) (i32.const 0) (i32.const 96))
    (i64.store (i32.const 0x300) (i64.const 7))            ;; userdata 7: fd_read on fd 0
    (i32.store8 (i32.const 0x308) (i32.const 1))
    (i32.store (i32.const 0x310) (i32.const 0))
    (i64.store (i32.const 0x330) (i64.const 9))            ;; userdata 9: monotonic clock, 60 s
    (i64.store (i32.const 0x348) (i64.const 60000000000))
    (i32.store (i32.const 0x340) (i32.const 1))
    (i32.store (i32.const 0x500) (call $poll_oneoff (i32.const 0x300) (i32.const 0x400) (i32.const 2)
      (i32.const 0x504)))
    (memory.copy (i32.const 0x508) (i32.const 0x400) (i32.const 32))
    (drop (call $essa_set_result (i32.const 0x500) (i32.const 40))))
"""


@pytest.fixture(scope="module")
def wasm() -> bytes:
    return module(BODY, imports=IMPORTS)


def run(essa_engine, wasm: bytes, export: str, argv=(), stdin=None, limits: Limits | None = None):
    engine = open_engine(essa_engine, limits)
    program = engine.prepare(engine.compile(wasm))
    inv = invocation()
    inv.argv = tuple(argv)
    inv.stdin = stdin
    program.run(inv, export, 0)
    return inv.result


def test_the_guest_gets_the_invocations_arguments(essa_engine, wasm):
    argv = ("prog.wasm", "one", "two words", "", "ünï")
    result = run(essa_engine, wasm, "__essa_wrapper__argv", argv)
    argc, size = struct.unpack_from("<II", result)
    encoded = b"".join(arg.encode() + b"\0" for arg in argv)
    assert (argc, size) == (len(argv), len(encoded))
    assert result[8:] == encoded


def test_no_arguments_is_argc_zero(essa_engine, wasm):
    assert struct.unpack_from("<II", run(essa_engine, wasm, "__essa_wrapper__argv")) == (0, 0)


def test_stdin_is_read_to_its_end(essa_engine, wasm):
    data = bytes(range(256)) * 3
    assert run(essa_engine, wasm, "__essa_wrapper__cat", stdin=Stdin.of(data)) == data


def test_no_stdin_reads_as_empty(essa_engine, wasm):
    assert run(essa_engine, wasm, "__essa_wrapper__cat") == b""


def test_stdin_bytes_arriving_later_are_read(essa_engine, wasm):
    stdin = Stdin()
    stdin.feed(b"first ")

    def later() -> None:
        stdin.feed(b"second")
        stdin.finish()

    timer = threading.Timer(0.3, later)
    timer.start()
    try:
        assert run(essa_engine, wasm, "__essa_wrapper__cat", stdin=stdin) == b"first second"
    finally:
        timer.cancel()


def test_poll_waits_for_stdin(essa_engine, wasm):
    stdin = Stdin()
    timer = threading.Timer(0.3, stdin.feed, (b"x",))
    timer.start()
    try:
        result = run(essa_engine, wasm, "__essa_wrapper__poll", stdin=stdin)
    finally:
        timer.cancel()
    errno, count, userdata, error, kind = struct.unpack_from("<IIQHB", result)
    assert (errno, count, userdata, error, kind) == (0, 1, 7, 0, 1)  # stdin readable, not the 60 s clock


@pytest.mark.parametrize("export", ["__essa_wrapper__cat", "__essa_wrapper__poll"])
def test_waiting_for_stdin_ends_at_the_time_limit(essa_engine, wasm, export):
    with pytest.raises(LimitExceeded, match="time limit exceeded"):
        run(essa_engine, wasm, export, stdin=Stdin(), limits=Limits(time_limit=0.5))
