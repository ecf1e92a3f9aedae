"""How essa's errors become HTTP answers: a status and ``{"error": LINE, "kind": KIND}``.

``LINE`` is the one line the ``essa`` command prints for the same error (the
exception's message); ``KIND`` says how it failed, as :class:`essa.api.CallError`
and the control service name it. A failed call's body adds ``stderr`` and
``call``.
"""

from __future__ import annotations

import json

from essa.plugin import EssaError, kind_of

#: The HTTP status of each kind of failure; any other kind is 500.
STATUS_OF_KIND = {
    "not-found": 404,  # no such deployment, version, function or state key
    "no-such-function": 404,
    "invalid": 400,  # a malformed name, version, key or value
    "bad-argument": 400,  # arguments that do not fit the function's signature
    "type-mismatch": 409,  # a state value of another lattice type than the stored one
    "message-size": 413,  # arguments, result or value over the message size limit
    "time-limit": 504,
    "unavailable": 503,  # no executor or no scheduler answered
    "cancelled": 503,  # the call was cancelled before it answered (an executor stopping, ...)
    "refused": 403,  # the request's access token does not allow it (a cluster that checks tokens)
    # 500: trap, memory-limit, output-limit, exit, no-result, bad-signature, bad-result, module, store, error
}


class HttpError(Exception):
    """An answer other than success: ``status``, the one-line ``message`` and ``kind``.

    ``close`` asks to close the connection after the answer (the request's
    body was not read).
    """

    def __init__(self, status: int, message: str, kind: str, close: bool = False, details: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.close = close
        #: More fields of the body (a failed call's ``stderr`` and ``call``).
        self.details = details or {}

    def body(self) -> bytes:
        return error_body(self.message, self.kind, self.details)


def error_body(message: str, kind: str, details: dict | None = None) -> bytes:
    """The JSON body of an error answer."""
    return json.dumps({"error": message, "kind": kind, **(details or {})}, ensure_ascii=False).encode()


def from_essa_error(exc: EssaError) -> HttpError:
    """The answer to an :class:`EssaError` raised by the public API.

    Its kind (:func:`essa.errors.kind_of`: ``not-found`` for
    :class:`~essa.errors.NotFound`, a call's or a control refusal's own,
    ``bad-argument``, ...) maps by :data:`STATUS_OF_KIND`; any other
    :class:`EssaError` is something the request got wrong (a malformed
    deployment name or version): 400. A failed call's body also has
    ``stderr`` (its last lines) and ``call`` (its id, for
    ``GET /v1/logs/NAME?call=ID``).
    """
    kind = kind_of(exc, "invalid")
    details = {}
    if isinstance(getattr(exc, "stderr", None), list):
        details["stderr"] = exc.stderr
    if getattr(exc, "call", None):
        details["call"] = exc.call
    return HttpError(STATUS_OF_KIND.get(kind, 500), str(exc), kind, details=details)


__all__ = ["STATUS_OF_KIND", "HttpError", "error_body", "from_essa_error"]
