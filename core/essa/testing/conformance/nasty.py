"""A corpus of nasty guests: what untrusted code does to a host.

Each entry of :data:`NASTY` is a callable essa function (``(i32) -> ()``,
exported as ``__essa_wrapper__NAME``) written in WAT; :func:`nasty_module`
puts them all, with the suite's helpers (``echo``, ``trap``, ``no_result``,
...), into one module. :data:`EXPECTED` says how each must end under
:data:`LIMITS`: the caller-visible message fragment, or an EssaResult code.
"""

from __future__ import annotations

from essa.testing.conformance.wat import module
from essa.wasm.limits import Limits

#: Limits the nasty tests run under: short, so the suite stays fast.
LIMITS = Limits(time_limit=0.5, max_memory_bytes=4 << 20, max_message_bytes=1 << 20, max_output_bytes=1 << 20)

POLL_IMPORT = '(import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))'

NASTY = {
    # An infinite loop that never calls the host.
    "spin": """
  (func (export "__essa_wrapper__spin") (param i32) (loop $l (br $l)))""",
    # Unbounded recursion: a stack overflow.
    "recurse": """
  (func $recurse (export "__essa_wrapper__recurse") (param i32)
    (call $recurse (i32.add (local.get 0) (i32.const 1))))""",
    # Grow one page at a time, touching each, until refused; then abort as an allocator would.
    "grow": """
  (func (export "__essa_wrapper__grow") (param i32) (local $page i32)
    (block $full (loop $more
      (local.set $page (memory.grow (i32.const 1)))
      (br_if $full (i32.eq (local.get $page) (i32.const -1)))
      (i32.store (i32.mul (local.get $page) (i32.const 0x10000)) (i32.const 1))
      (br $more)))
    unreachable)""",
    # One allocation far past the limit, then abort.
    "big_alloc": """
  (func (export "__essa_wrapper__big_alloc") (param i32)
    (if (i32.eq (memory.grow (i32.const 30000)) (i32.const -1)) (then unreachable)))""",
    # Grow until refused, keep the memory, and spin: the time limit ends it.
    "hoard": """
  (func (export "__essa_wrapper__hoard") (param i32)
    (block $full (loop $more
      (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
      (br $more)))
    (loop $l (i32.store (i32.const 0x9000) (i32.add (i32.load (i32.const 0x9000)) (i32.const 1))) (br $l)))""",
    # Write 32 KiB chunks to stdout forever.
    "flood": """
  (func (export "__essa_wrapper__flood") (param i32)
    (i32.store (i32.const 0x7000) (i32.const 0x8000))
    (i32.store (i32.const 0x7004) (i32.const 0x8000))
    (loop $l
      (drop (call $fd_write (i32.const 1) (i32.const 0x7000) (i32.const 1) (i32.const 0x7008)))
      (br $l)))""",
    # One 2 MiB write, from a single iovec, past a 1 MiB output limit.
    "burst": """
  (func (export "__essa_wrapper__burst") (param i32)
    (drop (memory.grow (i32.const 40)))
    (i32.store (i32.const 0x7000) (i32.const 0x10000))
    (i32.store (i32.const 0x7004) (i32.const 0x200000))
    (drop (call $fd_write (i32.const 1) (i32.const 0x7000) (i32.const 1) (i32.const 0x7008))))""",
    # Sleep for an hour in poll_oneoff.
    "sleep": """
  (func (export "__essa_wrapper__sleep") (param i32)
    (i64.store (i32.const 0x7100) (i64.const 7))
    (i32.store8 (i32.const 0x7108) (i32.const 0))
    (i32.store (i32.const 0x7110) (i32.const 1))
    (i64.store (i32.const 0x7118) (i64.const 3600000000000))
    (drop (call $poll_oneoff (i32.const 0x7100) (i32.const 0x7200) (i32.const 1) (i32.const 0x7300))))""",
    # A result larger than the message size limit (1 MiB): refused; the function then returns.
    "big_result": """
  (func (export "__essa_wrapper__big_result") (param i32)
    (drop (memory.grow (i32.const 20)))
    (drop (call $essa_set_result (i32.const 0) (i32.const 0x140000))))""",
    # Calls echo with arguments larger than the message size limit; returns the code.
    "big_args": """
  (func (export "__essa_wrapper__big_args") (param i32)
    (drop (memory.grow (i32.const 20)))
    (i32.store (i32.const 0x7400)
      (call $essa_call (i32.const 0x7500) (i32.const 20) (i32.const 0) (i32.const 0x140000) (i32.const 0x7404)))
    (drop (call $essa_set_result (i32.const 0x7400) (i32.const 4))))""",
}

#: ``call(NAME)`` calls ``__essa_wrapper__NAME`` remotely, waits, and returns
#: the two codes (essa_call, essa_get_result_len) as 8 bytes.
CALLER = """
  (func (export "__essa_wrapper__call") (param $len i32)
    (if (call $essa_get_args (i32.const 0x7600) (local.get $len)) (then unreachable))
    (i32.store (i32.const 0x7700)
      (call $essa_call (i32.const 0x7600) (local.get $len) (i32.const 0) (i32.const 0) (i32.const 0x7708)))
    (i32.store (i32.const 0x7704) (call $essa_get_result_len (i32.load (i32.const 0x7708)) (i32.const 0x770c)))
    (drop (call $essa_set_result (i32.const 0x7700) (i32.const 8))))
"""

#: How each nasty function ends under :data:`LIMITS`, called remotely:
#: ``("error", fragments...)``: UnknownError whose message has the fragments;
#: ``("code", code)``: the function returned this 4-byte EssaResult code.
EXPECTED: dict[str, tuple] = {
    "spin": ("error", "spin: time limit exceeded (0.5 s)"),
    "recurse": ("error", "recurse trapped", "stack"),
    "grow": ("error", "grow: memory limit exceeded (4 MiB)"),
    "big_alloc": ("error", "big_alloc: memory limit exceeded (4 MiB)"),
    "hoard": ("error", "hoard: time limit exceeded (0.5 s)"),
    "flood": ("error", "flood: output limit exceeded (1 MiB)"),
    "burst": ("error", "burst: output limit exceeded (1 MiB)"),
    "sleep": ("error", "sleep: time limit exceeded (0.5 s)"),
    "big_result": ("error", "big_result returned no result", "message size limit exceeded (1 MiB)"),
    "big_args": ("code", -1),
    "trap": ("error", "trap trapped", "unreachable"),
    "no_result": ("no-result",),
}


def nasty_module(start: str = "") -> bytes:
    """Every nasty function, the caller, and the suite's helpers, in one module."""
    body = "\n".join(NASTY.values()) + CALLER
    return module(body, data={0x7500: b"__essa_wrapper__echo"}, start=start, imports=POLL_IMPORT)
