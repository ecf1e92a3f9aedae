"""WASI preview 1 (``wasi_snapshot_preview1``) as engines need it: numbers, layouts, and poll's clocks.

essa's guests get the same WASI on every engine, and wasmtime's implementation
is the reference (the differential tests in ``tests/wasi`` hold every engine
to it). What more than one engine needs lives here once: errno values, the
layouts of subscriptions and events, and how ``poll_oneoff`` treats clock
subscriptions, including the wait itself, which ends at the call's deadline.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from essa.wasm.invocation import GuestFault, GuestLimit

if TYPE_CHECKING:  # pragma: no cover
    from essa.wasm.invocation import Invocation
    from essa.wasm.stdin import Stdin

# errno values.
SUCCESS, E2BIG, EACCES, EAGAIN, EBADF, EBUSY = 0, 1, 2, 6, 8, 10
EEXIST, EFAULT, EFBIG, EILSEQ, EINTR, EINVAL, EIO, EISDIR, ELOOP = 20, 21, 22, 25, 27, 28, 29, 31, 32
EMFILE, EMLINK, ENAMETOOLONG, ENFILE, ENOENT, ENOMEM, ENOSPC, ENOSYS = 33, 34, 37, 41, 44, 48, 51, 52
ENOTDIR, ENOTEMPTY, ENOTSOCK, ENOTSUP, ENXIO, EOVERFLOW, EPERM, ERANGE = 54, 55, 57, 58, 60, 61, 63, 68
EROFS, ESPIPE, ETXTBSY, EXDEV, ENOTCAPABLE = 69, 70, 74, 75, 76

# Clocks.
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME, CLOCK_THREAD_CPUTIME = 0, 1, 2, 3
SUBCLOCK_ABSTIME = 1

# poll_oneoff.
EVENTTYPE_CLOCK, EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE = 0, 1, 2
EVENT_HANGUP = 1
SUBSCRIPTION_SIZE = 48
#: userdata, error, type, fd_readwrite.nbytes, fd_readwrite.flags
EVENT = struct.Struct("<QHBx4xQH6x")
_HEAD = struct.Struct("<QB")
_CLOCK = struct.Struct("<I4xQQH")


@dataclass(frozen=True)
class Subscription:
    """One entry of ``poll_oneoff``'s input, as the guest wrote it."""

    userdata: int
    tag: int
    #: For clocks: the clock id, timeout (ns), and flags; for descriptors: ``fd``.
    clock_id: int = 0
    timeout: int = 0
    flags: int = 0
    fd: int = 0

    @property
    def is_clock(self) -> bool:
        return self.tag == EVENTTYPE_CLOCK


def read_subscriptions(data: bytes) -> list[Subscription]:
    """Decode ``len(data) // 48`` subscriptions (no validation)."""
    subscriptions = []
    for offset in range(0, len(data) - SUBSCRIPTION_SIZE + 1, SUBSCRIPTION_SIZE):
        userdata, tag = _HEAD.unpack_from(data, offset)
        if tag == EVENTTYPE_CLOCK:
            clock_id, timeout, _precision, flags = _CLOCK.unpack_from(data, offset + 16)
            subscriptions.append(Subscription(userdata, tag, clock_id, timeout, flags))
        else:
            (fd,) = struct.unpack_from("<I", data, offset + 16)
            subscriptions.append(Subscription(userdata, tag, fd=fd))
    return subscriptions


def clock_deadline(sub: Subscription) -> int | None:
    """When a clock subscription fires, in ``time.monotonic_ns()``; ``None`` if wasmtime refuses it (EINVAL).

    wasmtime waits on the monotonic and realtime clocks only (the CPU-time
    clocks and unknown ids are EINVAL), relative or absolute
    (``SUBCLOCK_ABSTIME``); any other flag is EINVAL.
    """
    if sub.flags & ~SUBCLOCK_ABSTIME:
        return None
    now = time.monotonic_ns()
    if not sub.flags & SUBCLOCK_ABSTIME:
        return now + sub.timeout if sub.clock_id in (CLOCK_MONOTONIC, CLOCK_REALTIME) else None
    if sub.clock_id == CLOCK_MONOTONIC:
        return sub.timeout
    if sub.clock_id == CLOCK_REALTIME:
        return now + max(0, sub.timeout - time.time_ns())
    return None


def clock_event(userdata: int) -> bytes:
    """The event of a clock that fired (as wasmtime writes it: nbytes 0)."""
    return EVENT.pack(userdata, SUCCESS, EVENTTYPE_CLOCK, 0, 0)


def fd_event(userdata: int, tag: int, hangup: bool = False) -> bytes:
    """The event of a ready descriptor (as wasmtime writes it: nbytes 1)."""
    return EVENT.pack(userdata, SUCCESS, tag, 1, EVENT_HANGUP if hangup else 0)


def wait(invocation: "Invocation", deadline_ns: int | None, stdin: "Stdin | None" = None) -> None:
    """Wait until ``deadline_ns`` (``time.monotonic_ns()``), or until ``stdin`` is ready if given.

    With neither, this waits forever. Either way the wait ends at the call's
    deadline, with :class:`~essa.wasm.invocation.GuestLimit`, or when the call is
    cancelled, with :class:`~essa.wasm.invocation.GuestCancelled` (a cancel also closes
    the call's stdin, which wakes a wait for it).
    """
    if stdin is None:
        if deadline_ns is None:
            raise ValueError("nothing to wait for")
        invocation.sleep(max(0.0, deadline_ns / 1e9 - time.monotonic()))
        return
    limit = invocation.deadline
    until = None if deadline_ns is None else deadline_ns / 1e9
    over = limit is not None and (until is None or until >= limit)
    ready = stdin.wait(limit if over else until)
    invocation.check()
    if not ready and over:
        # The deadline may have moved meanwhile (a remote call's wait does not count).
        if invocation.remaining() == 0:
            raise GuestLimit(invocation.exceed("time"))
        wait(invocation, deadline_ns, stdin)


__all__ = [
    "EVENT", "SUBSCRIPTION_SIZE", "Subscription", "clock_deadline", "clock_event", "fd_event",
    "read_subscriptions", "wait",
]


def clock_time_get(invocation: "Invocation", clock_id: int, time_ptr: int) -> int:
    """WASI ``clock_time_get`` as wasmtime answers it, for both engines; returns the errno.

    The realtime clock is the call's (:meth:`Invocation.realtime_ns`: its own
    clock for a call that may run again), the monotonic clock
    ``time.monotonic_ns()`` (what :func:`clock_deadline` waits on). The
    CPU-time clocks are EBADF (wasmtime has none); an unknown clock id, a
    pointer not aligned to 8 bytes or outside memory make the guest trap
    (:class:`GuestFault`), as wasmtime's do.
    """
    clock = clock_id & 0xFFFFFFFF
    if clock > CLOCK_THREAD_CPUTIME:
        raise GuestFault(f"invalid clock id {clock}")
    if clock > CLOCK_MONOTONIC:
        return EBADF
    if time_ptr & 7:
        raise GuestFault(f"pointer {time_ptr & 0xFFFFFFFF:#x} is not aligned to 8 bytes")
    memory = invocation.memory
    if memory is None:
        raise GuestFault("the module exports no memory")
    now = invocation.realtime_ns() if clock == CLOCK_REALTIME else time.monotonic_ns()
    memory.write(time_ptr & 0xFFFFFFFF, now.to_bytes(8, "little"))
    return SUCCESS
