"""The embedded runtime around the ABI: runs, output, traps, exits, fan-out, artifacts."""

from __future__ import annotations

import re
import struct

import pytest

from essa.cluster.embedded import EmbeddedRuntime
from essa.errors import ModuleError, RunFailed
from essa.testing.conformance.support import Output
from essa.testing.conformance.wat import module, wat2wasm
from essa.wasm.abi import EssaResult

pytestmark = pytest.mark.usefixtures("essa_home")

FAN_NAME = b"__essa_wrapper__fan"

#: ``fan(start, end)`` calls itself remotely on both halves of [start, end)
#: (starting both calls before waiting for either) and returns the number of
#: leaves, so fan(0, n) makes 2n - 1 calls in all.
FAN = f"""
  (func (export "__essa_wrapper__fan") (param $len i32) (local $s i32) (local $e i32) (local $m i32)
    (if (call $essa_get_args (i32.const 0x100) (i32.const 8)) (then unreachable))
    (local.set $s (i32.load (i32.const 0x100)))
    (local.set $e (i32.load (i32.const 0x104)))
    (if (i32.eq (i32.sub (local.get $e) (local.get $s)) (i32.const 1))
      (then
        (i32.store (i32.const 0x200) (i32.const 1))
        (drop (call $essa_set_result (i32.const 0x200) (i32.const 4)))
        (return)))
    (local.set $m (i32.add (local.get $s) (i32.div_u (i32.sub (local.get $e) (local.get $s)) (i32.const 2))))
    (i32.store (i32.const 0x300) (local.get $s))
    (i32.store (i32.const 0x304) (local.get $m))
    (i32.store (i32.const 0x308) (local.get $m))
    (i32.store (i32.const 0x30c) (local.get $e))
    (if (call $essa_call (i32.const 0x600) (i32.const {len(FAN_NAME)}) (i32.const 0x300) (i32.const 8) (i32.const 0x400))
      (then unreachable))
    (if (call $essa_call (i32.const 0x600) (i32.const {len(FAN_NAME)}) (i32.const 0x308) (i32.const 8) (i32.const 0x404))
      (then unreachable))
    (if (call $essa_get_result (i32.load (i32.const 0x400)) (i32.const 0x500) (i32.const 4) (i32.const 0x510))
      (then unreachable))
    (if (call $essa_get_result (i32.load (i32.const 0x404)) (i32.const 0x504) (i32.const 4) (i32.const 0x510))
      (then unreachable))
    (i32.store (i32.const 0x200) (i32.add (i32.load (i32.const 0x500)) (i32.load (i32.const 0x504))))
    (drop (call $essa_set_result (i32.const 0x200) (i32.const 4))))
"""

PRINT_HELLO = """
    (i32.store (i32.const 0x100) (i32.const 0x600))
    (i32.store (i32.const 0x104) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0x100) (i32.const 1) (i32.const 0x108)))
    (i32.store (i32.const 0x100) (i32.const 0x610))
    (i32.store (i32.const 0x104) (i32.const 5))
    (drop (call $fd_write (i32.const 2) (i32.const 0x100) (i32.const 1) (i32.const 0x108)))
"""


@pytest.fixture
def runtime(essa_engine):
    with EmbeddedRuntime(engine=essa_engine, store="memory", executors=2) as rt:
        yield rt


@pytest.mark.parametrize("executors", [1, 2])
def test_recursive_fan_out_of_hundreds_of_nested_calls_completes(essa_engine, executors):
    with EmbeddedRuntime(engine=essa_engine, store="memory", executors=executors) as rt:
        name = rt.client.publish(module(FAN, {0x600: FAN_NAME}))
        outcome = rt.client.call(name, "__essa_wrapper__fan", struct.pack("<II", 0, 300), timeout=120)
        assert outcome.code == EssaResult.Ok, outcome.message
        assert struct.unpack("<I", outcome.value) == (300,)
        served = sum(e.stats.calls for e in rt.executors)
        assert served == 2 * 300 - 1


def test_guest_stdout_and_stderr_reach_the_runner(runtime):
    name = runtime.client.publish(module(start=PRINT_HELLO, data={0x600: b"hello\n", 0x610: b"oops\n"}))
    output = Output()
    assert runtime.client.run(name, output=output) == 0
    assert output.streams == {1: b"hello\n", 2: b"oops\n"}


def test_trap_in_main_fails_the_run_with_the_reason(runtime):
    name = runtime.client.publish(module(start="unreachable"))
    with pytest.raises(RunFailed, match="the module trapped: .*unreachable") as info:
        runtime.client.run(name, output=Output())
    assert info.value.exit_status == 1


def test_proc_exit_status_is_the_run_status(runtime):
    name = runtime.client.publish(module(start="(call $proc_exit (i32.const 3))"))
    assert runtime.client.run(name, output=Output()) == 3


def test_proc_exit_zero_is_success(runtime):
    name = runtime.client.publish(module(start="(call $proc_exit (i32.const 0))"))
    assert runtime.client.run(name, output=Output()) == 0


def test_module_without_start_is_refused(runtime):
    wasm = wat2wasm('(module (func (export "__essa_wrapper__f") (param i32)))')
    name = runtime.client.publish(wasm)
    with pytest.raises(RunFailed, match="no _start function"):
        runtime.client.run(name, output=Output())


@pytest.mark.parametrize(
    "start, shown",
    [('(func (export "_start") (param i32))', "(i32) -> ()"),
     ('(func (export "_start") (result i32) (i32.const 1))', "() -> (i32)")],
    ids=["param", "result"],
)
def test_a_start_function_of_the_wrong_type_is_refused(runtime, start, shown):
    name = runtime.client.publish(wat2wasm(f"(module {start})"))
    with pytest.raises(RunFailed, match=rf"the module's _start has type {re.escape(shown)}, not \(\) -> \(\)"):
        runtime.client.run(name, output=Output())


def test_malformed_module_is_refused_with_the_reason(runtime):
    name = runtime.client.publish(b"\0asm\x01\0\0\0\xff\xff")
    with pytest.raises(RunFailed, match="not a valid Wasm module"):
        runtime.client.run(name, output=Output())


def test_non_wasm_bytes_are_refused_before_running(runtime):
    with pytest.raises(ModuleError, match="not a WebAssembly module"):
        runtime.client.publish(b"#!/bin/sh\necho hi\n", "script.sh")


def test_module_with_unknown_imports_is_refused(runtime):
    wasm = wat2wasm('(module (import "env" "mystery" (func)) (func (export "_start")))')
    name = runtime.client.publish(wasm)
    with pytest.raises(RunFailed, match="mystery"):
        runtime.client.run(name, output=Output())


def test_compiled_module_is_cached_in_memory(runtime):
    name = runtime.client.publish(module(FAN, {0x600: FAN_NAME}))
    for _ in range(3):
        runtime.client.call(name, "__essa_wrapper__fan", struct.pack("<II", 0, 2))
    assert runtime.programs.sources == {name: "compiled"}
