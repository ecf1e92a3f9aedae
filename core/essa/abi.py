"""The guest ABI: essa's eight ``host`` functions, implemented once.

Guests import these from the Wasm module ``host``; every parameter and result
is an i32 (the contract: docs/abi.md). An engine registers every entry of
:data:`HOST_FUNCTIONS` as an ``(i32 * arity) -> i32`` import and gives each
running instance a :class:`GuestMemory`. Everything else - argument checks,
handles, error codes, state keys - is here, so all engines behave alike.

A host function finds the call it serves through :func:`current`: the
innermost :class:`Invocation` made active on this thread by the engine. (A
guest blocked in ``essa_get_result`` may run another call on the same thread;
the stack keeps them apart.)

A pointer or length outside the guest's memory raises :class:`GuestFault`,
which the engine turns into a trap of that guest only, with the message kept in
:attr:`Invocation.fault`.

Limits (:class:`essa.engine.Limits`) are checked here too, so every engine
enforces them alike: a call's time limit counts its own running time, so time
spent waiting for a remote call's result moves its deadline (the callee has a
limit of its own, and a caller outlives a callee that exceeds it); arguments, results and lattice values larger than the message size limit are
refused with ``UnknownError``, output beyond the output limit is cut off. An
exceeded limit is kept in :attr:`Invocation.exceeded`, and
:meth:`Invocation.failure` turns it into :class:`essa.errors.LimitExceeded`.
:data:`METER_FUNCTIONS` serve modules instrumented by :mod:`essa.instrument`.
"""

from __future__ import annotations

import enum
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Protocol, Sequence

from .engine import Limits
from .errors import CallCancelled, DecodeError, GuestTrap, LimitExceeded, StoreError
from .keys import quoted

if TYPE_CHECKING:  # pragma: no cover
    from .stdin import Stdin

_U32 = struct.Struct("<I")
_MASK = 0xFFFFFFFF


class EssaResult(enum.IntEnum):
    """Return codes of the host functions (contract)."""

    Ok = 0
    UnknownError = -1
    NoSuchFunction = -2
    BufferTooSmall = -3
    NotFound = -4
    InvalidFunctionSignature = -5
    NoResult = -6
    InvalidResult = -8


class GuestFault(Exception):
    """A guest passed a host function something that must end it (a trap)."""


class GuestLimit(GuestFault):
    """A call exceeded a limit inside a host function; the message names the limit."""


class GuestCancelled(GuestFault):
    """The call was cancelled while a host function ran; the message says why."""


