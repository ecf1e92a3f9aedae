"""A test module whose functions print: for the logs' tests and benchmarks (``bench/logs.py``, ``bench/soak.py``).

Functions (arguments and results are raw bytes):

- ``echo(args) -> args``: prints nothing;
- ``say(args) -> args``: prints ``said ARGS`` and a line break to stdout (one write);
- ``complain(args) -> args``: prints ``complaint ARGS`` and a line break to stderr;
- ``relay(args) -> args``: calls ``say(args)`` remotely and answers its result;
- ``tally(args)``: prints ``tally: counting`` to stdout, then (in the
  function ``check_limit``) ``tally: 11 is over the limit of 10`` to stderr,
  and traps (``unreachable``), so its error names ``check_limit`` and ends
  with that line.

Arguments up to :data:`MAX_ARGS` bytes. The functions are named in the
module's ``name`` section (``$say``, ...), as a build that keeps it names them.
"""

from __future__ import annotations

#: Longest arguments the functions take.
MAX_ARGS = 16 * 1024

#: The stderr line ``tally`` traps after.
TALLY_COMPLAINT = "tally: 11 is over the limit of 10"

PRINTING_WAT = r"""
(module
  (import "host" "essa_get_args" (func $get_args (param i32 i32) (result i32)))
  (import "host" "essa_set_result" (func $set_result (param i32 i32) (result i32)))
  (import "host" "essa_call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (import "host" "essa_get_result_len" (func $get_result_len (param i32 i32) (result i32)))
  (import "host" "essa_get_result" (func $get_result (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0x100) "__essa_wrapper__say")
  (data (i32.const 0x200) "tally: 11 is over the limit of 10\n")
  (data (i32.const 0x300) "tally: counting\n")
  (data (i32.const 0x1000) "said ")
  (data (i32.const 0x6000) "complaint ")
  ;; write(fd, at, len): one fd_write of one buffer
  (func $write (param $fd i32) (param $at i32) (param $len i32)
    (i32.store (i32.const 0x10) (local.get $at))
    (i32.store (i32.const 0x14) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0x10) (i32.const 1) (i32.const 0x18))))
  ;; print(fd, prefix at, prefix len, len): the arguments, read after the prefix, then "\n"; answers them
  (func $print (param $fd i32) (param $at i32) (param $prefix i32) (param $len i32)
    (local $args i32)
    (local.set $args (i32.add (local.get $at) (local.get $prefix)))
    (if (call $get_args (local.get $args) (local.get $len)) (then unreachable))
    (i32.store8 (i32.add (local.get $args) (local.get $len)) (i32.const 10))
    (call $write (local.get $fd) (local.get $at) (i32.add (local.get $prefix) (i32.add (local.get $len) (i32.const 1))))
    (drop (call $set_result (local.get $args) (local.get $len))))
  (func $echo (export "__essa_wrapper__echo") (param $len i32)
    (if (call $get_args (i32.const 0x10000) (local.get $len)) (then unreachable))
    (drop (call $set_result (i32.const 0x10000) (local.get $len))))
  (func $say (export "__essa_wrapper__say") (param $len i32)
    (call $print (i32.const 1) (i32.const 0x1000) (i32.const 5) (local.get $len)))
  (func $complain (export "__essa_wrapper__complain") (param $len i32)
    (call $print (i32.const 2) (i32.const 0x6000) (i32.const 10) (local.get $len)))
  (func $relay (export "__essa_wrapper__relay") (param $len i32)
    (if (call $get_args (i32.const 0x10000) (local.get $len)) (then unreachable))
    (if (call $call (i32.const 0x100) (i32.const 19) (i32.const 0x10000) (local.get $len) (i32.const 0x20))
      (then unreachable))
    (if (call $get_result_len (i32.load (i32.const 0x20)) (i32.const 0x24)) (then unreachable))
    (if (call $get_result (i32.load (i32.const 0x20)) (i32.const 0x14000) (i32.load (i32.const 0x24)) (i32.const 0x28))
      (then unreachable))
    (drop (call $set_result (i32.const 0x14000) (i32.load (i32.const 0x24)))))
  (func $check_limit
    (call $write (i32.const 2) (i32.const 0x200) (i32.const 34))
    unreachable)
  (func $tally (export "__essa_wrapper__tally") (param i32)
    (call $write (i32.const 1) (i32.const 0x300) (i32.const 16))
    (call $check_limit))
  (func (export "_start")))
"""


def printing_module() -> bytes:
    """:data:`PRINTING_WAT`, assembled (with ``wasmtime.wat2wasm``: the ``conformance`` extra installs it)."""
    import wasmtime  # only the tests and benchmarks that use this module need it

    return bytes(wasmtime.wat2wasm(PRINTING_WAT))


__all__ = ["MAX_ARGS", "PRINTING_WAT", "TALLY_COMPLAINT", "printing_module"]
