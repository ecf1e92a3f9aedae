"""essa's engine interface on wasmer-python 1.1 (Cranelift).

What shapes this module:

- The binding is native (PyO3) and cheap per crossing (docs/architecture.md:
  host call ~0.6 us, instantiate ~13 us), so each call simply gets a fresh
  ``Instance`` from a cached module and import object.
- Its objects (``Module``, ``Function``, ``Instance``, ...) are *unsendable*:
  used from another thread than the one that made them, they panic. An
  executor runs calls on many threads, so a :class:`WasmerProgram` keeps the
  module's serialized artifact (plain bytes) and, per thread, the module
  loaded from it and the import object linked to it.
- A wasmer engine frees the code of the modules it compiled or loaded only
  when it is dropped itself (not when the modules are). An executor's pool
  starts threads for bursts and ends them when idle, so with one engine each
  new thread's copy of a module stayed for good (the process grew by ~150
  KiB and two mappings per thread that ever ran the test function). Each
  thread has a ``Store`` (an engine) of its own instead (:func:`_store`),
  dropped with the thread and its copies.
- wasmer 1.1's WASI cannot capture stdout/stderr and shares its state among
  instances, so WASI comes from :mod:`essa_wasmer.wasi` (captured stdio, a
  descriptor table per instance).
- There is no resource limiter in the binding: the memory cap is written into
  the module before compiling (:mod:`essa_wasmer.memcap`).
- Nor any way to interrupt running Wasm code (no metering middleware, no
  epochs, and the binding holds the GIL while Wasm runs), so modules are
  instrumented before compiling (:mod:`essa.wasm.instrument`): fuel checks at
  function entries and loop headers call ``essa_meter.refuel`` every few
  million instructions, which traps the guest once the call's deadline has
  passed; ``memory.grow`` refusals are reported. The refuel calls also let
  other Python threads run while a guest computes.
- wasmer's wheels exist only for Python <= 3.10; the plugin still imports on
  newer Pythons, and :meth:`WasmerEngine.unavailable_reason` says why it
  cannot run there.
"""

from __future__ import annotations

import importlib.metadata
import sys
import threading
from typing import Any

try:  # no native build for Python 3.11+: the placeholder package raises ImportError
    import wasmer
    import wasmer_compiler_cranelift
except ImportError as exc:  # pragma: no cover - depends on the Python version
    wasmer = None
    wasmer_compiler_cranelift = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

from essa.plugin import (
    FUEL,
    HOST_FUNCTIONS,
    IMPORT_MODULE,
    METER_FUNCTIONS,
    METER_MODULE,
    Engine,
    Grants,
    GuestExit,
    GuestFault,
    HostFunction,
    InstrumentError,
    Invocation,
    Limits,
    ModuleError,
    ModuleInfo,
    PluginNotFound,
    Program,
    instrument,
    trap_location,
)

from . import memcap, wasi

#: wasmer's ``Type`` values as essa's value-type names.
_VALTYPES = {1: "i32", 2: "i64", 3: "f32", 4: "f64", 5: "v128", 6: "externref", 7: "funcref"}

_HOST = {hf.name: hf for hf in HOST_FUNCTIONS}
_METER = {name: (HostFunction(impl).call, (params, results)) for name, (impl, params, results) in METER_FUNCTIONS.items()}
#: Version of the instrumentation compiled into artifacts.
_INSTRUMENTATION = "i3"

_THREAD = threading.local()


def _store() -> Any:
    """This thread's wasmer ``Store``: its modules' code is freed when the thread ends."""
    store = getattr(_THREAD, "store", None)
    if store is None:
        store = _THREAD.store = wasmer.Store(wasmer.engine.Universal(wasmer_compiler_cranelift.Compiler))
    return store


class WasmerModule:
    """A compiled module: its artifact bytes, and the wasmer ``Module`` of the
    thread that compiled or loaded it (other threads load their own)."""

    __slots__ = ("artifact", "_module", "_thread")

    def __init__(self, module: Any, artifact: bytes) -> None:
        self.artifact = artifact
        self._module = module
        self._thread = threading.get_ident()

    def module_here(self) -> Any | None:
        """The wasmer ``Module`` if it belongs to the calling thread, else ``None``."""
        return self._module if threading.get_ident() == self._thread else None


