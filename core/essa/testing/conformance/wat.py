"""Small test modules written in WAT, built in-process.

:func:`driver_module` makes a module whose export ``__essa_wrapper__drive``
performs a straight-line list of host calls, stores each return code, and
returns ``codes (i32 LE each) + scratch memory`` as its result, so a test can
check both the codes and what the host wrote into guest memory.

WAT is assembled with ``wasmtime.wat2wasm`` whatever engine runs the module
(the ``essa-wasm[conformance]`` extra installs wasmtime for that).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest


def wat2wasm(text: str) -> bytes:
    """Assemble a WAT module; fails the test with advice when wasmtime is missing."""
    try:
        import wasmtime
    except ImportError:
        pytest.fail(
            "the essa conformance suite assembles WAT with wasmtime.wat2wasm: pip install 'essa-wasm[conformance]'",
            pytrace=False,
        )
    return bytes(wasmtime.wat2wasm(text))


HOST_IMPORTS = {
    "essa_get_args": 2,
    "essa_set_result": 2,
    "essa_call": 5,
    "essa_get_result_len": 2,
    "essa_get_result": 4,
    "essa_put_lattice": 4,
    "essa_get_lattice_len": 3,
    "essa_get_lattice_data": 5,
}

OUT = 0x4000  # return codes
SCRATCH = 0x5000  # where tests let the host write
SCRATCH_LEN = 256
DATA = 0x1000  # where tests place their input bytes
PAGE = 0x10000  # one Wasm page: the memory's size

#: Exports every test module has besides the driver.
HELPERS = """
  (func (export "__essa_wrapper__echo") (param $len i32)
    (if (call $essa_get_args (i32.const 0x8000) (local.get $len)) (then unreachable))
    (drop (call $essa_set_result (i32.const 0x8000) (local.get $len))))
  (func (export "__essa_wrapper__no_result") (param i32))
  (func (export "__essa_wrapper__trap") (param i32) unreachable)
  (func (export "__essa_wrapper__two_params") (param i32 i32))
  (func (export "__essa_wrapper__exits") (param i32) (call $proc_exit (i32.const 3)))
"""


def _imports() -> str:
    lines = [
        f'  (import "host" "{name}" (func ${name} (param {" ".join(["i32"] * n)}) (result i32)))'
        for name, n in HOST_IMPORTS.items()
    ]
    lines.append('  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))')
    lines.append('  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))')
    return "\n".join(lines)


def wat_bytes(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


@dataclass
class Call:
    """One host call of the driver: function name and i32 params (ints or WAT expressions)."""

    name: str
    params: tuple

    def wat(self, index: int) -> str:
        args = " ".join(p if isinstance(p, str) else f"(i32.const {p})" for p in self.params)
        return f"    (i32.store (i32.const {OUT + 4 * index}) (call ${self.name} {args}))"


def call(name: str, *params) -> Call:
    assert len(params) == HOST_IMPORTS[name], f"{name} takes {HOST_IMPORTS[name]} params"
    return Call(name, params)


#: A driver param: the u32 stored at ``addr`` (e.g. a handle written by essa_call).
def load(addr: int) -> str:
    return f"(i32.load (i32.const {addr}))"


ARGS_LEN = "(local.get $len)"


def module(
    body: str = "",
    data: dict[int, bytes] | None = None,
    start: str = "",
    memory: str = "1",
    imports: str = "",
) -> bytes:
    """A test module: the helpers, ``body`` as extra WAT, ``data`` placed at addresses.

    :param memory: the memory's limits in pages, e.g. ``"1"`` or ``"1 10"``.
    :param imports: extra import declarations (WAT).
    """
    segments = "\n".join(f'  (data (i32.const {addr}) "{wat_bytes(b)}")' for addr, b in (data or {}).items())
    text = f"""(module
{_imports()}
{imports}
  (memory (export "memory") {memory})
{segments}
{HELPERS}
{body}
  (func (export "_start") {start})
)"""
    return wat2wasm(text)


def driver_module(calls: list[Call], data: dict[int, bytes] | None = None) -> bytes:
    """A module whose ``__essa_wrapper__drive`` runs ``calls`` and returns codes + scratch."""
    lines = "\n".join(c.wat(i) for i, c in enumerate(calls))
    body = f"""
  (func (export "__essa_wrapper__drive") (param $len i32)
{lines}
    (memory.copy (i32.const {OUT + 4 * len(calls)}) (i32.const {SCRATCH}) (i32.const {SCRATCH_LEN}))
    (drop (call $essa_set_result (i32.const {OUT}) (i32.const {4 * len(calls) + SCRATCH_LEN}))))
"""
    return module(body, data)


def parse_drive_result(value: bytes, ncalls: int) -> tuple[list[int], bytes]:
    """Split a driver result into the return codes and the scratch bytes."""
    codes = list(struct.unpack_from(f"<{ncalls}i", value))
    return codes, value[4 * ncalls :]


def fuzz_module() -> bytes:
    """A module whose ``__essa_wrapper__fuzz`` makes one host call chosen by its arguments.

    The arguments are six i32 (LE): the index of a host function in
    :data:`HOST_IMPORTS`, then up to five parameters for it. The result is the
    function's return code (i32 LE). One module serves any number of random
    calls, so property tests need not assemble a module per example.
    """
    chain = "(i32.const -100)"
    for index, (name, arity) in reversed(list(enumerate(HOST_IMPORTS.items()))):
        params = " ".join(f"(local.get $p{i})" for i in range(arity))
        chain = (
            f"(if (result i32) (i32.eq (local.get $sel) (i32.const {index}))\n"
            f"      (then (call ${name} {params}))\n      (else {chain}))"
        )
    loads = "\n".join(f"    (local.set $p{i} (i32.load (i32.const {0x104 + 4 * i})))" for i in range(5))
    body = f"""
  (func (export "__essa_wrapper__fuzz") (param $len i32)
    (local $sel i32) (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32) (local $p4 i32)
    (if (call $essa_get_args (i32.const 0x100) (i32.const 24)) (then unreachable))
    (local.set $sel (i32.load (i32.const 0x100)))
{loads}
    (i32.store (i32.const 0x80) {chain})
    (drop (call $essa_set_result (i32.const 0x80) (i32.const 4))))
"""
    return module(body, data={DATA: b"__essa_wrapper__echo", DATA + 0x100: b"k"})
