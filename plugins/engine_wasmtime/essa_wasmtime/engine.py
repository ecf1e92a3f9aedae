"""essa's engine interface on wasmtime-py.

The linker and its host functions are built once per module (an
``InstancePre``); each call gets a fresh wasmtime store and instance, deleted
when the call ends. How a call reaches wasmtime is a *binding*: ``capi``
(:mod:`essa_wasmtime.capi`, the default) calls wasmtime's C API directly and
costs a fraction of ``public`` (:mod:`essa_wasmtime.public`), wasmtime-py's
public API, which is the fallback where ``capi`` cannot run.
``ESSA_WASMTIME_BINDING=public`` (or ``capi``) chooses one.

Limits (:class:`essa.wasm.limits.Limits`) and cancellation:

- time and cancel: epoch interruption. One ticker thread per engine increments
  the epoch every :attr:`WasmtimeEngine.tick` seconds (the engines of a
  process share their wasmtime engines, so with several alive the epoch
  advances faster and guests are checked more often). When a running store
  reaches its epoch deadline, wasmtime calls :func:`_on_epoch` (the C API's
  epoch deadline callback), which ends the guest if its call was cancelled
  or its time is up, and otherwise sets the next deadline at most
  :data:`CHECK_EVERY` seconds ahead. So Wasm code stops within a tick of its
  limit and within ``CHECK_EVERY`` of a cancel; the deadline is read from the
  invocation each time, so time spent waiting for a remote call's result
  (:meth:`essa.wasm.invocation.Invocation.paused`) does not count. WASI ``poll_oneoff`` is
  essa's own (:func:`essa_wasmtime.wasi.poll_oneoff`), whose sleeps end at the
  deadline or on cancel.
- WASI is wasmtime's own, plus the program's arguments and stdin
  (:mod:`essa_wasmtime.wasi`); stdout and stderr are written on the guest's
  thread (:mod:`essa_wasmtime.stdio`).
- memory: the store's memory limit; modules are instrumented
  (:mod:`essa.wasm.instrument`, ``memory.grow`` hook only) so a refused grow is
  reported as ``memory limit exceeded`` when the call then fails.
- output: guest writes past the output limit fail with EIO (as wasmtime's
  custom output streams answer them; neither stops the guest), and the call
  is reported as over the limit.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import math
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Callable

import wasmtime
from wasmtime import _ffi as ffi

from essa.plugin import (
    HOST_FUNCTIONS,
    IMPORT_MODULE,
    METER_FUNCTIONS,
    METER_MODULE,
    START,
    Engine,
    EssaError,
    Grants,
    GuestExit,
    GuestFault,
    HostFunction,
    InstrumentError,
    Invocation,
    Limits,
    ModuleError,
    ModuleInfo,
    Program,
    current_invocation,
    instrument,
    trap_location,
)

from . import capi
from .linking import HostImport
from .public import PublicBinding
from .stdio import FD_CLOSE, FD_RENUMBER, FD_WRITE
from .wasi import CLOCK_TIME_GET, POLL_ONEOFF, WASI, adapter_module

log = logging.getLogger("essa.wasmtime")

#: Seconds between two checks of a running guest for cancellation (at most).
CHECK_EVERY = 0.2

#: The environment variable that chooses the binding: ``capi`` or ``public``.
BINDING_VARIABLE = "ESSA_WASMTIME_BINDING"

@dataclass(frozen=True)
class CompiledModule:
    """A compiled module and the wasmtime engine it belongs to."""

    module: wasmtime.Module
    engine: wasmtime.Engine


class WasmtimeEngine(Engine[CompiledModule]):
    """Runs modules with wasmtime (Cranelift).

    With the ``capi`` binding, instances come from wasmtime's pooling
    allocator: :attr:`pool_slots` instances (with their linear memories) are
    reserved once per process, and a call takes a free slot instead of mapping
    a fresh memory and unmapping it at the end (which was about half the cost
    of a short call). A module the pool cannot hold (more than one memory or
    table, a table of more than 20,000 elements, ...), and a call that finds
    every slot taken (nested calls hold theirs while they wait), run in a plain
    engine that maps each instance on its own, as every call does with the
    ``public`` binding or where the pool cannot be reserved.
    """

    supported_grants = frozenset({"dirs", "env"})
    wasi_features = (
        "preview1, wasmtime's own",
        "argv",
        "stdin (streamed)",
        "symbolic and hard links inside grants",
        "poll_oneoff: waits end at the time limit",
    )

    #: Instances the pool holds at once; each reserves address space for a
    #: 4 GiB linear memory (nothing is committed until a guest touches it).
    pool_slots = 100
    #: Bytes of a slot's memory that stay mapped between calls (zeroed, not
    #: unmapped: cheaper for the first pages, which every call touches).
    pool_keep_resident = 1 << 16

    def __init__(self, limits: Limits | None = None, grants: Grants | None = None) -> None:
        super().__init__(limits, grants)
        binding = _binding_class()
        pooled = _pooled_engine(self.pool_slots, self.pool_keep_resident) if binding is capi.CapiBinding else None
        #: Whether modules run in a pooled engine (the plain one takes what the pool cannot).
        self.pooled = pooled is not None
        self._engine = pooled or _plain_engine()
        limit = self.limits.time_limit
        #: Seconds between epoch ticks: a twentieth of the time limit, 10 to 100 ms.
        self.tick = min(0.1, max(0.01, limit / 20)) if limit else 0.1
        self._ticker: threading.Thread | None = None
        self._ticker_lock = threading.Lock()
        self.binding = binding(_on_epoch, round(self.tick * 1e6))

    @property
    def version(self) -> str:
        return importlib.metadata.version("wasmtime")

    @property
    def artifact_tag(self) -> str:
        # Artifacts hold the instrumented module (memory.grow hook) compiled
        # with epoch interruption, and memories that never move.
        return f"{self.name}-{self.version}-i3"

    def compile(self, wasm: bytes) -> CompiledModule:
        try:
            instrumented = instrument(wasm, fuel=False, grow=True)
        except InstrumentError as exc:
            self._validate(wasm)  # names the real problem of an invalid module
            raise ModuleError(f"cannot run the module under essa's limits: {exc}") from None
        try:
            return self._load(lambda engine: wasmtime.Module(engine, instrumented))
        except wasmtime.WasmtimeError as exc:
            self._validate(wasm)
            # Valid, but not once instrumented: a bug of essa.wasm.instrument.
            raise ModuleError(f"cannot run the module under essa's limits: {_first_line(exc)}") from None

    def _load(self, load: Callable[[wasmtime.Engine], wasmtime.Module]) -> CompiledModule:
        """``load`` the module into the pooled engine, or into the plain one if the pool cannot hold it."""
        try:
            return CompiledModule(load(self._engine), self._engine)
        except wasmtime.WasmtimeError as exc:
            if not (self.pooled and _DOES_NOT_FIT in str(exc)):
                raise
        plain = _plain_engine()
        return CompiledModule(load(plain), plain)

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

    def _increment_epochs(self) -> None:
        self._engine.increment_epoch()
        if self.pooled and _engines.get("plain") is not None:  # it runs what the pool cannot hold
            _engines["plain"].increment_epoch()

    def serialize(self, compiled: CompiledModule) -> bytes:
        return bytes(compiled.module.serialize())

    def deserialize(self, artifact: bytes) -> CompiledModule:
        try:
            return self._load(lambda engine: wasmtime.Module.deserialize(engine, artifact))
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"unusable wasmtime artifact: {_first_line(exc)}") from None

    def prepare(self, compiled: CompiledModule) -> "WasmtimeProgram":
        return WasmtimeProgram(self, compiled)


def _config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.epoch_interruption = True
    # Linear memories never move (they are reserved whole up front, so this
    # costs nothing): the capi binding reads a memory's address once.
    config.memory_may_move = False
    return config


# The wasmtime engines of this process, shared by every WasmtimeEngine: they
# differ in nothing that matters to a module (limits are per store), and a
# pool's address space is reserved once, not once per WasmtimeEngine.
# Modules of either engine load each other's artifacts.
_engines: dict[object, wasmtime.Engine | wasmtime.Module | None] = {}
_engines_lock = threading.Lock()


def _plain_engine() -> wasmtime.Engine:
    """The engine that maps each instance's memory on its own."""
    with _engines_lock:
        engine = _engines.get("plain")
        if engine is None:
            engine = _engines["plain"] = wasmtime.Engine(_config())
        return engine