class WasmerEngine(Engine[WasmerModule]):
    """Runs modules with wasmer 1.1 and its Cranelift compiler."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if _IMPORT_ERROR is None:
            return None
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        if sys.version_info >= (3, 11):
            return f"wasmer 1.1 runs only on Python 3.10 and older (this is {here}); use Python 3.10"
        return (
            f"cannot import wasmer ({_IMPORT_ERROR}); "
            "install it with: pip install 'wasmer>=1.1,<2' 'wasmer-compiler-cranelift>=1.1,<2'"
        )

    supported_grants = frozenset({"dirs", "env"})
    wasi_features = (
        "preview1, essa's own, tested against wasmtime's",
        "argv",
        "stdin (streamed)",
        "symbolic and hard links inside grants",
        "poll_oneoff: waits end at the time limit",
        "no FIFOs or devices",
    )

    def __init__(self, limits: Limits | None = None, grants: Grants | None = None) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise PluginNotFound(f"engine 'wasmer' is not available here: {reason}")
        super().__init__(limits, grants)
        self.max_pages = memcap.cap_pages(self.limits.max_memory_bytes)

    @property
    def version(self) -> str:
        compiler = importlib.metadata.version("wasmer_compiler_cranelift")
        return f"{wasmer.__version__}-cranelift-{compiler}"

    @property
    def artifact_tag(self) -> str:
        # The memory cap is compiled into the module (see memcap), so an
        # artifact is only valid for the cap it was compiled with.
        return f"{self.name}-{self.version}-maxmem{self.max_pages}p-{_INSTRUMENTATION}"

    def compile(self, wasm: bytes) -> WasmerModule:
        wasm = bytes(wasm)  # wasmer takes bytes only (not bytearray, memoryview)
        if not wasm.startswith(b"\0asm"):
            # wasmer would take text as WAT; essa modules are binary
            raise ModuleError("not a valid Wasm module: no \\0asm header")
        try:
            capped = memcap.cap_memory(wasm, self.max_pages)
        except memcap.MemoryOverLimit as exc:
            raise ModuleError(f"cannot run the module: {self.limits.exceeded('memory')}: {exc}") from None
        try:
            instrumented = instrument(capped, initial_fuel=FUEL)  # no refuel call in short calls
        except InstrumentError as exc:
            self._validate(wasm)
            raise ModuleError(f"cannot run the module under essa's limits: {exc}") from None
        try:
            module = wasmer.Module(_store(), instrumented)
        except (RuntimeError, ValueError) as exc:
            self._validate(wasm)
            raise ModuleError(f"cannot run the module under essa's limits: {_first_line(exc)}") from None
        return WasmerModule(module, bytes(module.serialize()))

    def _validate(self, wasm: bytes) -> None:
        """Raise the compiler's reason if ``wasm`` itself is invalid."""
        try:
            valid = wasmer.Module.validate(_store(), wasm)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ModuleError(f"not a valid Wasm module: {_first_line(exc)}") from None
        if not valid:
            try:
                wasmer.Module(_store(), wasm)
            except (RuntimeError, ValueError) as exc:
                raise ModuleError(f"not a valid Wasm module: {_first_line(exc)}") from None
            raise ModuleError("not a valid Wasm module")

    def serialize(self, compiled: WasmerModule) -> bytes:
        return compiled.artifact

    def deserialize(self, artifact: bytes) -> WasmerModule:
        return WasmerModule(self._load(artifact), artifact)

    def _load(self, artifact: bytes) -> Any:
        try:
            return wasmer.Module.deserialize(_store(), bytes(artifact))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ModuleError(f"unusable wasmer artifact: {_first_line(exc)}") from None

    def prepare(self, compiled: WasmerModule) -> "WasmerProgram":
        return WasmerProgram(self, compiled)


class WasmerProgram(Program):
    """A module linked with WASI and the essa host functions, per thread."""

    def __init__(self, engine: WasmerEngine, compiled: WasmerModule) -> None:
        self._engine = engine
        self._artifact = compiled.artifact
        module = compiled.module_here() or engine._load(compiled.artifact)
        self._imports = _link_plan(module)
        functions = {}
        has_memory = False
        for export in module.exports:
            ty = export.type
            if isinstance(ty, wasmer.FunctionType):
                functions[export.name] = (_valtypes(ty.params), _valtypes(ty.results))
            elif export.name == "memory" and isinstance(ty, wasmer.MemoryType):
                has_memory = True
        self.info = ModuleInfo(functions)
        self._has_memory = has_memory
        self._local = threading.local()
        self._local.linked = self._link(module)

    def _link(self, module: Any) -> tuple[Any, Any]:
        """``(module, import object)`` for the calling thread (``module`` is in this thread's store)."""
        store = _store()
        namespaces: dict[str, dict[str, Any]] = {}
        for namespace, name, impl, (params, results) in self._imports:
            ty = wasmer.FunctionType([_WASMER_TYPES[p] for p in params], [_WASMER_TYPES[r] for r in results])
            namespaces.setdefault(namespace, {})[name] = wasmer.Function(store, impl, ty)
        imports = wasmer.ImportObject()
        for namespace, functions in namespaces.items():
            imports.register(namespace, functions)
        return module, imports

    def _linked(self) -> tuple[Any, Any]:
        linked = getattr(self._local, "linked", None)
        if linked is None:
            linked = self._local.linked = self._link(self._engine._load(self._artifact))
        return linked

    def run(self, invocation: Invocation, export: str, arg: int | None = None) -> None:
        module, imports = self._linked()
        invocation.begin(self._engine.limits)
        sandbox = invocation.wasi = wasi.Sandbox(invocation, self._engine.grants)
        memory: _Memory | _NoMemory = _NO_MEMORY
        try:
            with invocation.active():
                instance = wasmer.Instance(module, imports)
                exports = instance.exports
                func = getattr(exports, export)
                if self._has_memory:
                    memory = _Memory(exports.memory)
                invocation.memory = memory
                if arg is None:
                    func()
                else:
                    func(arg)
        except wasi.WasiExit as exc:
            if exc.status != 0:
                raise GuestExit(exc.status) from None
        except (RuntimeError, GuestFault) as exc:
            raise invocation.failure(_trap_message(exc)) from None
        except Exception as exc:
            # A host function failed unexpectedly; it recorded why.
            raise invocation.failure(f"{type(exc).__name__}: {exc}") from None
        finally:
            invocation.memory = None
            invocation.wasi = None
            memory.close()  # on this thread: wasmer's buffers are unsendable
            sandbox.close()


