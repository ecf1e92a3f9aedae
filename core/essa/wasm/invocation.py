"""One call of a guest function, and the thread-local stack that finds it.

A host function (:mod:`essa.wasm.host`, and an engine's WASI functions) finds
the call it serves through :func:`current`: the innermost :class:`Invocation`
made active on this thread (:meth:`Invocation.active`). A guest blocked in
``essa_get_result`` may run another call on the same thread; the stack keeps
them apart. An engine hangs its own per-call WASI state on
:attr:`Invocation.wasi`, so there is one stack for everything a call needs.

A pointer or length outside the guest's memory raises :class:`GuestFault`,
which the engine turns into a trap of that guest only; :func:`fault_guard`
wraps a host function so that the reason is kept in :attr:`Invocation.fault`
(the engine's own trap message is generic).

Limits (:class:`essa.wasm.limits.Limits`) are checked here too, so every engine
enforces them alike: a call's time limit counts its own running time, so time
spent waiting for a remote call's result moves its deadline (the callee has a
limit of its own, and a caller outlives a callee that exceeds it); arguments,
results and lattice values larger than the message size limit are refused
with ``UnknownError``, output beyond the output limit is cut off. An exceeded
limit is kept in :attr:`Invocation.exceeded`, and :meth:`Invocation.failure`
turns it into :class:`essa.errors.LimitExceeded`.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence, TypeVar

from essa.errors import CallCancelled, GuestTrap, LimitExceeded
from essa.wasm.abi import CallOutcome, GuestMemory, Host, Output, PendingCall
from essa.wasm.limits import Limits
from essa.wasm.stdin import Stdin

_MASK = 0xFFFFFFFF
_R = TypeVar("_R")


class GuestFault(Exception):
    """A guest passed a host function something that must end it (a trap)."""


class GuestLimit(GuestFault):
    """A call exceeded a limit inside a host function; the message names the limit."""


class GuestCancelled(GuestFault):
    """The call was cancelled while a host function ran; the message says why."""


class Invocation:
    """The state of one call of a guest function: arguments, result, handles."""

    __slots__ = (
        "args", "host", "output", "memory", "result", "fault", "limits", "deadline", "exceeded", "exceeded_limit",
        "cancelled", "memory_refused", "refused_result", "output_bytes", "_handles", "_next_handle", "_waited",
        "_wakeup", "argv", "stdin", "wasi", "clock", "clock_reads",
    )

    def __init__(
        self,
        args: bytes,
        host: Host,
        output: Output,
        limits: Limits | None = None,
        argv: Sequence[str] = (),
        stdin: Stdin | None = None,
        clock: int | None = None,
    ) -> None:
        self.args = args
        self.host = host
        self.output = output
        #: The program's arguments as WASI gives them to the guest (argv[0] included).
        self.argv: tuple[str, ...] = tuple(argv)
        #: The guest's standard input, or ``None`` for an empty one (an engine may close it when the call ends).
        self.stdin = stdin
        #: The limits of the call (the engine's, from :meth:`begin`).
        self.limits = limits or _DEFAULT_LIMITS
        #: When the call must end (``time.monotonic()``), or ``None``; set by :meth:`begin`.
        #: Engines read it whenever they check (it moves while the call waits for others).
        self.deadline: float | None = None
        #: The message of the first limit the call exceeded, or ``None``.
        self.exceeded: str | None = None
        #: Which limit that was ("time", "memory", "output", "message size").
        self.exceeded_limit = ""
        #: Why the call was cancelled (:meth:`cancel`), or ``None``.
        self.cancelled: str | None = None
        self._wakeup: threading.Event | None = None
        #: Pages of the last ``memory.grow`` the engine refused (instrumented modules), or 0.
        self.memory_refused = 0
        #: Why the last ``essa_set_result`` was refused, or ``None``.
        self.refused_result: str | None = None
        #: Bytes of stdout + stderr written so far.
        self.output_bytes = 0
        #: Attached by the engine once the instance exists.
        self.memory: GuestMemory | None = None
        #: The bytes given to ``essa_set_result``, or ``None``.
        self.result: bytes | None = None
        #: Why a host function made the guest trap, or ``None``.
        self.fault: str | None = None
        #: The engine's WASI state of this call (its descriptor table, its poll adapter), or ``None``.
        self.wasi: Any = None
        #: The call's own realtime clock (ns since 1970) for a call that may run again, or ``None``
        #: (the system's clock); see :meth:`realtime_ns`.
        self.clock = clock
        #: How many times the guest read :attr:`clock`.
        self.clock_reads = 0
        self._handles: dict[int, PendingCall] = {}
        self._waited: dict[int, CallOutcome] = {}
        self._next_handle = 1

    def begin(self, limits: Limits) -> None:
        """Start the call's clock under ``limits``; engines call it as the call starts."""
        self.limits = limits
        self.deadline = None if limits.time_limit is None else time.monotonic() + limits.time_limit

    def clock_end(self) -> int | None:
        """Where :attr:`clock` stands now (the next reading), or ``None`` without one."""
        return None if self.clock is None else self.clock + self.clock_reads

    def realtime_ns(self) -> int:
        """What the guest's WASI realtime clock reads now, in nanoseconds since 1970.

        The system's clock, unless the call has a :attr:`clock` of its own: a
        call that may be executed again after its executor dies reads the time
        it was first sent, one nanosecond later at each read, so that every
        execution of a deterministic guest makes the same timestamps (the same
        Lww write ids, the same clocks passed to the calls it makes). Like a
        Lamport clock, it moves past where a remote call's clock ended once
        the call's result is read, so a write after a call's result is
        stamped later than the call's own writes.
        """
        clock = self.clock
        if clock is None:
            return time.time_ns()
        reads = self.clock_reads
        self.clock_reads = reads + 1
        return clock + reads

    def remaining(self) -> float | None:
        """Seconds left before the deadline (at least 0), or ``None`` without a time limit."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def paused(self, seconds: float) -> None:
        """The call waited ``seconds`` for a remote call: that time does not count."""
        if self.deadline is not None:
            self.deadline += seconds

    def exceed(self, limit: str) -> str:
        """Record that the call exceeded ``limit`` (the first one counts); return its message."""
        if self.exceeded is None:
            self.exceeded = self.limits.exceeded(limit)
            self.exceeded_limit = limit
        return self.exceeded

    def cancel(self, reason: str) -> None:
        """Ask the call to end: from any thread, at once.

        The engine ends the guest at its next check (wasmtime: the next epoch
        tick; wasmer: the next fuel check), a host function at its next
        :meth:`check`, and a :meth:`sleep` at once. The call then fails with
        :class:`essa.errors.CallCancelled`.
        """
        if self.cancelled is None:
            self.cancelled = reason
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup.set()
        if self.stdin is not None:  # a guest blocked reading stdin sees its end, then its next check ends it
            self.stdin.close()

    def check(self) -> None:
        """Raise :class:`GuestCancelled` if the call was cancelled, :class:`GuestLimit` if its time is up."""
        if self.cancelled is not None:
            raise GuestCancelled(self.cancelled)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise GuestLimit(self.exceed("time"))

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` for the guest (WASI ``poll_oneoff``), ending early at the deadline or on cancel.

        :raises GuestLimit: the time limit ran out first.
        :raises GuestCancelled: the call was cancelled first.
        """
        wakeup = self._wakeup
        if wakeup is None:
            wakeup = self._wakeup = threading.Event()
        remaining = self.remaining()
        if self.cancelled is None:  # cancel() sets the flag before the event: no wake-up is missed
            wakeup.wait(seconds if remaining is None else min(seconds, remaining))
        self.check()

    def write_output(self, stream: int, data: bytes) -> bool:
        """Pass guest output on, up to the output limit; ``False`` once it is exceeded.

        The bytes up to the limit are still written; the rest are dropped and
        the call is marked as having exceeded the output limit.
        """
        cap = self.limits.max_output_bytes
        if cap is not None:
            room = cap - self.output_bytes
            if len(data) > room:
                if room > 0:
                    self.output.write(stream, bytes(data[:room]))
                    self.output_bytes = cap
                self.exceed("output")
                return False
            self.output_bytes += len(data)
        self.output.write(stream, data)
        return True

    def failure(self, reason: str) -> GuestTrap:
        """The error a failed call raises: a limit it exceeded, else why it trapped.

        :param reason: the engine's own one-line trap message.
        """
        if self.cancelled is not None:
            return CallCancelled(self.cancelled)
        if self.exceeded is not None:
            return LimitExceeded(self.exceeded, self.exceeded_limit)
        why = self.fault or reason
        if self.memory_refused:
            return LimitExceeded(f"{self.limits.exceeded('memory')}: {why}", "memory")
        return GuestTrap(why)

    @contextmanager
    def active(self) -> Iterator["Invocation"]:
        """Make this the invocation host functions on this thread serve."""
        stack = _stack()
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()

    # -- helpers for the host functions -------------------------------------

    def _read(self, what: str, ptr: int, length: int) -> bytes:
        memory = self._memory(what)
        try:
            return memory.read(ptr & _MASK, length & _MASK)
        except GuestFault as exc:
            raise GuestFault(f"{what}: {exc}") from None

    def _write(self, what: str, ptr: int, data: bytes) -> None:
        memory = self._memory(what)
        try:
            memory.write(ptr & _MASK, data)
        except GuestFault as exc:
            raise GuestFault(f"{what}: {exc}") from None

    def _memory(self, what: str) -> GuestMemory:
        if self.memory is None:  # engines attach the export named "memory", if there is one
            raise GuestFault(f"{what}: the module exports no memory named 'memory'")
        return self.memory

    def _read_text(self, what: str, ptr: int, length: int) -> str | None:
        raw = self._read(what, ptr, length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.host.warn(f"{what} is not valid UTF-8: {raw[:40]!r}")
            return None

    def _outcome(self, handle: int) -> CallOutcome | None:
        handle &= _MASK
        outcome = self._waited.get(handle)
        if outcome is None:
            pending = self._handles.get(handle)
            if pending is None:
                return None
            self.check()
            started = time.monotonic()
            try:
                outcome = pending.wait()  # bounded by the callee's own limit
            finally:
                self.paused(time.monotonic() - started)
            self.check()  # a call cancelled while it waited ends here
            self._waited[handle] = outcome
            del self._handles[handle]
            if outcome.clock is not None and self.clock is not None:
                self.clock_reads = max(self.clock_reads, outcome.clock - self.clock)
        return outcome


_DEFAULT_LIMITS = Limits()
_local = threading.local()


def _stack() -> list[Invocation]:
    try:
        return _local.stack
    except AttributeError:
        _local.stack = []
        return _local.stack


def current() -> Invocation:
    """The invocation the calling thread's guest is running."""
    try:
        return _local.stack[-1]
    except (AttributeError, IndexError):
        raise GuestFault("essa host function called outside of an essa invocation") from None

def record_fault(message: str) -> None:
    """Keep why the current call's guest traps (the first reason counts)."""
    stack = getattr(_local, "stack", None)
    if stack and stack[-1].fault is None:
        stack[-1].fault = message


def fault_guard(name: str, impl: Callable[..., _R], passthrough: tuple[type[BaseException], ...] = ()) -> Callable[..., _R]:
    """``impl`` as a host function named ``name``: a trap it causes says why.

    A :class:`GuestFault` or an unexpected error is recorded with
    :func:`record_fault` and raised on (the engine turns it into a trap).
    :class:`GuestLimit` and :class:`GuestCancelled` (recorded already) and
    the ``passthrough`` exceptions pass as they are.
    """
    passed = (GuestLimit, GuestCancelled, *passthrough)

    def call(*args: Any) -> _R:
        try:
            return impl(*args)
        except passed:
            raise
        except GuestFault as exc:
            record_fault(f"{name}: {exc}")
            raise
        except Exception as exc:
            record_fault(f"{name} failed: {type(exc).__name__}: {exc}")
            raise

    call.__name__ = name
    return call


__all__ = ["GuestCancelled", "GuestFault", "GuestLimit", "Invocation", "current", "fault_guard", "record_fault"]
