"""essa's engine interface on wasmtime-py.

Costs that shape this module (wasmtime-py 50, see docs/architecture.md): the linker
and its host functions are built once per module (an ``InstancePre``); each call
gets a fresh wasmtime store and instance; guest memory is reached through the
raw data pointer with ``ctypes`` instead of ``Memory.read``/``write``.

Limits (:class:`essa.engine.Limits`) and cancellation:

- time and cancel: epoch interruption. One ticker thread per engine increments
  the epoch every :attr:`WasmtimeEngine.tick` seconds. When a running store
  reaches its epoch deadline, wasmtime calls :func:`_on_epoch` (the C API's
  epoch deadline callback), which ends the guest if its call was cancelled
  or its time is up, and otherwise sets the next deadline at most
  :data:`CHECK_EVERY` seconds ahead. So Wasm code stops within a tick of its
  limit and within ``CHECK_EVERY`` of a cancel; the deadline is read from the
  invocation each time, so time spent waiting for a remote call's result
  (:meth:`essa.abi.Invocation.paused`) does not count. WASI ``poll_oneoff`` is
  essa's own (:func:`poll_oneoff`), whose sleeps end at the deadline or on
  cancel.
- WASI is wasmtime's own, plus the program's arguments and stdin
  (:mod:`essa_wasmtime.wasi`).
- memory: the store's memory limit; modules are instrumented
  (:mod:`essa.instrument`, ``memory.grow`` hook only) so a refused grow is
  reported as ``memory limit exceeded`` when the call then fails.
- output: guest writes past the output limit fail with EIO (wasmtime's custom
  output cannot stop the guest), and the call is reported as over the limit.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.metadata
import math
import threading
import time
import weakref

import wasmtime
from wasmtime import _bindings, _ffi as ffi

from essa.abi import HOST_FUNCTIONS, IMPORT_MODULE, METER_FUNCTIONS, GuestFault, HostFunction, Invocation
from essa.abi import current as current_invocation
from essa.engine import START, Engine, Grants, Limits, ModuleInfo, Program
from essa.errors import GuestExit, GuestTrap, ModuleError
from essa.instrument import METER_MODULE, InstrumentError, instrument

from .wasi import POLL_ONEOFF, WASI, WasiCall, adapter_module

#: Seconds between two checks of a running guest for cancellation (at most).
CHECK_EVERY = 0.2

_I32 = wasmtime.ValType.i32()
_VALTYPES = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}


class WasmtimeEngine(Engine[wasmtime.Module]):
    """Runs modules with wasmtime (Cranelift)."""

    supported_grants = frozenset({"dirs", "env"})
    wasi_features = (
        "preview1, wasmtime's own",
        "argv",
        "stdin (streamed)",
        "symbolic and hard links inside grants",
        "poll_oneoff: waits end at the time limit",
    )

    def __init__(self, limits: Limits | None = None, grants: Grants | None = None) -> None:
        super().__init__(limits, grants)
        config = wasmtime.Config()
        config.epoch_interruption = True
        self._engine = wasmtime.Engine(config)
        limit = self.limits.time_limit
        #: Seconds between epoch ticks: a twentieth of the time limit, 10 to 100 ms.
        self.tick = min(0.1, max(0.01, limit / 20)) if limit else 0.1
        self._tick_us = ctypes.c_void_p(round(self.tick * 1e6))
        self._ticker: threading.Thread | None = None
        self._ticker_lock = threading.Lock()
        self._wasi_adapter = adapter_module(self._engine)

    @property
    def version(self) -> str:
        return importlib.metadata.version("wasmtime")

    @property
    def artifact_tag(self) -> str:
        # Artifacts hold the instrumented module (memory.grow hook) compiled
        # with epoch interruption.
        return f"{self.name}-{self.version}-i2"

    def compile(self, wasm: bytes) -> wasmtime.Module:
        try:
            instrumented = instrument(wasm, fuel=False, grow=True)
        except InstrumentError as exc:
            self._validate(wasm)  # names the real problem of an invalid module
            raise ModuleError(f"cannot run the module under essa's limits: {exc}") from None
        try:
            return wasmtime.Module(self._engine, instrumented)
        except wasmtime.WasmtimeError as exc:
            self._validate(wasm)
            # Valid, but not once instrumented: a bug of essa.instrument.
            raise ModuleError(f"cannot run the module under essa's limits: {_first_line(exc)}") from None

    def _validate(self, wasm: bytes) -> None:
        try:
            wasmtime.Module.validate(self._engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"not a valid Wasm module: {_first_line(exc)}") from None

    def _start_ticker(self) -> None:
        """Start the epoch ticker (once, on the first call)."""
        with self._ticker_lock:
            if self._ticker is None:
                self._ticker = threading.Thread(
                    target=_tick, args=(weakref.ref(self), self.tick), name="essa-wasmtime-epoch", daemon=True
                )
                self._ticker.start()

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
        linker.allow_shadowing = True
        poll_type = wasmtime.FuncType([_I32] * 4, [_I32])  # a type belongs to one engine: made per linker
        linker.define_func(WASI, "poll_oneoff", poll_type, POLL_ONEOFF, access_caller=True)
        for hf in HOST_FUNCTIONS:
            ty = wasmtime.FuncType([_I32] * hf.arity, [_I32])
            linker.define_func(IMPORT_MODULE, hf.name, ty, hf)
        for name, (impl, params, results) in METER_FUNCTIONS.items():
            ty = wasmtime.FuncType([_VALTYPES[p] for p in params], [_VALTYPES[r] for r in results])
            linker.define_func(METER_MODULE, name, ty, HostFunction(impl))
        self._grants = engine.grants
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
        engine = self._engine
        store = wasmtime.Store(engine._engine)
        store.set_limits(memory_size=engine.limits.max_memory_bytes)
        if engine._ticker is None:
            engine._start_ticker()
        # The first check comes after one tick; _on_epoch sets the next ones.
        store.set_epoch_deadline(1)
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _ON_EPOCH, engine._tick_us, _NO_FINALIZER)
        invocation.begin(engine.limits)
        wasi = wasmtime.WasiConfig()
        write = invocation.write_output
        wasi.stdout_custom = lambda data: None if write(1, data) else -errno.EIO
        wasi.stderr_custom = lambda data: None if write(2, data) else -errno.EIO
        grants = self._grants
        if grants:
            for grant in grants.dirs:
                wasi.preopen_dir(grant.host, grant.guest, grant.writable)
            if grants.env:
                wasi.env = [list(pair) for pair in grants.env]
        call = WasiCall(engine._engine, engine._wasi_adapter, invocation, wasi)  # argv, stdin
        store.set_wasi(wasi)
        call.begin()
        try:
            with invocation.active():
                instance = self._pre.instantiate(store)
                exports = instance.exports(store)
                func = exports[export]
                memory = exports.get("memory")
                call.attach(memory)
                if isinstance(memory, wasmtime.Memory):
                    invocation.memory = _Memory(store, memory)
                if arg is None:
                    func(store)
                else:
                    func(store, arg)
        except wasmtime.ExitTrap as exc:
            if exc.code != 0:
                raise GuestExit(exc.code) from None
            if invocation.exceeded is not None:
                raise invocation.failure("") from None
        except (wasmtime.Trap, wasmtime.WasmtimeError, GuestFault) as exc:
            if "exceeds memory limits" in str(exc):  # a minimum size above the cap, at instantiation
                invocation.exceed("memory")
            raise invocation.failure(_trap_message(exc)) from None
        except Exception as exc:
            # A host function failed unexpectedly; it recorded why.
            raise invocation.failure(f"{type(exc).__name__}: {exc}") from None
        finally:
            invocation.memory = None
            # Free the store now: its WASI output callbacks sit in wasmtime-py's
            # global slab until the native store is dropped, and they reach the
            # invocation, which reached the store: a cycle no collector sees,
            # leaking the instance's memory reservation on every call.
            store.close()
            call.end()
        if invocation.exceeded is not None:  # the output limit: wasmtime lets the guest go on
            raise invocation.failure("")


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


def _on_epoch(_context, tick_us, next_deadline, update_kind) -> int:
    """wasmtime reached a running store's epoch deadline: end its guest, or set the next check.

    Runs on the guest's own thread, so the invocation is :func:`essa.abi.current`.
    ``tick_us`` is the engine's tick in microseconds (the callback's data).
    Returns 0 to go on, or a ``wasmtime_error_t`` pointer that makes the guest trap.
    """
    try:
        inv = current_invocation()
        remaining = inv.remaining()
        if inv.cancelled is None and (remaining is None or remaining > 0):
            tick = (tick_us or 100_000) / 1e6
            ticks = max(1, round(CHECK_EVERY / tick))
            if remaining is not None:
                ticks = min(ticks, math.ceil(remaining / tick))
            next_deadline[0] = max(1, ticks)
            update_kind[0] = 0  # continue
            return 0
        why = inv.cancelled if inv.cancelled is not None else inv.exceed("time")
    except GuestFault:  # no invocation on this thread (cannot happen): check again later
        next_deadline[0] = 1
        update_kind[0] = 0
        return 0
    error = ffi.wasmtime_error_new(why.encode("utf-8", "replace"))
    return ctypes.cast(error, ctypes.c_void_p).value or 0


# The C API's epoch deadline callback, which wasmtime-py binds but does not wrap
# (hence the pinned wasmtime version range of this plugin).
_CALLBACK_TYPES = _bindings._wasmtime_store_epoch_deadline_callback.argtypes
_ON_EPOCH = _CALLBACK_TYPES[1](_on_epoch)
_NO_FINALIZER = ctypes.cast(None, _CALLBACK_TYPES[3])


def _tick(engine_ref: "weakref.ref[WasmtimeEngine]", period: float) -> None:
    """Increment an engine's epoch every ``period`` seconds while the engine lives."""
    while True:
        time.sleep(period)
        engine = engine_ref()
        if engine is None:
            return
        engine._engine.increment_epoch()
        del engine


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
