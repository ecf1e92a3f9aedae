"""essa-plugin-wasmtime beyond the conformance suite: its two bindings and its instance pool.

The conformance suite (tests/engine) runs on the default binding, ``capi``;
here the whole suite runs once more on the fallback binding, ``public``, in a
process of its own. Skipped when the plugin is not installed.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

pytest.importorskip("essa_wasmtime")

from essa.cluster.embedded import EmbeddedRuntime  # noqa: E402
from essa.errors import EssaError  # noqa: E402
from essa.testing.conformance.support import invocation  # noqa: E402
from essa.testing.conformance.test_runtime import FAN, FAN_NAME  # noqa: E402
from essa.testing.conformance.wat import module, wat2wasm  # noqa: E402
from essa.wasm.abi import EssaResult  # noqa: E402
from essa_wasmtime import capi  # noqa: E402
from essa_wasmtime.engine import BINDING_VARIABLE, WasmtimeEngine, _plain_engine, _trap_message  # noqa: E402

ECHO = "__essa_wrapper__echo"

pytestmark = pytest.mark.usefixtures("essa_home")


@pytest.fixture(params=["capi", "public"])
def binding(request, monkeypatch) -> str:
    monkeypatch.setenv(BINDING_VARIABLE, request.param)
    return request.param


def test_the_capi_binding_runs_with_the_pinned_wasmtime(monkeypatch):
    # If a wasmtime-py release inside the pin changed what the binding uses,
    # essa would fall back to the slow binding without anyone noticing.
    monkeypatch.delenv(BINDING_VARIABLE, raising=False)
    assert capi.unavailable_reason() is None
    engine = WasmtimeEngine()
    assert engine.binding.name == "capi"
    assert engine.pooled


def test_a_c_function_whose_parameters_changed_is_refused_not_called():
    # A wrong ctypes prototype would corrupt memory: the binding compares each of its
    # prototypes with wasmtime-py's own, generated from the library's headers.
    capi._check_arity("wasmtime_store_delete", (ctypes.c_void_p,))
    with pytest.raises(AttributeError, match="wasmtime_store_delete takes 1 parameters in the installed wasmtime, not 2"):
        capi._check_arity("wasmtime_store_delete", (ctypes.c_void_p, ctypes.c_void_p))


def test_the_public_binding_passes_the_conformance_suite():
    env = {**os.environ, BINDING_VARIABLE: "public"}
    result = subprocess.run(
        [sys.executable, "-m", "essa.testing.conformance", "--engine", "wasmtime", "-q", "-x", "-p", "no:cacheprovider"],
        capture_output=True, text=True, env=env, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_an_unknown_binding_is_refused_in_one_line(tmp_path):
    path = tmp_path / "m.wasm"
    path.write_bytes(wat2wasm('(module (func (export "_start")))'))
    result = subprocess.run(
        [sys.executable, "-m", "essa", "--store", "memory", "--engine", "wasmtime", "run", str(path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, BINDING_VARIABLE: "fast"},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"essa: error: {BINDING_VARIABLE}='fast': expected 'capi' or 'public'"
    ]


def test_without_the_capi_binding_the_engine_falls_back_to_the_public_one(monkeypatch, caplog):
    monkeypatch.setattr(capi, "_problem", "wasmtime-py internals changed: (simulated)")
    monkeypatch.delenv(BINDING_VARIABLE, raising=False)
    engine = WasmtimeEngine()
    assert engine.binding.name == "public" and not engine.pooled
    inv = invocation(b"12345678")
    engine.prepare(engine.compile(module())).run(inv, ECHO, 8)
    assert inv.result == b"12345678"
    # Asked for by name, it is refused with the reason.
    monkeypatch.setenv(BINDING_VARIABLE, "capi")
    with pytest.raises(EssaError, match="capi binding cannot run here: wasmtime-py internals changed"):
        WasmtimeEngine()


def test_arguments_from_a_bytearray_reach_the_guest(binding):
    engine = WasmtimeEngine()
    inv = invocation(bytearray(b"12345678"))
    engine.prepare(engine.compile(module())).run(inv, ECHO, 8)
    assert inv.result == b"12345678"


def test_calls_that_find_the_pool_full_run_in_the_plain_engine(monkeypatch):
    # Two slots; fan(0, 8) has up to 15 instances alive at once (callers
    # hold theirs while they wait for their callees).
    monkeypatch.setattr(WasmtimeEngine, "pool_slots", 2)
    with EmbeddedRuntime(engine="wasmtime", store="memory", executors=2) as runtime:
        assert runtime.engine.pooled
        name = runtime.client.publish(module(FAN, {0x600: FAN_NAME}))
        for _ in range(20):
            outcome = runtime.client.call(name, "__essa_wrapper__fan", (0).to_bytes(4, "little") + (8).to_bytes(4, "little"))
            assert outcome.code == EssaResult.Ok and int.from_bytes(outcome.value, "little") == 8, outcome
        program = runtime.programs.get(name)
        assert program._spare is not None  # some calls did not fit


def test_a_module_the_pool_cannot_hold_runs_in_the_plain_engine():
    # The pool's slots hold tables of up to 20,000 elements.
    engine = WasmtimeEngine()
    wasm = module("  (table 30000 funcref)")
    compiled = engine.compile(wasm)
    assert compiled.engine is _plain_engine()
    inv = invocation(b"12345678")
    engine.prepare(compiled).run(inv, ECHO, 8)
    assert inv.result == b"12345678"
    # Its artifact loads the same way.
    assert engine.deserialize(engine.serialize(compiled)).engine is _plain_engine()


def test_guest_output_callbacks_are_released_with_each_call(binding):
    from essa.testing.conformance.test_runtime import PRINT_HELLO

    engine = WasmtimeEngine()
    program = engine.prepare(engine.compile(module(start=PRINT_HELLO, data={0x600: b"hello\n", 0x610: b"oops\n"})))
    for _ in range(20):
        inv = invocation()
        program.run(inv, "_start")
        assert inv.output.chunks == [(1, b"hello\n"), (2, b"oops\n")]
    assert capi._writers == {}


def test_stdout_and_stderr_are_written_on_the_guests_thread_until_the_guest_moves_them(binding):
    """essa's fd_write takes descriptors 1 and 2 (no hop to wasmtime's runtime thread); once the
    guest renumbers stdout, wasmtime's own fd_write (and its output callbacks) take over."""
    import threading

    from essa.testing.conformance.support import StandaloneHost
    from essa.testing.conformance.test_runtime import PRINT_HELLO
    from essa.wasm.invocation import Invocation

    class Threads:
        def __init__(self) -> None:
            self.chunks: list[tuple[int, bytes, bool]] = []

        def write(self, stream: int, data: bytes) -> None:
            self.chunks.append((stream, data, threading.current_thread() is caller))

    caller = threading.current_thread()
    renumber = '(import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))'
    body = f"""
  (func (export "__essa_wrapper__print") (param i32)
{PRINT_HELLO}
    (drop (call $fd_renumber (i32.const 2) (i32.const 1)))
{PRINT_HELLO})
"""
    engine = WasmtimeEngine()
    program = engine.prepare(engine.compile(module(body, {0x600: b"hello\n", 0x610: b"oops\n"}, imports=renumber)))
    out = Threads()
    program.run(Invocation(b"", StandaloneHost(), out), "__essa_wrapper__print", 0)
    # After fd_renumber(2, 1), fd 1 is stderr's stream and fd 2 is closed (EBADF, nothing written).
    assert out.chunks == [(1, b"hello\n", True), (2, b"oops\n", True), (2, b"hello\n", False)]