class GuestMemory(Protocol):
    """An engine's view of one instance's linear memory."""

    def read(self, ptr: int, length: int) -> bytes:
        """Copy ``length`` bytes at ``ptr``; raise :class:`GuestFault` if out of bounds."""

    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` to ``ptr``; raise :class:`GuestFault` if out of bounds."""


@dataclass(frozen=True)
class CallOutcome:
    """How a remote call ended: ``code`` is ``Ok`` with ``value``, or an error code."""

    code: EssaResult
    value: bytes = b""
    #: For errors: one line saying what happened, for the user.
    message: str = ""
    #: For errors: how the call failed (see :func:`essa.calls.reply_message`), or "".
    kind: str = ""


class PendingCall(Protocol):
    """A started remote call."""

    def wait(self, timeout: float | None = None) -> CallOutcome:
        """Block until the call ends (and help run it if nobody has started it).

        :raises TimeoutError: not ended after ``timeout`` seconds.
        """


class Host(Protocol):
    """What the runtime provides to the host functions of one invocation."""

    def function_status(self, name: str) -> EssaResult:
        """``Ok``, ``NoSuchFunction`` or ``InvalidFunctionSignature`` for calling ``name``."""

    def start_call(self, name: str, args: bytes) -> PendingCall:
        """Start a remote call of export ``name`` of the same module."""

    def get_state(self, key: str) -> bytes | None:
        """The encoded lattice stored under the guest's ``key``, or ``None``."""

    def merge_state(self, key: str, value: bytes) -> None:
        """Merge the encoded lattice ``value`` into the guest's ``key``."""

    def warn(self, message: str) -> None:
        """Tell the user (the ``essa run`` console) about a refused request."""


class Output(Protocol):
    """Where a guest's stdout (stream 1) and stderr (stream 2) go."""

    def write(self, stream: int, data: bytes) -> None: ...


class Invocation:
    """The state of one call of a guest function: arguments, result, handles."""

    __slots__ = (
        "args", "host", "output", "memory", "result", "fault", "limits", "deadline", "exceeded", "exceeded_limit",
        "cancelled", "memory_refused", "refused_result", "output_bytes", "_handles", "_next_handle", "_waited",
        "_wakeup", "argv", "stdin",
    )

    def __init__(
        self,
        args: bytes,
        host: Host,
        output: Output,
        limits: Limits | None = None,
        argv: Sequence[str] = (),
        stdin: Stdin | None = None,
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
        self._handles: dict[int, PendingCall] = {}
        self._waited: dict[int, CallOutcome] = {}
        self._next_handle = 1

    def begin(self, limits: Limits) -> None:
        """Start the call's clock under ``limits``; engines call it as the call starts."""
        self.limits = limits
        self.deadline = None if limits.time_limit is None else time.monotonic() + limits.time_limit

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


# -- the eight host functions ---------------------------------------------------
# Each takes the raw i32 arguments (as Python ints, possibly negative: engines
# pass i32 as signed) and returns an EssaResult code.


def essa_get_args(buf_ptr: int, buf_len: int) -> int:
    """Copy the call's argument bytes into the guest's buffer."""
    inv = current()
    if (buf_len & _MASK) < len(inv.args):
        return EssaResult.BufferTooSmall
    inv._write("argument buffer", buf_ptr, inv.args)
    return EssaResult.Ok


def essa_set_result(ptr: int, length: int) -> int:
    """Set the bytes the function returns to its caller."""
    inv = current()
    length &= _MASK
    if length > inv.limits.max_message_bytes:
        why = f"a result of {length} bytes: {inv.limits.exceeded('message size')}"
        inv.host.warn(f"refused {why}")
        inv.refused_result = why
        return EssaResult.UnknownError
    inv.result = inv._read("result buffer", ptr, length)
    inv.refused_result = None
    return EssaResult.Ok


def essa_call(name_ptr: int, name_len: int, args_ptr: int, args_len: int, handle_ptr: int) -> int:
    """Start a remote call of export ``name`` and write its u32 handle."""
    inv = current()
    name = inv._read_text("function name", name_ptr, name_len)
    if name is None:
        return EssaResult.NoSuchFunction
    if (args_len & _MASK) > inv.limits.max_message_bytes:
        inv.host.warn(
            f"refused call of {quoted(name)} with {args_len & _MASK} bytes of arguments: "
            f"{inv.limits.exceeded('message size')}"
        )
        return EssaResult.UnknownError
    args = inv._read("argument buffer", args_ptr, args_len)
    status = inv.host.function_status(name)
    if status != EssaResult.Ok:
        return status
    handle = inv._next_handle
    # Check the handle slot before starting anything, so a bad pointer starts no call.
    inv._write("result handle pointer", handle_ptr, _U32.pack(handle))
    inv._handles[handle] = inv.host.start_call(name, args)
    inv._next_handle = handle + 1
    return EssaResult.Ok


def essa_get_result_len(handle: int, len_ptr: int) -> int:
    """Wait for a call's result and write its length."""
    inv = current()
    outcome = inv._outcome(handle)
    if outcome is None:
        return EssaResult.NotFound
    if outcome.code != EssaResult.Ok:
        return outcome.code
    inv._write("length pointer", len_ptr, _U32.pack(len(outcome.value)))
    return EssaResult.Ok


def essa_get_result(handle: int, val_ptr: int, capacity: int, len_ptr: int) -> int:
    """Wait for a call's result, copy it out and forget the handle."""
    inv = current()
    outcome = inv._outcome(handle)
    if outcome is None:
        return EssaResult.NotFound
    if outcome.code != EssaResult.Ok:
        return outcome.code
    value = outcome.value
    if (capacity & _MASK) < len(value):
        return EssaResult.BufferTooSmall
    inv._write("value buffer", val_ptr, value)
    inv._write("length pointer", len_ptr, _U32.pack(len(value)))
    del inv._waited[handle & _MASK]
    return EssaResult.Ok


def essa_put_lattice(key_ptr: int, key_len: int, val_ptr: int, val_len: int) -> int:
    """Merge a bincode-encoded ``LatticeValue`` into the guest's key."""
    inv = current()
    key = _read_key(inv, key_ptr, key_len)
    if key is None:
        return EssaResult.UnknownError
    if (val_len & _MASK) > inv.limits.max_message_bytes:
        inv.host.warn(
            f"refused put of key {quoted(key)}: a value of {val_len & _MASK} bytes: {inv.limits.exceeded('message size')}"
        )
        return EssaResult.UnknownError
    value = inv._read("value buffer", val_ptr, val_len)
    if not _is_guest_lattice(value):
        inv.host.warn(f"refused put of key {quoted(key)}: not a guest LatticeValue (variant tag must be 0..4)")
        return EssaResult.UnknownError
    try:
        inv.host.merge_state(key, value)
    except (DecodeError, StoreError) as exc:
        inv.host.warn(f"refused put of key {quoted(key)}: {exc}")
        return EssaResult.UnknownError
    return EssaResult.Ok


def essa_get_lattice_len(key_ptr: int, key_len: int, len_ptr: int) -> int:
    """Write the length of the encoded value stored under the guest's key."""
    inv = current()
    value, code = _get_state(inv, key_ptr, key_len)
    if value is None:
        return code
    inv._write("length pointer", len_ptr, _U32.pack(len(value)))
    return EssaResult.Ok


def essa_get_lattice_data(key_ptr: int, key_len: int, val_ptr: int, capacity: int, len_ptr: int) -> int:
    """Copy the encoded value stored under the guest's key, and its length."""
    inv = current()
    value, code = _get_state(inv, key_ptr, key_len)
    if value is None:
        return code
    if (capacity & _MASK) < len(value):
        return EssaResult.BufferTooSmall
    inv._write("value buffer", val_ptr, value)
    inv._write("length pointer", len_ptr, _U32.pack(len(value)))
    return EssaResult.Ok


def _read_key(inv: Invocation, key_ptr: int, key_len: int) -> str | None:
    """The guest's state key: UTF-8 text of at most the message size limit, else ``None`` (warned once)."""
    if (key_len & _MASK) > inv.limits.max_message_bytes:
        inv.host.warn(f"refused a state key of {key_len & _MASK} bytes: {inv.limits.exceeded('message size')}")
        return None
    return inv._read_text("a state key", key_ptr, key_len)


def _get_state(inv: Invocation, key_ptr: int, key_len: int) -> tuple[bytes | None, int]:
    key = _read_key(inv, key_ptr, key_len)
    if key is None:
        return None, EssaResult.UnknownError
    try:
        value = inv.host.get_state(key)
    except StoreError as exc:
        inv.host.warn(f"reading key {quoted(key)} failed: {exc}")
        return None, EssaResult.UnknownError
    if value is None:
        return None, EssaResult.NotFound
    return value, EssaResult.Ok


def _is_guest_lattice(value: bytes) -> bool:
    # Tags 5.. are host-side lattices a guest cannot name; the store decodes the rest.
    return len(value) >= 4 and _U32.unpack_from(value)[0] <= 4


class HostFunction:
    """One ``host`` import: its name, parameter count and implementation.

    Engines register :meth:`__call__`, which turns a :class:`GuestFault` or an
    unexpected error into a trap of the calling guest, recording the reason in
    :attr:`Invocation.fault` (the engine's own trap message is generic).
    """

    __slots__ = ("name", "arity", "impl")

    def __init__(self, impl: Callable[..., int]) -> None:
        self.impl = impl
        self.name = impl.__name__
        self.arity = impl.__code__.co_argcount

    def __call__(self, *args: int) -> int:
        try:
            return self.impl(*args)
        except (GuestLimit, GuestCancelled):
            raise  # already recorded in Invocation.exceeded / Invocation.cancelled
        except GuestFault as exc:
            _record_fault(f"{self.name}: {exc}")
            raise
        except Exception as exc:
            _record_fault(f"{self.name} failed: {type(exc).__name__}: {exc}")
            raise

    def __repr__(self) -> str:
        return f"HostFunction({self.name}, arity={self.arity})"


def _record_fault(message: str) -> None:
    stack = getattr(_local, "stack", None)
    if stack and stack[-1].fault is None:
        stack[-1].fault = message


#: Every host function of the ABI, in the order of docs/abi.md.
HOST_FUNCTIONS: tuple[HostFunction, ...] = tuple(
    HostFunction(f)
    for f in (
        essa_get_args,
        essa_set_result,
        essa_call,
        essa_get_result_len,
        essa_get_result,
        essa_put_lattice,
        essa_get_lattice_len,
        essa_get_lattice_data,
    )
)

#: The Wasm import module the host functions live in.
IMPORT_MODULE = "host"


# -- for modules instrumented by essa.instrument ---------------------------------------

#: Fuel :func:`refuel` hands out: about this many Wasm instructions run between
#: two deadline checks (a few milliseconds).
FUEL = 1 << 22


def refuel() -> int:
    """``essa_meter.refuel``: check the call's deadline and cancellation, then give more fuel."""
    inv = current()
    inv.check()
    return FUEL


def grow_refused(pages: int, current_pages: int) -> None:
    """``essa_meter.grow_refused``: remember a ``memory.grow`` refused by the memory limit.

    A refusal within the limit (the module's own maximum) is the module's
    business and not recorded.
    """
    inv = current()
    pages &= _MASK
    if ((current_pages & _MASK) + pages) * 65536 > inv.limits.max_memory_bytes:
        inv.memory_refused = pages or 1


#: The host functions of :mod:`essa.instrument`'s import module: name ->
#: (implementation, param types, result types). Like :data:`HOST_FUNCTIONS`,
#: they trap the guest only (a :class:`GuestLimit` when the time is up).
METER_FUNCTIONS: dict[str, tuple[Callable[..., int | None], tuple[str, ...], tuple[str, ...]]] = {
    "refuel": (refuel, (), ("i32",)),
    "grow_refused": (grow_refused, ("i32", "i32"), ()),
}
