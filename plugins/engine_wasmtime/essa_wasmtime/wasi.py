"""WASI on wasmtime: wasmtime's own, plus the program's arguments, stdin, and a poll that ends in time.

Every guest gets wasmtime-py's WASI (``Linker.define_wasi``), configured per
call (:func:`configure`), and essa adds:

- **arguments**: ``WasiConfig.argv`` from :attr:`essa.wasm.invocation.Invocation.argv`.
- **stdin**: ``WasiConfig`` reads stdin only from a file (or the process's
  own), so a call whose invocation has a :class:`essa.wasm.stdin.Stdin` gets a
  pipe: wasmtime opens its read end by path (``/dev/fd/N``) and a pump thread
  writes into it what the guest's stdin delivers. Every WASI function then
  sees stdin exactly as wasmtime implements it. At the call's deadline the
  pump closes the pipe, so a guest blocked reading stdin wakes (at end of
  input), the epoch deadline stops it at its next check, and the call fails
  with ``time limit exceeded`` even if it returned first.
- **poll_oneoff**: wasmtime's sleeps in native code, where epochs cannot
  interrupt it, so essa's own shadows it in the linker (:func:`poll_oneoff`).
  Clock-only polls it waits out itself, as wasmtime would, until the call's
  deadline; a poll with any descriptor (files, stdin, stdout) or a
  subscription wasmtime refuses goes to wasmtime's own ``poll_oneoff``, so
  readiness is wasmtime's.
- **clock_time_get**: essa's own (:func:`essa.plugin.wasip1.clock_time_get`,
  shared with the wasmer engine) reads the realtime clock through the call
  (:meth:`essa.plugin.Invocation.realtime_ns`: a call that may run again
  reads the same times in every execution) and the monotonic clock as
  ``time.monotonic_ns()`` (the clock essa's ``poll_oneoff`` waits on).
- **stdout and stderr**: written by essa's own ``fd_write`` on the guest's
  thread (:mod:`essa_wasmtime.stdio`); other descriptors by wasmtime's.

A host function cannot call a WASI function directly (wasmtime's WASI finds
the guest's memory through the calling instance), so essa reaches
wasmtime's own functions (:meth:`WasiCall.wasmtime`) through a tiny adapter
module, instantiated in the call's store on first use, which imports the
guest's memory, exports it as its own ``memory`` and calls wasmtime's
``poll_oneoff``, ``fd_write``, ``fd_close`` and ``fd_renumber``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import wasmtime

from essa.plugin import CHUNK, GuestFault, Invocation, fault_guard, wasip1
from essa.plugin import current_invocation as current

WASI = "wasi_snapshot_preview1"
_MASK = 0xFFFFFFFF

#: Imports the guest's memory, exports it as ``memory``, forwards to wasmtime's functions that essa shadows.
ADAPTER_WAT = """(module
  (import "guest" "memory" (memory 0))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $renumber (param i32 i32) (result i32)))
  (export "memory" (memory 0))
  (func (export "poll_oneoff") (param i32 i32 i32 i32) (result i32)
    (call $poll (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "fd_write") (param i32 i32 i32 i32) (result i32)
    (call $write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "fd_close") (param i32) (result i32)
    (call $close (local.get 0)))
  (func (export "fd_renumber") (param i32 i32) (result i32)
    (call $renumber (local.get 0) (local.get 1))))"""

class WasiCall:
    """The WASI side of one call: its stdin pipe, and wasmtime's own functions that essa shadows."""

    __slots__ = ("invocation", "stdio_moved", "_engine", "_adapter_module", "_memory", "_adapter", "_pipe")

    def __init__(self, engine: wasmtime.Engine, adapter: wasmtime.Module, invocation: Invocation,
                 config: wasmtime.WasiConfig) -> None:
        self.invocation = invocation
        #: Whether the guest closed or renumbered descriptor 1 or 2 (see :mod:`essa_wasmtime.stdio`).
        self.stdio_moved = False
        self._engine = engine
        self._adapter_module = adapter
        self._memory: wasmtime.Memory | None = None
        self._adapter: Any = None  # the adapter instance's exports
        self._pipe: _StdinPipe | None = None
        if invocation.argv:
            config.argv = list(invocation.argv)
        if invocation.stdin is not None:
            self._pipe = _StdinPipe(invocation, config)

    def attach(self, memory: object) -> None:
        """The guest's exported memory, once the instance exists (for wasmtime's poll_oneoff)."""
        if isinstance(memory, wasmtime.Memory):
            self._memory = memory

    def begin(self) -> None:
        """Hang this on the invocation, where :func:`poll_oneoff` finds it (:attr:`Invocation.wasi`)."""
        self.invocation.wasi = self

    def end(self) -> None:
        """Undo :meth:`begin` and end the stdin pump (once the store is closed: wasmtime let go of the pipe)."""
        if self.invocation.wasi is self:
            self.invocation.wasi = None
        self._adapter = None
        self._memory = None
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None

    def wasmtime(self, caller: wasmtime.Caller, name: str, *args: int) -> int:
        """wasmtime's own WASI function ``name`` (one the adapter exports) on the guest's memory."""
        if self._adapter is None:
            if self._memory is None:
                raise GuestFault("the module exports no memory")
            linker = wasmtime.Linker(self._engine)
            linker.define_wasi()
            linker.define(caller, "guest", "memory", self._memory)
            self._adapter = linker.instantiate(caller, self._adapter_module).exports(caller)
        return self._adapter[name](caller, *args)

    def wasmtime_poll(self, caller: wasmtime.Caller, *args: int) -> int:
        """wasmtime's own ``poll_oneoff`` on the guest's memory."""
        result = self.wasmtime(caller, "poll_oneoff", *args)
        self.invocation.check()  # stdin ended by the deadline or a cancel, not by its writer
        return result