def test_a_failing_output_stream_fails_the_guest_write_not_the_call(binding):
    from essa.testing.conformance.support import StandaloneHost
    from essa.testing.conformance.test_runtime import PRINT_HELLO
    from essa.wasm.invocation import Invocation

    class Broken:
        def write(self, stream: int, data: bytes) -> None:
            raise OSError("the console went away")

    engine = WasmtimeEngine()
    body = f"""
  (func (export "__essa_wrapper__print") (param i32)
{PRINT_HELLO}
    (drop (call $essa_set_result (i32.const 0x600) (i32.const 6))))
"""
    program = engine.prepare(engine.compile(module(body, {0x600: b"hello\n", 0x610: b"oops\n"})))
    inv = Invocation(b"", StandaloneHost(), Broken())
    program.run(inv, "__essa_wrapper__print", 0)  # the guest's fd_write got EIO, and ignored it
    assert inv.result == b"hello\n"


def test_without_address_space_for_the_pool_calls_map_their_own_memory(tmp_path):
    # wasmtime aborts the process if it cannot map its pool: essa must not ask it to.
    resource = pytest.importorskip("resource")
    path = tmp_path / "m.wasm"
    path.write_bytes(module(start="(drop (call $essa_set_result (i32.const 0) (i32.const 0)))"))
    limit = 16 << 30  # room for a few instances mapped on their own, not for the pool's 400 GiB

    def limit_address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = subprocess.run(
        [sys.executable, "-m", "essa", "--store", "memory", "--engine", "wasmtime", "run", str(path)],
        capture_output=True, text=True, timeout=120, preexec_fn=limit_address_space,
        env={k: v for k, v in os.environ.items() if k != BINDING_VARIABLE},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "essa: essa-plugin-wasmtime: no instance pool (the address space is limited to 16384 MiB (ulimit -v)); "
        "each call maps its own memory"
    ]


def test_a_trap_message_names_where_the_guest_trapped_innermost_first():
    def trap(frames: list[str], cause: str = "wasm `unreachable` instruction executed") -> str:
        lines = "\n".join(f"    {i}:   0x{100 + i:x} - {frame}" for i, frame in enumerate(frames))
        return _trap_message(RuntimeError(f"error while executing at wasm backtrace:\n{lines}\n\nCaused by:\n"
                                          f"    wasm trap: {cause}\n"))

    assert trap(["t.wasm!abort", "t.wasm!check", "t.wasm!essa_function_export_tally"]) == (
        "wasm `unreachable` instruction executed (in abort <- check <- essa_function_export_tally)")
    assert trap(["a!f1", "a!f2", "a!f3", "a!f4", "a!f5"]) == (
        "wasm `unreachable` instruction executed (in f1 <- f2 <- f3 <- ...)")
    assert trap(["<unknown>!<wasm function 32>"]) == "wasm `unreachable` instruction executed (in <wasm function 32>)"
    # Deep recursion: one frame for the repeats, one short line.
    assert trap(["m!rec"] * 500 + ["m!main"], "call stack exhausted") == "call stack exhausted (in rec <- main)"
    assert trap(["m!rec"] * 100_000 + ["m!main"], "call stack exhausted") == "call stack exhausted (in rec)"
    assert _trap_message(RuntimeError("plain failure\nmore")) == "plain failure"
