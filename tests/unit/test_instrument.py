"""essa.instrument: the rewriter that lets engines enforce limits from the host.

Instrumented modules must validate and behave exactly like the originals
(checked by running both with wasmtime), call ``essa_meter.refuel`` in
proportion to the work done, report refused ``memory.grow``, and anything the
rewriter does not understand must raise :class:`InstrumentError`, never
another exception.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from essa.wasm.instrument import (
    BULK_COST,
    GROW_REFUSED,
    METER_MODULE,
    REFUEL,
    InstrumentError,
    instrument,
)

wasmtime = pytest.importorskip("wasmtime")

ROOT = Path(__file__).resolve().parents[2]

# A module with most things that hold function indices: imports, a table with
# an active and a declarative element segment, ref.func in code and in a
# global, call_indirect, a start function, a name section, br_table, exports.
RICH = """
(module
  (type $t (func (param i32) (result i32)))
  (import "env" "log" (func $log (param i32)))
  (import "env" "g" (global $imported i32))
  (memory (export "memory") 1)
  (table $tab 4 funcref)
  (global $counter (mut i32) (i32.const 0))
  (global $fref funcref (ref.func $double))
  (elem (i32.const 0) $double $square)
  (elem declare func $inc)
  (func $double (type $t) (i32.mul (local.get 0) (i32.const 2)))
  (func $square (type $t) (i32.mul (local.get 0) (local.get 0)))
  (func $inc (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func $init (global.set $counter (i32.const 100)))
  (start $init)
  (func (export "sum") (param $n i32) (result i32) (local $acc i32)
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc (i32.add (local.get $acc) (call $double (local.get $n))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $again)))
    (local.get $acc))
  (func (export "indirect") (param i32) (result i32)
    (call_indirect (type $t) (i32.const 7) (local.get 0)))
  (func (export "counter") (result i32) (global.get $counter))
  (func (export "pick") (param i32) (result i32)
    (block $c (block $b (block $a (br_table $a $b $c (local.get 0))) (return (i32.const 10))) (return (i32.const 20)))
    (i32.const 30))
  (func (export "via_ref") (result i32)
    (drop (ref.func $inc))
    (call $log (global.get $imported))
    (i32.const 5))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "fill") (param i32)
    (memory.fill (i32.const 0) (i32.const 1) (local.get 0)))
)
"""


def meter(fuel: int = 1000):
    """Host side of the instrumentation: counts refuels and refused grows."""
    calls = {"refuel": 0, "grow_refused": []}

    def refuel() -> int:
        calls["refuel"] += 1
        return fuel

    def grow_refused(pages: int, current: int) -> None:
        calls["grow_refused"].append((pages, current))

    return calls, refuel, grow_refused


def instantiate(wasm: bytes, fuel: int = 1000, max_memory: int | None = None):
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, wasm)
    store = wasmtime.Store(engine)
    if max_memory is not None:
        store.set_limits(memory_size=max_memory)
    linker = wasmtime.Linker(engine)
    calls, refuel, grow_refused = meter(fuel)
    i32 = wasmtime.ValType.i32()
    linker.define_func("env", "log", wasmtime.FuncType([i32], []), lambda x: None)
    linker.define(store, "env", "g", wasmtime.Global(store, wasmtime.GlobalType(i32, False), wasmtime.Val.i32(3)))
    linker.define_func(METER_MODULE, REFUEL, wasmtime.FuncType([], [i32]), refuel)
    linker.define_func(METER_MODULE, GROW_REFUSED, wasmtime.FuncType([i32, i32], []), grow_refused)
    instance = linker.instantiate(store, module)
    exports = instance.exports(store)
    return (lambda name, *args: exports[name](store, *args)), calls


def run_all(call):
    return [
        call("sum", 10), call("indirect", 0), call("indirect", 1), call("counter"),
        call("pick", 0), call("pick", 1), call("pick", 2), call("pick", 9), call("via_ref"),
    ]


@pytest.mark.parametrize("fuel, grow", [(True, True), (True, False), (False, True)])
def test_instrumented_module_behaves_like_the_original(fuel, grow):
    original = wasmtime.wat2wasm(RICH)
    rewritten = instrument(original, fuel=fuel, grow=grow)
    call, _ = instantiate(original)
    expected = run_all(call)
    call, calls = instantiate(rewritten)
    assert run_all(call) == expected == [110, 14, 49, 100, 10, 20, 30, 30, 5]
    assert (calls["refuel"] > 0) == fuel


def test_imports_are_appended_and_exports_keep_their_types():
    rewritten = instrument(wasmtime.wat2wasm(RICH))
    module = wasmtime.Module(wasmtime.Engine(), rewritten)
    imports = [(i.module, i.name) for i in module.imports]
    assert imports == [("env", "log"), ("env", "g"), (METER_MODULE, REFUEL), (METER_MODULE, GROW_REFUSED)]
    original = wasmtime.Module(wasmtime.Engine(), wasmtime.wat2wasm(RICH))
    assert [(e.name, signature(e.type)) for e in module.exports] == [(e.name, signature(e.type)) for e in original.exports]


def signature(ty) -> object:
    if isinstance(ty, wasmtime.FuncType):
        return tuple(map(str, ty.params)), tuple(map(str, ty.results))
    return type(ty).__name__


def test_nothing_to_do_returns_the_module_unchanged():
    wasm = wasmtime.wat2wasm('(module (func (export "f")))')  # no memory: no grow hook
    assert instrument(wasm, fuel=False, grow=True) == wasm


def test_refuels_grow_with_the_work_done():
    wasm = instrument(wasmtime.wat2wasm(RICH), grow=False)
    call, calls = instantiate(wasm, fuel=1000)
    call("sum", 10)
    few = calls["refuel"]
    call("sum", 100_000)
    many = calls["refuel"] - few
    # Each iteration costs the loop body's instructions (about 15): 100k iterations need > 1000 refuels of 1000.
    assert 1000 < many < 10_000


def test_a_loop_that_never_ends_keeps_asking_for_fuel():
    wasm = instrument(wasmtime.wat2wasm('(module (func (export "spin") (loop $l (br $l))))'))
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    asked = []

    def refuel() -> int:
        asked.append(1)
        if len(asked) == 50:
            raise RuntimeError("time is up")
        return 1000

    i32 = wasmtime.ValType.i32()
    linker.define_func(METER_MODULE, REFUEL, wasmtime.FuncType([], [i32]), refuel)
    instance = linker.instantiate(store, wasmtime.Module(engine, wasm))
    with pytest.raises(RuntimeError, match="time is up"):  # wasmtime-py re-raises the host's exception
        instance.exports(store)["spin"](store)
    assert len(asked) == 50


def test_recursion_charges_on_function_entry():
    wat = """(module (func $r (export "r") (param i32) (result i32)
        (if (result i32) (local.get 0) (then (call $r (i32.sub (local.get 0) (i32.const 1)))) (else (i32.const 0)))))"""
    call, calls = instantiate(instrument(wasmtime.wat2wasm(wat), grow=False), fuel=100)
    assert call("r", 1000) == 0
    assert calls["refuel"] >= 1000 * 5 // 100


def test_bulk_memory_operations_cost_more():
    call, calls = instantiate(instrument(wasmtime.wat2wasm(RICH), grow=False), fuel=BULK_COST * 4)
    before = calls["refuel"]
    for _ in range(20):
        call("fill", 16)
    assert calls["refuel"] - before >= 4


def test_refused_grow_is_reported_with_the_pages():
    wasm = instrument(wasmtime.wat2wasm(RICH), fuel=False)
    call, calls = instantiate(wasm, max_memory=4 * 65536)
    assert call("grow", 2) == 1
    assert calls["grow_refused"] == []
    assert call("grow", 5) == -1
    assert calls["grow_refused"] == [(5, 3)]
    assert call("grow", 1) == 3


@pytest.mark.parametrize("name", ["test-function.wasm", "test-function-rust.wasm"])
def test_the_example_guests_instrument_and_validate(name):
    wasm = (ROOT / "examples" / name).read_bytes()
    engine = wasmtime.Engine()
    for fuel, grow in ((True, True), (False, True)):
        wasmtime.Module.validate(engine, instrument(wasm, fuel=fuel, grow=grow))


def test_names_are_kept_for_trap_messages():
    wat = '(module (func $inner unreachable) (func $outer (export "f") (call $inner)))'
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_func(METER_MODULE, REFUEL, wasmtime.FuncType([], [wasmtime.ValType.i32()]), lambda: 1000)
    instance = linker.instantiate(store, wasmtime.Module(engine, instrument(wasmtime.wat2wasm(wat))))
    with pytest.raises(wasmtime.Trap, match="inner"):
        instance.exports(store)["f"](store)


@pytest.mark.parametrize(
    "wasm",
    [
        b"",
        b"\0asm",
        b"\0asm\x02\0\0\0",
        b"\0asm\x01\0\0\0\x01\x05\x01",  # truncated type section
        b"\0asm\x01\0\0\0\x01\x01",  # section size past the end
        b"\0asm\x01\0\0\0\x0a\x04\x01\x02\x00\x00",  # a body without end
        b"\0asm\x01\0\0\0\x0d\x01\x00",  # tag section (exception handling)
        b"\0asm\x01\0\0\0\x01\x04\x01\x5f\x00\x00",  # a GC struct type
    ],
    ids=["empty", "magic-only", "version-2", "truncated-types", "section-past-end", "no-end", "tags", "gc-type"],
)
def test_what_cannot_be_instrumented_raises_instrument_error(wasm):
    with pytest.raises(InstrumentError):
        instrument(wasm)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_rewriter(data):
    for wasm in (data, b"\0asm\x01\0\0\0" + data):
        try:
            instrument(wasm)
        except InstrumentError:
            pass


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.integers(min_value=8, max_value=2000), st.integers(min_value=0, max_value=255), st.data())
def test_mutated_modules_never_crash_the_rewriter_and_valid_output_stays_valid(cut, byte, data):
    original = bytearray(wasmtime.wat2wasm(RICH))
    position = data.draw(st.integers(min_value=8, max_value=len(original) - 1))
    original[position] = byte
    mutated = bytes(original[: max(cut, 8)])
    try:
        rewritten = instrument(mutated)
    except InstrumentError:
        return
    engine = wasmtime.Engine()
    try:
        wasmtime.Module.validate(engine, mutated)
    except wasmtime.WasmtimeError:
        return  # invalid in, anything out: the engine rejects it
    wasmtime.Module.validate(engine, rewritten)


def test_initial_fuel_spares_short_calls_the_refuel():
    wasm = instrument(wasmtime.wat2wasm(RICH), grow=False, initial_fuel=1_000_000)
    call, calls = instantiate(wasm)
    assert call("sum", 10) == 110
    assert calls["refuel"] == 0
    with pytest.raises(ValueError):
        instrument(wasmtime.wat2wasm(RICH), initial_fuel=1 << 31)