class _Memory:
    """Bounds-checked access to one instance's linear memory.

    Bytes move through a ``memoryview`` of the memory's buffer, renewed when
    ``memory.grow`` changed the size (checked on every access).
    """

    __slots__ = ("_memory", "_view", "_size")

    def __init__(self, memory: Any) -> None:
        self._memory = memory
        self._view = memoryview(memory.buffer)
        self._size = len(self._view)

    def _check(self, ptr: int, end: int) -> None:
        size = self._memory.data_size
        if size != self._size:
            self._view.release()
            self._view = memoryview(self._memory.buffer)
            self._size = size
        if end > size:
            raise GuestFault(f"[{ptr:#x}, {end:#x}) is outside the guest's memory of {size} bytes")

    def read(self, ptr: int, length: int) -> bytes:
        end = ptr + length
        self._check(ptr, end)
        return self._view[ptr:end].tobytes()

    def write(self, ptr: int, data: bytes) -> None:
        end = ptr + len(data)
        self._check(ptr, end)
        self._view[ptr:end] = data

    def close(self) -> None:
        self._view.release()


class _NoMemory:
    """The memory of a module that exports none: every access is outside it."""

    def read(self, ptr: int, length: int) -> bytes:
        raise GuestFault(f"[{ptr:#x}, {ptr + length:#x}) is outside the guest's memory (it exports none)")

    def write(self, ptr: int, data: bytes) -> None:
        self.read(ptr, len(data))

    def close(self) -> None:
        pass


_NO_MEMORY = _NoMemory()

if wasmer is not None:
    _WASMER_TYPES = {"i32": wasmer.Type.I32, "i64": wasmer.Type.I64}


def _valtypes(types: list) -> tuple[str, ...]:
    return tuple(_VALTYPES.get(int(t), str(t)) for t in types)


def _link_plan(module: Any) -> list[tuple[str, str, Any, tuple[tuple[str, ...], tuple[str, ...]]]]:
    """What to give each of the module's imports; a clear error for any other import."""
    plan = []
    for imp in module.imports:
        where = f"`{imp.module}::{imp.name}`"
        if imp.module == IMPORT_MODULE and imp.name in _HOST:
            impl = _HOST[imp.name].call
            signature = (("i32",) * _HOST[imp.name].arity, ("i32",))
        elif imp.module == wasi.IMPORT_MODULE and imp.name in wasi.FUNCTIONS:
            impl = wasi.FUNCTIONS[imp.name]
            signature = wasi.SIGNATURES[imp.name]
        elif imp.module == METER_MODULE and imp.name in _METER:
            impl, signature = _METER[imp.name]
        else:
            raise ModuleError(f"cannot link module: unknown import: {where} has not been defined")
        ty = imp.type
        if not isinstance(ty, wasmer.FunctionType) or (_valtypes(ty.params), _valtypes(ty.results)) != signature:
            raise ModuleError(f"cannot link module: incompatible import type for {where}")
        plan.append((imp.module, imp.name, impl, signature))
    return plan


def _trap_message(exc: BaseException) -> str:
    """A wasmer trap in one line, with where it happened (:func:`essa.plugin.trap_location`).

    e.g. ``integer divide by zero (in div <- main)``; ``<wasm function 3>`` for
    a module built without its ``name`` section.
    """
    text = str(exc)
    head, _, backtrace = text.partition("\n")
    reason = head.strip().removeprefix("RuntimeError: ").strip() or type(exc).__name__
    if reason == "unreachable":
        reason = "wasm `unreachable` instruction executed"
    return reason + trap_location(_frame_names(backtrace))


def _frame_names(backtrace: str):
    """The function names of a wasmer backtrace's frames, innermost first."""
    for line in backtrace.splitlines():  # "at NAME (<module>[INDEX]:0xOFFSET)"
        frame = line.strip()
        if frame.startswith("at "):
            name, _, rest = frame[3:].partition(" (")
            if name == "<unnamed>":
                index = rest.partition("[")[2].partition("]")[0]
                name = f"<wasm function {index}>" if index else ""
            yield name


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["WasmerEngine", "WasmerModule", "WasmerProgram"]