def _wasi_adapter(engine: wasmtime.Engine) -> wasmtime.Module:
    """:func:`essa_wasmtime.wasi.adapter_module` for ``engine`` (compiled once per engine)."""
    key = ("adapter", id(engine))  # engines stay in _engines for the process's lifetime
    with _engines_lock:
        adapter = _engines.get(key)
        if adapter is None:
            adapter = _engines[key] = adapter_module(engine)
        return adapter


def _pooled_engine(slots: int, keep_resident: int) -> wasmtime.Engine | None:
    """The engine whose instances come from a pool of ``slots``, or ``None`` if the pool cannot be reserved."""
    key = ("pooled", slots, keep_resident)
    with _engines_lock:
        if key not in _engines:
            # wasmtime aborts the process (a panic in its C API) when it cannot
            # map the pool, so find out first.
            why_not = _cannot_reserve(slots * _SLOT_BYTES)
            if why_not is None:
                config = _config()
                capi.pool(config, slots, keep_resident)
                _engines[key] = wasmtime.Engine(config)
            else:
                log.warning("essa-plugin-wasmtime: no instance pool (%s); each call maps its own memory", why_not)
                _engines[key] = None
        return _engines[key]


#: Address space one slot of the pool takes: a 4 GiB linear memory, its guard
#: region and its share of tables and instance data (measured: ~4.05 GiB).
_SLOT_BYTES = (4 << 30) + (128 << 20)


