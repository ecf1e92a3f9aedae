"""Errors that essa reports to its users.

Every error a user can cause (a bad module, an unknown plugin, a refused write)
is an :class:`EssaError` whose message is one line naming the problem. The CLI
prints that line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class EssaError(Exception):
    """Base class of all errors essa reports to a user."""


class NotFound(EssaError):
    """A deployment, a version of one, or a function of one does not exist; the message says which."""


class PluginNotFound(EssaError):
    """An engine, store or transport was asked for by a name nobody provides."""


class ModuleError(EssaError):
    """A Wasm module cannot be used: unreadable, malformed, or missing an export."""


class GuestTrap(EssaError):
    """A guest function trapped (``unreachable``, out-of-bounds access, abort, ...)."""


class LimitExceeded(GuestTrap):
    """A call exceeded one of its limits; the message names it, ``limit`` says which.

    ``limit`` is ``"time"``, ``"memory"``, ``"output"`` or ``"message size"``.
    """

    def __init__(self, message: str, limit: str = "time") -> None:
        super().__init__(message)
        self.limit = limit


class CallCancelled(GuestTrap):
    """A call was cancelled (its run was interrupted, or a client cancelled it); the message says why."""


class GuestExit(EssaError):
    """A guest called WASI ``proc_exit`` with a non-zero status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the module exited with status {status}")
        self.status = status


class RunFailed(EssaError):
    """A run ended with an error (a trap, a bad module, no answer in time); ``exit_status`` says how."""

    def __init__(self, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class StoreError(EssaError):
    """The store refused or failed an operation (type mismatch, full disk, ...)."""


class InvalidKey(StoreError):
    """A key cannot be stored: not text, not UTF-8 text, or empty; the message says which (see :mod:`essa.state.keys`)."""


class LatticeTypeError(StoreError):
    """Two lattice values of different types were merged."""


class DecodeError(EssaError, ValueError):
    """Bytes are not a valid encoding of a lattice value."""


class ArgumentError(EssaError):
    """Arguments do not fit a function's signature (a missing, extra or wrong one); the message names the parameter.

    Raised before the call is made, so nothing ran.
    """

    kind = "bad-argument"


class ResultError(EssaError):
    """A function's result bytes are not a value of the result type its signature declares.

    ``data`` holds the bytes, for whoever wants them anyway.
    """

    kind = "bad-result"

    def __init__(self, message: str, data: bytes = b"") -> None:
        super().__init__(message)
        self.data = data


class SignatureError(EssaError):
    """A signature (in a module's ``essa.signatures`` section or a TOML file) is malformed; the message says where."""

    kind = "signature"


def kind_of(exc: EssaError, default: str = "error") -> str:
    """How an error failed, in one word, as JSON errors name it (``{"error": LINE, "kind": KIND}``).

    An error's own ``kind`` (calls, control requests, arguments) comes first;
    then ``not-found``, ``invalid`` (a key), ``type-mismatch``, ``module``,
    ``store``, ``trap``; else ``default``.
    """
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str) and kind:
        return kind
    for cls, name in _KINDS:
        if isinstance(exc, cls):
            return name
    return default


_KINDS = (
    (NotFound, "not-found"), (InvalidKey, "invalid"), (LatticeTypeError, "type-mismatch"), (ModuleError, "module"),
    (StoreError, "store"), (LimitExceeded, "limit"), (CallCancelled, "cancelled"), (GuestTrap, "trap"),
    (RunFailed, "failed"), (PluginNotFound, "plugin"),
)
