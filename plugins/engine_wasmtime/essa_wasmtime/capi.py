"""The ``capi`` binding: each call's store, instance and host calls through wasmtime's C API.

wasmtime-py's public layer spends most of a short call in Python (CPU time
measured here, wasmtime-py 50): a host function goes through its generic
trampoline, which builds a ``Caller`` and a ``Val`` per argument and result
(~13 µs per call); ``Func.__call__`` looks up and converts the function's
type on every call (~20 µs); a store with its WASI context and limits is a
stack of ``Managed`` objects. This binding calls the C API that wasmtime-py's
shared library exports, through ctypes prototypes of its own:

- host functions are defined with ``wasmtime_linker_define_func_unchecked``;
  their callback reads the i32 arguments straight out of the raw value array
  and writes the result back into it (~0.4 µs per call);
- the export is called with ``wasmtime_func_call_unchecked`` (~1.5 µs). That
  is safe only for the right type, so :meth:`CapiBinding.call` is only used
  for exports whose type the engine checked (``(i32) -> ()`` or ``() -> ()``);
- guest stdout/stderr go through one static callback per stream, which finds
  the invocation by a key (no per-call closures in wasmtime-py's global slab of
  output callbacks, and nothing to break when the store is deleted);
- memory: the data pointer is read once per instance (the engine sets
  ``memory_may_move = False``, so it never changes) and bytes move through a
  ``memoryview`` of it; the size is read again only when an access reaches
  past the size last seen (memories never shrink).

:func:`pool` configures wasmtime's pooling allocator, which wasmtime-py's
``Config`` does not offer (see :class:`essa_wasmtime.engine.WasmtimeEngine`).

Calls that run guest code (instantiation, the export call) release the GIL;
the short bookkeeping calls keep it, so a call does not wait for other
threads between two steps.

What this takes from wasmtime-py beyond its public API: the loaded library
(``wasmtime._ffi.dll``), the ctypes layouts of ``wasmtime_instance_t`` and
``wasmtime_extern_t`` from its generated bindings, and ``_from_ptr`` of
``WasmtimeError`` and ``Trap`` to report a failed call. :func:`unavailable_reason`
checks all of it at import; where anything is missing the engine uses the
public binding (:mod:`essa_wasmtime.public`) instead, as it does with
``ESSA_WASMTIME_BINDING=public``. The plugin pins wasmtime to one major
version, checks each C function's parameter count against wasmtime-py's
generated bindings of the library it ships, and the conformance suite runs on
both bindings.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import threading
from ctypes import (
    POINTER,
    byref,
    c_char_p,
    c_int32,
    c_int64,
    c_size_t,
    c_ssize_t,
    c_uint8,
    c_uint64,
    c_void_p,
)
from typing import Callable

import wasmtime

from essa.plugin import GuestFault, Invocation, RateLimitedLog, describe

from .linking import CallSettings, HostImport, LinkedModule
from .wasi import WasiCall

_problems = RateLimitedLog(logging.getLogger("essa.wasmtime"))

#: Why this binding cannot be used with the installed wasmtime-py, or ``None``.
_problem: str | None = None

try:
    from wasmtime import _bindings as _b
    from wasmtime import _ffi

    _dll = _ffi.dll
    _Instance = _b.wasmtime_instance_t
    _Extern = _b.wasmtime_extern_t
    _ErrorPtr = POINTER(_b.wasmtime_error_t)
    _CallerPtr = POINTER(_b.wasmtime_caller_t)
    _TrapPtr = POINTER(_b.wasm_trap_t)
    _EXTERN_FUNC = _ffi.WASMTIME_EXTERN_FUNC.value
    _EXTERN_MEMORY = _ffi.WASMTIME_EXTERN_MEMORY.value
    _from_error = wasmtime.WasmtimeError._from_ptr
    _from_trap = wasmtime.Trap._from_ptr
    if ctypes.sizeof(_b.wasmtime_val_raw_t) != 16:
        raise ImportError(f"wasmtime_val_raw_t is {ctypes.sizeof(_b.wasmtime_val_raw_t)} bytes, not 16")
except (ImportError, AttributeError) as exc:  # a wasmtime-py that changed its internals
    _problem = f"wasmtime-py internals changed: {exc}"


def _function(name: str, restype, *argtypes, gil: bool = True):
    """A C API function of wasmtime's library, with our own prototype.

    ``gil=True`` keeps the GIL during the call (short calls that never run
    guest code); ``gil=False`` releases it (calls that run guest code, which
    may take long and call back into Python).
    """
    _check_arity(name, argtypes)
    prototype = (ctypes.PYFUNCTYPE if gil else ctypes.CFUNCTYPE)(restype, *argtypes)
    return prototype((name, _dll))


def _check_arity(name: str, argtypes: tuple) -> None:
    """Refuse a C function whose parameters changed in this wasmtime (a wrong prototype is memory corruption).

    wasmtime-py generates its ``_bindings`` from the C headers of the very
    library it ships, so its prototype of ``name`` tells what this library takes.
    """
    generated = getattr(_b, f"_{name}", None)
    expected = getattr(generated, "argtypes", None)
    if expected is not None and len(expected) != len(argtypes):
        raise AttributeError(f"{name} takes {len(expected)} parameters in the installed wasmtime, not {len(argtypes)}")


#: The value array of an unchecked call or callback, seen as i32s: value ``i``
#: is at index ``4 * i`` (each ``wasmtime_val_raw_t`` is 16 bytes; an i32 is
#: its first 4, little-endian).
_VALS = POINTER(c_int32)
_VALS_PER_RAW = 4
_UNCHECKED_CALLBACK = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, _VALS, c_size_t)
_OUTPUT_CALLBACK = ctypes.CFUNCTYPE(c_ssize_t, c_void_p, c_void_p, c_size_t)
_EPOCH_CALLBACK = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, POINTER(c_uint64), POINTER(c_uint8))

if _problem is None:
    try:
        _store_new = _function("wasmtime_store_new", c_void_p, c_void_p, c_void_p, c_void_p)
        _store_context = _function("wasmtime_store_context", c_void_p, c_void_p)
        _store_limiter = _function("wasmtime_store_limiter", None, c_void_p, c_int64, c_int64, c_int64, c_int64, c_int64)
        _store_delete = _function("wasmtime_store_delete", None, c_void_p)
        _set_epoch_deadline = _function("wasmtime_context_set_epoch_deadline", None, c_void_p, c_uint64)
        _epoch_deadline_callback = _function(
            "wasmtime_store_epoch_deadline_callback", None, c_void_p, _EPOCH_CALLBACK, c_void_p, c_void_p
        )
        _set_wasi = _function("wasmtime_context_set_wasi", c_void_p, c_void_p, c_void_p)
        _set_stdout = _function("wasi_config_set_stdout_custom", None, c_void_p, _OUTPUT_CALLBACK, c_void_p, c_void_p)
        _set_stderr = _function("wasi_config_set_stderr_custom", None, c_void_p, _OUTPUT_CALLBACK, c_void_p, c_void_p)
        _instantiate = _function(
            "wasmtime_instance_pre_instantiate", c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, gil=False
        )
        _export_get = _function(
            "wasmtime_instance_export_get", ctypes.c_bool, c_void_p, c_void_p, c_char_p, c_size_t, c_void_p
        )
        _call_unchecked = _function(
            "wasmtime_func_call_unchecked", c_void_p, c_void_p, c_void_p, _VALS, c_size_t, c_void_p, gil=False
        )
        _memory_data = _function("wasmtime_memory_data", c_size_t, c_void_p, c_void_p)
        _memory_data_size = _function("wasmtime_memory_data_size", c_size_t, c_void_p, c_void_p)
        _define_unchecked = _function(
            "wasmtime_linker_define_func_unchecked", c_void_p,
            c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_void_p, _UNCHECKED_CALLBACK, c_void_p, c_void_p,
        )
        _wasi_config_new = _function("wasi_config_new", c_void_p)
        _trap_new = _function("wasmtime_trap_new", c_void_p, c_char_p, c_size_t)
        _trap_delete = _function("wasm_trap_delete", None, c_void_p)
        _pool_new = _function("wasmtime_pooling_allocation_config_new", c_void_p)
        _pool_delete = _function("wasmtime_pooling_allocation_config_delete", None, c_void_p)
        _pool_setters = tuple(
            _function(f"wasmtime_pooling_allocation_config_{name}_set", None, c_void_p, setter_type)
            for name, setter_type in (
                ("total_core_instances", ctypes.c_uint32),
                ("total_memories", ctypes.c_uint32),
                ("total_tables", ctypes.c_uint32),
                ("linear_memory_keep_resident", c_size_t),
                ("table_keep_resident", c_size_t),
            )
        )
        _pool_strategy = _function("wasmtime_pooling_allocation_strategy_set", None, c_void_p, c_void_p)
        _error_delete = _function("wasmtime_error_delete", None, c_void_p)
    except AttributeError as exc:  # a symbol the library no longer exports
        _problem = f"wasmtime's C API changed: {exc}"


def unavailable_reason() -> str | None:
    """Why the ``capi`` binding cannot run with the installed wasmtime, or ``None`` if it can."""
    return _problem


def pool(config: wasmtime.Config, slots: int, keep_resident: int) -> None:
    """Make engines of ``config`` allocate instances from a pool of ``slots``.

    Each slot holds one instance with one linear memory and one table; a slot
    keeps ``keep_resident`` bytes of its memory (and table) mapped between
    instances, zeroing them instead of unmapping them.
    """
    pooling = _pool_new()
    try:
        for setter, value in zip(_pool_setters, (slots, slots, slots, keep_resident, keep_resident), strict=True):
            setter(pooling, value)
        _pool_strategy(config.ptr(), pooling)
    finally:
        _pool_delete(pooling)


def _address(pointer) -> int:
    """The address a wasmtime-py pointer (``Managed.ptr()``) holds."""
    return ctypes.cast(pointer, c_void_p).value or 0


# -- host functions ------------------------------------------------------------------

_local = threading.local()


def _trap(exc: BaseException) -> int:
    """Make the calling guest trap because a host function raised ``exc``.

    The exception is kept for this thread, and :func:`_raise_failure` raises it
    once the call into the guest returns (as wasmtime-py does, but per thread).
    """
    _local.raised = exc
    message = b"host function failed"
    return _trap_new(message, len(message)) or 0


def _callback(impl: Callable[..., int | None], params: tuple[str, ...], returns: bool, caller: bool) -> Callable:
    """An unchecked host callback calling ``impl`` with arguments of types ``params`` (``i32``, ``i64``).

    With ``caller``, ``impl`` gets the calling instance's ``wasmtime.Caller``
    first (valid during the call only).
    """
    if "i64" in params:
        return _wide_callback(impl, params, returns)
    stop = len(params) * _VALS_PER_RAW
    # (no arguments: () - a pointer's [0:0:4] is not empty)
    if caller:

        def host(_env, raw_caller, vals, _count):
            wrapped = wasmtime.Caller(ctypes.cast(raw_caller, _CallerPtr))
            try:
                result = impl(wrapped, *(vals[0:stop:_VALS_PER_RAW] if stop else ()))
                if returns:
                    vals[0] = result
            except BaseException as exc:  # noqa: B036 - the guest traps, the caller re-raises it
                return _trap(exc)
            finally:
                wrapped._invalidate()
            return 0

    elif returns:

        def host(_env, _caller, vals, _count):
            try:
                vals[0] = impl(*(vals[0:stop:_VALS_PER_RAW] if stop else ()))
            except BaseException as exc:  # noqa: B036 - the guest traps, the caller re-raises it
                return _trap(exc)
            return 0

    else:

        def host(_env, _caller, vals, _count):
            try:
                impl(*(vals[0:stop:_VALS_PER_RAW] if stop else ()))
            except BaseException as exc:  # noqa: B036
                return _trap(exc)
            return 0

    return _UNCHECKED_CALLBACK(host)


def _wide_callback(impl: Callable[..., int | None], params: tuple[str, ...], returns: bool) -> Callable:
    """:func:`_callback` for a function with i64 parameters and no caller (rarely called: the i32 ones are the
    hot path)."""
    # an i64 is the first 8 bytes of its value, little-endian: two i32s, the low one first
    slots = [(i * _VALS_PER_RAW, kind == "i64") for i, kind in enumerate(params)]

    def host(_env, _caller, vals, _count):
        args = [((vals[at] & 0xFFFFFFFF) | (vals[at + 1] << 32)) if wide else vals[at] for at, wide in slots]
        try:
            result = impl(*args)
            if returns:
                vals[0] = result
        except BaseException as exc:  # noqa: B036 - the guest traps, the caller re-raises it
            return _trap(exc)
        return 0

    return _UNCHECKED_CALLBACK(host)


#: (callback, host function) by host function, created once per process and
#: kept alive here for as long as any linker may call them.
_callbacks: dict[int, tuple] = {}


def cannot_define(host_import: HostImport) -> str | None:
    """Why :func:`define` cannot define ``host_import`` (its types), or ``None``."""
    if any(p not in ("i32", "i64") for p in host_import.params) or host_import.results not in ((), ("i32",)):
        return "not a function of i32 and i64 parameters with at most one i32 result"
    if host_import.caller and "i64" in host_import.params:
        return "a function of i64 parameters that takes its caller"
    return None


def define(linker: wasmtime.Linker, host_import: HostImport) -> None:
    """Define one host import (i32 and i64 parameters, at most one i32 result) in ``linker``."""
    problem = cannot_define(host_import)
    if problem is not None:
        raise ValueError(f"the capi binding cannot define {host_import.module}.{host_import.name}: {problem}")
    callback = _callbacks.get(id(host_import.impl))
    if callback is None:
        callback = _callbacks[id(host_import.impl)] = (
            _callback(host_import.impl, host_import.params, bool(host_import.results), host_import.caller),
            host_import.impl,  # keeps the id valid
        )
    module, name = host_import.module.encode(), host_import.name.encode()
    func_type = host_import.type  # alive until the linker has copied it
    error = _define_unchecked(
        linker.ptr(), module, len(module), name, len(name), func_type.ptr(), callback[0], None, None
    )
    if error:
        raise _from_error(ctypes.cast(error, _ErrorPtr))


# -- guest output --------------------------------------------------------------------

#: Invocations whose guest may write output now, by key (the callbacks' data).
_writers: dict[int, Invocation] = {}
_keys = itertools.count(1)


def _output(stream: int):
    def write(key, data, size):
        invocation = _writers.get(key or 0)
        try:
            if invocation is not None and invocation.write_output(stream, ctypes.string_at(data, size)):
                return size
        except Exception as exc:  # the guest sees EIO; the executor goes on
            _problems.warning("output", "guest output lost: %s", describe(exc), exc_info=exc)
        return -errno.EIO

    return _OUTPUT_CALLBACK(write)


_STDOUT = _output(1)
_STDERR = _output(2)


# -- memory --------------------------------------------------------------------------


class Memory:
    """Bounds-checked access to one instance's linear memory (:class:`essa.wasm.abi.GuestMemory`)."""

    __slots__ = ("_context", "_memory", "_view", "_size")

    def __init__(self, context: int, extern) -> None:
        self._context = context
        self._memory = byref(extern.of.memory)
        # A view of the whole 32-bit address space from the memory's base
        # (fixed: the engine's memories never move), used only within the
        # memory's size: slicing it moves bytes without a foreign call.
        self._view = memoryview(_ADDRESS_SPACE.from_address(_memory_data(context, self._memory))).cast("B")
        self._size = _memory_data_size(context, self._memory)

    def _check(self, ptr: int, end: int) -> None:
        # The guest may have grown its memory since the size was last read.
        self._size = size = _memory_data_size(self._context, self._memory)
        if end > size:
            raise GuestFault(f"[{ptr:#x}, {end:#x}) is outside the guest's memory of {size} bytes")

    def read(self, ptr: int, length: int) -> bytes:
        end = ptr + length
        if end > self._size:
            self._check(ptr, end)
        return self._view[ptr:end].tobytes()

    def write(self, ptr: int, data: bytes) -> None:
        end = ptr + len(data)
        if end > self._size:
            self._check(ptr, end)
        self._view[ptr:end] = data