def _cannot_reserve(size: int) -> str | None:
    """Why this process cannot reserve ``size`` bytes of address space, or ``None`` if it can."""
    try:
        import mmap
        import resource
    except ImportError:  # not a Unix
        return "no way to check the address space here"
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        return f"the address space is limited to {soft >> 20} MiB (ulimit -v)"
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    try:
        mmap.mmap(-1, size, flags=flags, prot=0).close()  # PROT_NONE
    except (OSError, OverflowError, ValueError) as exc:
        return f"cannot reserve {size >> 30} GiB of address space: {exc}"
    return None


#: What wasmtime says of a module its pooling allocator cannot hold, and of a full pool.
_DOES_NOT_FIT = "does not fit in pooling allocator requirements"
_POOL_FULL = "maximum concurrent limit of"


class Linked:
    """A module linked with WASI and the essa host functions, in one engine."""

    __slots__ = ("engine", "pre", "engine_address", "pre_address", "pooled", "wasi_adapter")

    def __init__(self, binding, compiled: CompiledModule, pooled: bool) -> None:
        linker = wasmtime.Linker(compiled.engine)
        linker.define_wasi()
        linker.allow_shadowing = True
        for host_import in HOST_IMPORTS:
            binding.define(linker, host_import)
        try:
            #: Ready to instantiate.
            self.pre = linker.instantiate_pre(compiled.module)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"cannot link module: {_first_line(exc)}") from None
        self.engine = compiled.engine
        self.engine_address = ctypes.cast(compiled.engine.ptr(), ctypes.c_void_p).value
        self.pre_address = ctypes.cast(self.pre.ptr(), ctypes.c_void_p).value
        #: Whether instances come from the engine's pool (which may be full).
        self.pooled = pooled
        #: The module that reaches wasmtime's own poll_oneoff (see :mod:`essa_wasmtime.wasi`).
        self.wasi_adapter = _wasi_adapter(compiled.engine)


class WasmtimeProgram(Program):
    """A module linked with WASI and the essa host functions."""

    def __init__(self, engine: WasmtimeEngine, compiled: CompiledModule) -> None:
        self._engine = engine
        self._compiled = compiled
        self._linked = Linked(engine.binding, compiled, engine.pooled and compiled.engine is engine._engine)
        self._spare: Linked | None = None
        self._spare_lock = threading.Lock()
        self._grants = engine.grants
        #: Whether calls get more than stdio, clocks and randomness (see :meth:`wasi_config`).
        self.has_grants = bool(engine.grants)
        #: The store's memory cap of every call.
        self.max_memory_bytes = engine.limits.max_memory_bytes
        functions = {}
        for export in compiled.module.exports:
            ty = export.type
            if isinstance(ty, wasmtime.FuncType):
                functions[export.name] = (tuple(map(str, ty.params)), tuple(map(str, ty.results)))
        self.info = ModuleInfo(functions)

    def wasi_config(self) -> wasmtime.WasiConfig:
        """A call's WASI context: the engine's grants, nothing else (bindings add the output)."""
        wasi = wasmtime.WasiConfig()
        grants = self._grants
        if grants:
            for grant in grants.dirs:
                wasi.preopen_dir(grant.host, grant.guest, grant.writable)
            if grants.env:
                wasi.env = [list(pair) for pair in grants.env]
        return wasi

    def run(self, invocation: Invocation, export: str, arg: int | None = None) -> None:
        engine = self._engine
        if engine._ticker is None:
            engine._start_ticker()
        invocation.begin(engine.limits)
        try:
            self._check_export(export, arg)
            self._call(invocation, export, arg)
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
        if invocation.exceeded is not None:  # the output limit: wasmtime lets the guest go on
            raise invocation.failure("")

    def _call(self, invocation: Invocation, export: str, arg: int | None) -> None:
        binding = self._engine.binding
        linked = self._linked
        try:
            binding.call(self, linked, invocation, export, arg)
        except wasmtime.WasmtimeError as exc:
            # Every slot of the pool is taken (nested calls hold theirs while
            # they wait): instantiation failed before any guest code ran.
            if not (linked.pooled and str(exc).startswith(_POOL_FULL)):
                raise
            binding.call(self, self._spare_linked(), invocation, export, arg)

    def _spare_linked(self) -> Linked:
        """The module linked in the plain engine, for calls that find the pool full (on first use)."""
        if self._spare is None:
            with self._spare_lock:
                if self._spare is None:
                    plain = _plain_engine()
                    module = wasmtime.Module.deserialize(plain, self._compiled.module.serialize())
                    self._spare = Linked(self._engine.binding, CompiledModule(module, plain), pooled=False)
        return self._spare

    def _check_export(self, export: str, arg: int | None) -> None:
        """Refuse an export that is missing or not of the type ``run`` calls it with."""
        signature = self.info.functions.get(export)
        expected = (("i32",), ()) if arg is not None else ((), ())
        if signature is None:
            raise GuestFault(f"the module has no exported function {export!r}")
        if signature != expected:
            raise GuestFault(f"cannot call {export}: its type is {_shown_type(signature)}, not {_shown_type(expected)}")


