"""How a request's body becomes a call's arguments, by its Content-Type and the function's signature.

A function **with a signature** (``essa functions NAME`` shows them) takes:

- ``application/json`` (or any ``+json`` type): the arguments as a JSON array
  (in order) or object (by parameter name); the answer is the result as JSON;
- ``text/plain`` or ``application/octet-stream`` (or no Content-Type): the
  value of its one ``string`` or ``bytes`` parameter, as it is (a string must
  be UTF-8); the answer is the result as JSON;
- ``application/x-bincode``: the arguments' bincode bytes (checked against
  the signature); the answer is the result's bytes, as ``application/x-bincode``.

An empty body calls a function of no parameters whatever its type says. A
function **without a signature** takes any body as its argument bytes, and
its answer carries the request's Content-Type (functions cannot set one), as
before signatures. Arguments that do not fit are 400 with the line naming
the parameter; another Content-Type is 415.
"""

from __future__ import annotations

import json
from typing import Any

from essa.plugin import Signature

from .errors import HttpError

#: The Content-Type of raw argument and result bytes (bincode) of a function with a signature.
BINCODE = "application/x-bincode"
#: What the Content-Type of a call to a function with a signature may be, for messages.
ACCEPTED = ("application/json (the arguments as an array or object), text/plain or application/octet-stream "
            f"(a function of one string or bytes parameter), {BINCODE} (the argument bytes)")


def media_type(header: str | None) -> str:
    """The media type of a Content-Type header, lower-case, without parameters (``""`` for none)."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def arguments(signature: Signature, media: str, body: bytes) -> tuple[tuple, dict]:
    """The positional and named arguments of a call of ``signature`` with ``body`` (see the module documentation).

    A ``bincode`` body is the one positional ``bytes`` argument (the raw argument bytes).

    :raises HttpError: a body that is not what its Content-Type says (400), or a Content-Type it cannot take (415).
    """
    if media == BINCODE:
        return (body,), {}
    if not body and not signature.params:
        return (), {}
    if is_json(media):
        try:
            value = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise HttpError(400, f"the body is not JSON: {exc}", "invalid") from None
        if isinstance(value, list):
            return tuple(value), {}
        if isinstance(value, dict):
            return (), value
        signature.encode_json(value)  # raises the one line saying what to send
    if media in ("text/plain", "application/octet-stream", ""):
        param = signature.params[0] if len(signature.params) == 1 else None
        if param is not None and param.type.text in ("string", "bytes"):
            if param.type.text == "bytes":
                return (), {param.name: body}
            try:
                return (), {param.name: body.decode("utf-8")}
            except UnicodeDecodeError:
                raise HttpError(400, f"{signature.name}: parameter {param.name}: expected string, got a body that "
                                "is not UTF-8 text", "bad-argument") from None
        raise HttpError(415, f"{signature.name} ({signature}) takes its arguments as JSON: send Content-Type "
                        f"application/json, or {BINCODE} for the argument bytes", "invalid")
    raise HttpError(415, f"Content-Type {media!r} is not one a call takes: {ACCEPTED}", "invalid")


def answer_json(signature: Signature, value: Any) -> bytes:
    """The JSON body of a result."""
    return json.dumps(signature.result_json(value), ensure_ascii=False, allow_nan=False).encode()


__all__ = ["ACCEPTED", "BINCODE", "answer_json", "arguments", "is_json", "media_type"]