def adapter_module(engine: wasmtime.Engine) -> wasmtime.Module:
    return wasmtime.Module(engine, ADAPTER_WAT)


def poll_oneoff(caller: wasmtime.Caller, in_ptr: int, out_ptr: int, nsubscriptions: int, nevents_ptr: int) -> int:
    """WASI ``poll_oneoff``: clocks waited for here (ending at the deadline), the rest by wasmtime."""
    inv = current()
    call: WasiCall = inv.wasi
    count = nsubscriptions & _MASK
    if count == 0:
        return wasip1.EINVAL
    args = (in_ptr, out_ptr, nsubscriptions, nevents_ptr)
    if (in_ptr | out_ptr) & 7 or nevents_ptr & 3 or inv.memory is None:
        return call.wasmtime_poll(caller, *args)  # wasmtime traps, naming the problem
    try:
        data = inv.memory.read(in_ptr & _MASK, count * wasip1.SUBSCRIPTION_SIZE)
    except GuestFault:
        return call.wasmtime_poll(caller, *args)
    subscriptions = wasip1.read_subscriptions(data)
    deadlines = [wasip1.clock_deadline(s) if s.is_clock else None for s in subscriptions]
    if None in deadlines:  # a descriptor, or a subscription wasmtime refuses
        return call.wasmtime_poll(caller, *args)
    wasip1.wait(inv, min(deadlines))  # type: ignore[type-var]
    now = time.monotonic_ns()
    events = [wasip1.clock_event(s.userdata) for s, d in zip(subscriptions, deadlines) if d <= now]  # type: ignore
    inv.memory.write(out_ptr & _MASK, b"".join(events))
    inv.memory.write(nevents_ptr & _MASK, len(events).to_bytes(4, "little"))
    return wasip1.SUCCESS


#: :func:`poll_oneoff` as the linker calls it (see :func:`essa.wasm.invocation.fault_guard`).
POLL_ONEOFF = fault_guard("poll_oneoff", poll_oneoff)


def clock_time_get(clock_id: int, precision: int, time_ptr: int) -> int:
    """WASI ``clock_time_get``: essa's (:func:`essa.plugin.wasip1.clock_time_get`): a call reads its own clock."""
    return wasip1.clock_time_get(current(), clock_id, time_ptr)


#: :func:`clock_time_get` as the linker calls it.
CLOCK_TIME_GET = fault_guard("clock_time_get", clock_time_get)


class _StdinPipe:
    """A pipe wasmtime reads the guest's stdin from, fed by a pump thread."""

    def __init__(self, invocation: Invocation, config: wasmtime.WasiConfig) -> None:
        self._invocation = invocation
        read_end, self._write_end = os.pipe()
        try:
            config.stdin_file = f"/dev/fd/{read_end}"  # wasmtime opens a descriptor of its own
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)
        self._thread = threading.Thread(target=self._pump, name="essa-wasmtime-stdin", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        inv = self._invocation
        stdin = inv.stdin
        assert stdin is not None
        try:
            while True:
                data = stdin.read(CHUNK, inv.deadline)
                if data is None:  # the deadline
                    if inv.remaining() == 0:
                        # The guest may be blocked reading: it sees the end of input, and the
                        # call fails as over its time limit even if it returns before an epoch check.
                        inv.exceed("time")
                        return
                    continue  # the deadline moved while a remote call was awaited
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(self._write_end, view):]
        except OSError:  # wasmtime closed its end: the call is over
            return
        finally:
            os.close(self._write_end)

    def close(self) -> None:
        self._invocation.stdin.close()  # type: ignore[union-attr]  # the pump sees the end and stops
        self._thread.join(timeout=10)


__all__ = ["POLL_ONEOFF", "WASI", "WasiCall", "adapter_module", "poll_oneoff"]