def _shown_type(signature: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    params, results = signature
    return f"({', '.join(params)}) -> ({', '.join(results)})"


def _on_epoch(_context, tick_us, next_deadline, update_kind) -> int:
    """wasmtime reached a running store's epoch deadline: end its guest, or set the next check.

    Runs on the guest's own thread, so the invocation is :func:`essa.wasm.invocation.current`.
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


def _tick(engine_ref: "weakref.ref[WasmtimeEngine]", period: float) -> None:
    """Increment an engine's epoch every ``period`` seconds while the engine lives."""
    while True:
        time.sleep(period)
        engine = engine_ref()
        if engine is None:
            return
        engine._increment_epochs()
        del engine


#: Every function essa links into a module: its WASI ``poll_oneoff`` and stdio
#: writes (with the two functions that may move stdio), the eight ``host``
#: functions and the meter functions of instrumented modules.
HOST_IMPORTS: tuple[HostImport, ...] = (
    HostImport(WASI, "poll_oneoff", ("i32",) * 4, ("i32",), POLL_ONEOFF, caller=True),
    HostImport(WASI, "fd_write", ("i32",) * 4, ("i32",), FD_WRITE, caller=True),
    HostImport(WASI, "clock_time_get", ("i32", "i64", "i32"), ("i32",), CLOCK_TIME_GET),
    HostImport(WASI, "fd_close", ("i32",), ("i32",), FD_CLOSE, caller=True),
    HostImport(WASI, "fd_renumber", ("i32",) * 2, ("i32",), FD_RENUMBER, caller=True),
    *(HostImport(IMPORT_MODULE, hf.name, ("i32",) * hf.arity, ("i32",), hf.call) for hf in HOST_FUNCTIONS),
    *(
        HostImport(METER_MODULE, name, params, results, HostFunction(impl).call)
        for name, (impl, params, results) in METER_FUNCTIONS.items()
    ),
)


def _binding_class():
    """The binding class ``ESSA_WASMTIME_BINDING`` asks for, else ``capi`` where it can run."""
    wanted = os.environ.get(BINDING_VARIABLE, "").strip().lower()
    if wanted not in ("", "capi", "public"):
        raise EssaError(f"{BINDING_VARIABLE}={wanted!r}: expected 'capi' or 'public'")
    if wanted == "public":
        return PublicBinding
    reason = capi.unavailable_reason() or _capi_cannot_define()
    if reason is None:
        return capi.CapiBinding
    if wanted == "capi":
        raise EssaError(f"{BINDING_VARIABLE}=capi: the capi binding cannot run here: {reason}")
    if not _warned:
        _warned.append(True)
        log.warning("essa-plugin-wasmtime: using wasmtime-py's slower public API: %s", reason)
    return PublicBinding


_warned: list[bool] = []


def _capi_cannot_define() -> str | None:
    for host_import in HOST_IMPORTS:
        problem = capi.cannot_define(host_import)
        if problem is not None:
            return f"{host_import.module}.{host_import.name} is {problem}"
    return None


def _trap_message(exc: BaseException) -> str:
    """The cause of a wasmtime trap in one line, with where it happened (:func:`essa.plugin.trap_location`).

    e.g. ``wasm `unreachable` instruction executed (in abort <- check <- essa_function_export_tally)``;
    a module built without its ``name`` section has ``<wasm function 12>`` for names.
    """
    text = str(exc)
    head, sep, causes = text.partition("Caused by:")
    if not sep:
        return _first_line(exc)
    reasons = [line.strip().split(": ", 1)[-1] if line.strip()[:1].isdigit() else line.strip()
               for line in causes.strip().splitlines() if line.strip()]
    reasons = [r.removeprefix("wasm trap: ") for r in reasons]
    # "    0:   0x3774 - module.wasm!function": the module's name says nothing new
    frames = (line.split(" - ", 1)[1].strip().split("!", 1)[-1] for line in head.splitlines() if " - " in line)
    return "; ".join(reversed(reasons)) + trap_location(frames)


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["WasmtimeEngine", "START"]
