"""The ``public`` binding: each call through wasmtime-py's public API.

The fallback of :mod:`essa_wasmtime.capi`, used where that binding cannot run
(wasmtime-py changed its internals) or when ``ESSA_WASMTIME_BINDING=public``.
It behaves the same and costs more: wasmtime-py's trampoline per host call,
``Func.__call__`` per export call, ``Memory.read``/``write`` per access.
Like the other binding it registers essa's epoch deadline callback, which
wasmtime-py binds but does not wrap.
"""

from __future__ import annotations

import ctypes
import errno
from typing import Callable

import wasmtime
from wasmtime import _bindings
from wasmtime import _ffi as ffi

from essa.plugin import GuestFault, Invocation

from .linking import CallSettings, HostImport, LinkedModule
from .wasi import WasiCall

_CALLBACK_TYPES = _bindings._wasmtime_store_epoch_deadline_callback.argtypes
_NO_FINALIZER = ctypes.cast(None, _CALLBACK_TYPES[3])


class Memory:
    """Bounds-checked access to one instance's linear memory, with ``wasmtime.Memory``."""

    __slots__ = ("_store", "_memory")

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        self._store = store
        self._memory = memory

    def _check(self, ptr: int, end: int) -> None:
        size = self._memory.data_len(self._store)
        if end > size:
            raise GuestFault(f"[{ptr:#x}, {end:#x}) is outside the guest's memory of {size} bytes")

    def read(self, ptr: int, length: int) -> bytes:
        self._check(ptr, ptr + length)
        return bytes(self._memory.read(self._store, ptr, ptr + length))

    def write(self, ptr: int, data: bytes) -> None:
        self._check(ptr, ptr + len(data))
        if data:
            self._memory.write(self._store, data, ptr)


class PublicBinding:
    """Runs calls through wasmtime-py's public API."""

    name = "public"

    def __init__(self, on_epoch: Callable, tick_us: int) -> None:
        self._on_epoch = _CALLBACK_TYPES[1](on_epoch)
        self._tick_us = ctypes.c_void_p(tick_us)

    def define(self, linker: wasmtime.Linker, host_import: HostImport) -> None:
        linker.define_func(
            host_import.module, host_import.name, host_import.type, host_import.impl, access_caller=host_import.caller
        )

    def call(
        self, program: CallSettings, linked: LinkedModule, invocation: Invocation, export: str, arg: int | None
    ) -> None:
        """Instantiate ``linked`` in a fresh store and call ``export``; the store is closed at the end."""
        store = wasmtime.Store(linked.engine)
        call = None
        try:
            store.set_limits(memory_size=program.max_memory_bytes)
            # The first check comes after one tick; the epoch callback sets the next ones.
            store.set_epoch_deadline(1)
            ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), self._on_epoch, self._tick_us, _NO_FINALIZER)
            wasi = program.wasi_config()
            call = WasiCall(linked.engine, linked.wasi_adapter, invocation, wasi)  # argv, stdin
            call.begin()
            write = invocation.write_output
            wasi.stdout_custom = lambda data: None if write(1, data) else -errno.EIO
            wasi.stderr_custom = lambda data: None if write(2, data) else -errno.EIO
            store.set_wasi(wasi)
            with invocation.active():
                instance = linked.pre.instantiate(store)
                exports = instance.exports(store)
                func = exports[export]
                memory = exports.get("memory")
                call.attach(memory)
                if isinstance(memory, wasmtime.Memory):
                    invocation.memory = Memory(store, memory)
                if arg is None:
                    func(store)
                else:
                    func(store, arg)
        finally:
            invocation.memory = None
            # Free the store now: its WASI output callbacks sit in wasmtime-py's
            # global slab until the native store is dropped, and they reach the
            # invocation, which reached the store: a cycle no collector sees,
            # leaking the instance's memory reservation on every call.
            store.close()
            if call is not None:
                call.end()  # once the store is closed: wasmtime let go of the stdin pipe
