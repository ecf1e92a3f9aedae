"""essa's engine interface on wasmtime-py.

Costs that shape this module (wasmtime-py 50, see ARCHITECTURE.md): the linker
and its host functions are built once per module (an ``InstancePre``); each call
gets a fresh wasmtime store and instance; guest memory is reached through the
raw data pointer with ``ctypes`` instead of ``Memory.read``/``write``.
"""

from __future__ import annotations

import ctypes
import importlib.metadata

import wasmtime
from wasmtime import _ffi as ffi

from essa.abi import HOST_FUNCTIONS, IMPORT_MODULE, GuestFault, Invocation
from essa.engine import START, Engine, Limits, ModuleInfo, Program
from essa.errors import GuestExit, GuestTrap, ModuleError

_I32 = wasmtime.ValType.i32()


class WasmtimeEngine(Engine[wasmtime.Module]):
    """Runs modules with wasmtime (Cranelift)."""

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self._engine = wasmtime.Engine(wasmtime.Config())

    @property
    def version(self) -> str:
        return importlib.metadata.version("wasmtime")

    def compile(self, wasm: bytes) -> wasmtime.Module:
        try:
            return wasmtime.Module(self._engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"not a valid Wasm module: {_first_line(exc)}") from None

    def serialize(self, compiled: wasmtime.Module) -> bytes:
        return bytes(compiled.serialize())

    def deserialize(self, artifact: bytes) -> wasmtime.Module:
        try:
            return wasmtime.Module.deserialize(self._engine, artifact)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"unusable wasmtime artifact: {_first_line(exc)}") from None

    def prepare(self, compiled: wasmtime.Module) -> "WasmtimeProgram":
        return WasmtimeProgram(self, compiled)


class WasmtimeProgram(Program):
    """A module linked with WASI and the essa host functions."""

    def __init__(self, engine: WasmtimeEngine, module: wasmtime.Module) -> None:
        self._engine = engine
        linker = wasmtime.Linker(engine._engine)
        linker.define_wasi()
        for hf in HOST_FUNCTIONS:
            ty = wasmtime.FuncType([_I32] * hf.arity, [_I32])
            linker.define_func(IMPORT_MODULE, hf.name, ty, hf)
        try:
            self._pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"cannot link module: {_first_line(exc)}") from None
        functions = {}
        for export in module.exports:
            ty = export.type
            if isinstance(ty, wasmtime.FuncType):
                functions[export.name] = (tuple(map(str, ty.params)), tuple(map(str, ty.results)))
        self.info = ModuleInfo(functions)

    def run(self, invocation: Invocation, export: str, arg: int | None = None) -> None:
        store = wasmtime.Store(self._engine._engine)
        store.set_limits(memory_size=self._engine.limits.max_memory_bytes)
        wasi = wasmtime.WasiConfig()
        output = invocation.output
        wasi.stdout_custom = lambda data: output.write(1, data)
        wasi.stderr_custom = lambda data: output.write(2, data)
        store.set_wasi(wasi)
        try:
            instance = self._pre.instantiate(store)
            exports = instance.exports(store)
            func = exports[export]
            memory = exports.get("memory")
            if isinstance(memory, wasmtime.Memory):
                invocation.memory = _Memory(store, memory)
            with invocation.active():
                if arg is None:
                    func(store)
                else:
                    func(store, arg)
        except wasmtime.ExitTrap as exc:
            if exc.code != 0:
                raise GuestExit(exc.code) from None
        except (wasmtime.Trap, wasmtime.WasmtimeError, GuestFault) as exc:
            raise GuestTrap(invocation.fault or _trap_message(exc)) from None
        except Exception as exc:
            # A host function failed unexpectedly; it recorded why.
            raise GuestTrap(invocation.fault or f"{type(exc).__name__}: {exc}") from None
        finally:
            invocation.memory = None


class _Memory:
    """Bounds-checked access to one instance's linear memory."""

    __slots__ = ("_context", "_memory")

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        self._context = store._context()
        self._memory = ctypes.byref(memory._memory)

    def _base(self, ptr: int, length: int) -> int:
        # Looked up on every access: memory.grow may move the data.
        size = ffi.wasmtime_memory_data_size(self._context, self._memory)
        if ptr + length > size:
            raise GuestFault(f"[{ptr:#x}, {ptr + length:#x}) is outside the guest's memory of {size} bytes")
        data = ffi.wasmtime_memory_data(self._context, self._memory)
        return ctypes.cast(data, ctypes.c_void_p).value or 0

    def read(self, ptr: int, length: int) -> bytes:
        return ctypes.string_at(self._base(ptr, length) + ptr, length)

    def write(self, ptr: int, data: bytes) -> None:
        ctypes.memmove(self._base(ptr, len(data)) + ptr, data, len(data))


def _trap_message(exc: BaseException) -> str:
    """The cause of a wasmtime trap in one line, e.g. ``wasm `unreachable` instruction executed``."""
    text = str(exc)
    head, sep, causes = text.partition("Caused by:")
    if not sep:
        return _first_line(exc)
    reasons = [line.strip().split(": ", 1)[-1] if line.strip()[:1].isdigit() else line.strip()
               for line in causes.strip().splitlines() if line.strip()]
    reasons = [r.removeprefix("wasm trap: ") for r in reasons]
    frames = [line.split(" - ", 1)[1].strip() for line in head.splitlines() if " - " in line]
    where = f" (in {frames[0]})" if frames else ""
    return "; ".join(reversed(reasons)) + where


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["WasmtimeEngine", "START"]
