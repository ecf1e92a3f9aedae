"""The guest ABI's contract, as Python types: result codes, and what host functions work with.

Guests import essa's eight functions from the Wasm module ``host``
(:data:`IMPORT_MODULE`); every parameter and result is an i32 and each returns
an :class:`EssaResult` code (the contract: docs/abi.md). The functions
themselves are in :mod:`essa.wasm.host`; the call they serve is an
:class:`essa.wasm.invocation.Invocation`. An engine gives each running
instance a :class:`GuestMemory`; the runtime gives each invocation a
:class:`Host`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

#: The Wasm import module the host functions live in.
IMPORT_MODULE = "host"


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
    #: For errors: how the call failed (see :func:`essa.cluster.calls.reply_message`), or "".
    kind: str = ""
    #: For errors: the last lines of the call's stderr (its message ends with them too).
    stderr: tuple[str, ...] = ()
    #: The call's id (its log lines carry it), or "".
    call: str = ""
    #: Where the callee's own realtime clock ended (see :meth:`essa.wasm.invocation.Invocation.realtime_ns`),
    #: or ``None``: the caller's clock moves past it, so what it writes next is stamped later.
    clock: int | None = None


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


__all__ = ["IMPORT_MODULE", "CallOutcome", "EssaResult", "GuestMemory", "Host", "Output", "PendingCall"]