#: The type of :class:`Memory`'s view (an array type is created once per length).
_ADDRESS_SPACE = ctypes.c_ubyte * (1 << 32)


# -- one call --------------------------------------------------------------------------


def _raise_failure(error: int | None, trap: int | None) -> None:
    """Raise what made a call into the guest fail: a host function's exception, else wasmtime's error or trap."""
    raised = getattr(_local, "raised", None)
    if raised is not None:
        _local.raised = None
        if error:
            _error_delete(error)
        if trap:
            _trap_delete(trap)
        raise raised
    if error:
        if trap:
            _trap_delete(trap)
        raise _from_error(ctypes.cast(error, _ErrorPtr))
    raise _from_trap(ctypes.cast(trap, _TrapPtr))


class CapiBinding:
    """Runs calls through the C API (see the module docstring)."""

    name = "capi"

    def __init__(self, on_epoch: Callable, tick_us: int) -> None:
        self._on_epoch = _EPOCH_CALLBACK(on_epoch)
        self._tick_us = tick_us

    def define(self, linker: wasmtime.Linker, host_import: HostImport) -> None:
        define(linker, host_import)

    def call(
        self, program: CallSettings, linked: LinkedModule, invocation: Invocation, export: str, arg: int | None
    ) -> None:
        """Instantiate ``linked`` in a fresh store and call ``export``; the store is deleted at the end.

        ``export`` must be a function of type ``(i32) -> ()`` (with ``arg``) or
        ``() -> ()`` (without).
        """
        store = _store_new(linked.engine_address, None, None)
        key = 0
        call = None
        try:
            context = _store_context(store)
            _store_limiter(store, program.max_memory_bytes, -1, -1, -1, -1)
            # The first check comes after one tick; the epoch callback sets the next ones.
            _set_epoch_deadline(context, 1)
            _epoch_deadline_callback(store, self._on_epoch, self._tick_us, None)
            # wasmtime-py's WasiConfig only for grants (preopened directories,
            # environment), arguments and stdin.
            config = None
            if program.has_grants or invocation.argv or invocation.stdin is not None:
                config = program.wasi_config()
            call = WasiCall(linked.engine, linked.wasi_adapter, invocation, config)  # type: ignore[arg-type]
            call.begin()
            wasi = _address(config._consume()) if config is not None else _wasi_config_new()
            key = next(_keys)
            _writers[key] = invocation
            _set_stdout(wasi, _STDOUT, key, None)
            _set_stderr(wasi, _STDERR, key, None)
            error = _set_wasi(context, wasi)
            if error:
                raise _from_error(ctypes.cast(error, _ErrorPtr))
            with invocation.active():
                instance = _Instance()
                trap = c_void_p()
                error = _instantiate(linked.pre_address, context, byref(instance), byref(trap))
                if error or trap:
                    _raise_failure(error, trap.value)
                func = _Extern()
                name = export.encode()
                if not _export_get(context, byref(instance), name, len(name), byref(func)) or func.kind != _EXTERN_FUNC:
                    raise GuestFault(f"the module has no exported function {export!r}")
                memory = _Extern()
                if _export_get(context, byref(instance), b"memory", 6, byref(memory)) and memory.kind == _EXTERN_MEMORY:
                    invocation.memory = Memory(context, memory)
                    call.attach(wasmtime.Memory._from_raw(memory.of.memory))
                vals = (c_int32 * _VALS_PER_RAW)()
                if arg is not None:
                    vals[0] = arg
                error = _call_unchecked(context, byref(func.of.func), vals, 0 if arg is None else 1, byref(trap))
                if error or trap:
                    _raise_failure(error, trap.value)
        finally:
            invocation.memory = None
            _store_delete(store)
            _writers.pop(key, None)
            if call is not None:
                call.end()  # once the store is deleted: wasmtime let go of the stdin pipe
