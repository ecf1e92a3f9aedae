"""A guest's stdout and stderr on wasmtime: essa's own ``fd_write`` for them, wasmtime's for the rest.

wasmtime hands what a guest writes to a custom output stream to the stream's
callback on one of its runtime's threads, so every write of a line cost a
switch to that thread and a hand-over of the GIL: about 35 µs on an idle
machine (a call that prints one line took twice as long as a silent one),
more on a busy process. So essa shadows ``fd_write`` in the linker: a write
to descriptor 1 or 2 goes from the guest's memory straight to
:meth:`essa.wasm.invocation.Invocation.write_output`, on the guest's thread,
as wasmtime would do it (only the first non-empty buffer is written, and its
length is the count; a buffer outside the guest's memory traps the guest);
any other descriptor goes to wasmtime's own ``fd_write``
(:meth:`essa_wasmtime.wasi.WasiCall.wasmtime`).

Descriptors 1 and 2 stay the call's stdout and stderr until the guest closes
or renumbers either: ``fd_close`` and ``fd_renumber`` are shadowed too, only
to notice that (:attr:`~essa_wasmtime.wasi.WasiCall.stdio_moved`), and go to
wasmtime; from then on every ``fd_write`` of the call is wasmtime's, which
writes through the output callbacks as before.
"""

from __future__ import annotations

import logging
import struct

import wasmtime

from essa.plugin import GuestFault, RateLimitedLog, describe, fault_guard, wasip1
from essa.plugin import current_invocation as current

_problems = RateLimitedLog(logging.getLogger("essa.wasmtime"))
_MASK = 0xFFFFFFFF
_IOVEC = struct.Struct("<II")
_U32 = struct.Struct("<I")
_STDIO = (1, 2)


def fd_write(caller: wasmtime.Caller, fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
    """WASI ``fd_write``: stdout and stderr written here, every other descriptor by wasmtime."""
    inv = current()
    call = inv.wasi
    memory = inv.memory
    fd &= _MASK
    if fd not in _STDIO or call.stdio_moved or memory is None:
        return call.wasmtime(caller, "fd_write", fd, iovs, iovs_len, nwritten)
    data = b""
    at = iovs & _MASK
    for _ in range(iovs_len & _MASK):
        try:
            buffer, length = _IOVEC.unpack(memory.read(at, 8))
            if length:
                data = memory.read(buffer, length)
                break
        except GuestFault as exc:
            raise GuestFault(f"iovec: {exc}") from None
        at += 8
    if data:
        try:
            if not inv.write_output(fd, data):
                return wasip1.EIO  # over the output limit (as wasmtime's stream answers it)
        except Exception as exc:  # the guest sees EIO; the executor goes on
            _problems.warning("output", "guest output lost: %s", describe(exc), exc_info=exc)
            return wasip1.EIO
    try:
        memory.write(nwritten & _MASK, _U32.pack(len(data)))
    except GuestFault as exc:
        raise GuestFault(f"bytes written pointer: {exc}") from None
    return wasip1.SUCCESS


def fd_close(caller: wasmtime.Caller, fd: int) -> int:
    """WASI ``fd_close`` (wasmtime's); closing stdout or stderr hands their writes back to wasmtime."""
    call = current().wasi
    result = call.wasmtime(caller, "fd_close", fd)
    if result == wasip1.SUCCESS and fd & _MASK in _STDIO:
        call.stdio_moved = True
    return result


def fd_renumber(caller: wasmtime.Caller, fd: int, to: int) -> int:
    """WASI ``fd_renumber`` (wasmtime's); moving stdout or stderr hands their writes back to wasmtime."""
    call = current().wasi
    result = call.wasmtime(caller, "fd_renumber", fd, to)
    if result == wasip1.SUCCESS and (fd & _MASK in _STDIO or to & _MASK in _STDIO):
        call.stdio_moved = True
    return result


#: The three functions as the linker calls them (see :func:`essa.wasm.invocation.fault_guard`).
FD_WRITE = fault_guard("fd_write", fd_write)
FD_CLOSE = fault_guard("fd_close", fd_close)
FD_RENUMBER = fault_guard("fd_renumber", fd_renumber)


__all__ = ["FD_CLOSE", "FD_RENUMBER", "FD_WRITE", "fd_close", "fd_renumber", "fd_write"]
