"""Arguments and results of functions written with the SDKs, in bincode.

A function written with the Rust SDK's ``#[essa_wrap]`` (or the C SDK's
bincode helpers) takes its parameters bincode-encoded one after the other
and returns its result bincode-encoded (bincode 1.x: little-endian, fixed
width integers, ``u64`` lengths). :func:`encode` and :func:`decode` turn
Python values into those bytes and back, for the common types:

=========== ============================ ===========================
type name   Rust type                    Python value
=========== ============================ ===========================
``string``  ``String``, ``&str``         ``str``
``bytes``   ``Vec<u8>``                  ``bytes``
``strings`` ``Vec<String>``              ``list[str]``
``u8`` ..   ``u8``, ``u16``, ``u32``,    ``int``
``u64``     ``u64``, ``usize``
``i8`` ..   ``i8`` .. ``i64``, ``isize`` ``int``
``i64``
``bool``    ``bool``                     ``bool``
``f32``,    ``f32``, ``f64``             ``float``
``f64``
``unit``    ``()``                       ``None``
=========== ============================ ===========================

``essa call NAME FUNCTION ARG... --args string,u32 --result u64`` uses them.
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

from essa.errors import EssaError

_INTS = {
    "u8": "<B", "u16": "<H", "u32": "<I", "u64": "<Q", "usize": "<Q",
    "i8": "<b", "i16": "<h", "i32": "<i", "i64": "<q", "isize": "<q",
}
_FLOATS = {"f32": "<f", "f64": "<d"}
_U64 = struct.Struct("<Q")

#: Every type name :func:`encode` and :func:`decode` accept.
TYPES = ("string", "bytes", "strings", *_INTS, "bool", *_FLOATS, "unit")


class CodecError(EssaError):
    """A value does not fit its type, or bytes do not decode as the type."""


def parse_types(text: str) -> list[str]:
    """``"string,u32"`` -> ``["string", "u32"]``; a one-line error naming the accepted types."""
    types = [t.strip() for t in text.split(",") if t.strip()]
    for name in types:
        if name not in TYPES:
            raise CodecError(f"unknown type {name!r} (types: {', '.join(TYPES)})")
    return types


def encode(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """The bincode bytes of ``values`` as ``types``, one after the other (a function's arguments).

    Values may be given as text (from a command line): ``"42"`` for ``u32``,
    ``"true"`` for ``bool``, ``"a,b"`` for ``strings``.
    """
    if len(types) != len(values):
        raise CodecError(f"{len(types)} types ({', '.join(types) or 'none'}) but {len(values)} values")
    return b"".join(_encode_one(t, v) for t, v in zip(types, values))


def _encode_one(kind: str, value: Any) -> bytes:
    try:
        if kind == "string":
            data = value.encode() if isinstance(value, str) else bytes(value)
            data.decode("utf-8")
            return _U64.pack(len(data)) + data
        if kind == "bytes":
            data = value.encode() if isinstance(value, str) else bytes(value)
            return _U64.pack(len(data)) + data
        if kind == "strings":
            items = value.split(",") if isinstance(value, str) else list(value)
            return _U64.pack(len(items)) + b"".join(_encode_one("string", item) for item in items)
        if kind in _INTS:
            number = int(value, 0) if isinstance(value, str) else value
            if isinstance(number, bool) or not isinstance(number, int):
                raise TypeError("not an integer")
            return struct.pack(_INTS[kind], number)
        if kind in _FLOATS:
            return struct.pack(_FLOATS[kind], float(value))
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError("not true or false")
                value = value.lower() in ("true", "1")
            return bytes([bool(value)])
        if kind == "unit":
            return b""
    except (TypeError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise CodecError(f"{value!r} is not a {kind}: {exc}") from None
    raise CodecError(f"unknown type {kind!r} (types: {', '.join(TYPES)})")


def decode(kind: str, data: bytes) -> Any:
    """The value of type ``kind`` that ``data`` encodes (all of it: trailing bytes are an error)."""
    value, end = _decode_at(kind, bytes(data), 0)
    if end != len(data):
        raise CodecError(f"the result is not a {kind}: {len(data) - end} bytes left over after it")
    return value


def _decode_at(kind: str, data: bytes, pos: int) -> tuple[Any, int]:
    try:
        if kind in ("string", "bytes"):
            (length,) = _U64.unpack_from(data, pos)
            end = pos + 8 + length
            if end > len(data):
                raise CodecError(f"the result is not a {kind}: it claims {length} bytes, {len(data) - pos - 8} follow")
            raw = data[pos + 8:end]
            return (raw.decode("utf-8") if kind == "string" else raw), end
        if kind == "strings":
            (count,) = _U64.unpack_from(data, pos)
            if count > len(data):
                raise CodecError(f"the result is not a list of strings: it claims {count} items")
            items, pos = [], pos + 8
            for _ in range(count):
                item, pos = _decode_at("string", data, pos)
                items.append(item)
            return items, pos
        if kind in _INTS or kind in _FLOATS:
            fmt = _INTS.get(kind) or _FLOATS[kind]
            return struct.unpack_from(fmt, data, pos)[0], pos + struct.calcsize(fmt)
        if kind == "bool":
            if pos >= len(data) or data[pos] > 1:
                raise CodecError("the result is not a bool")
            return data[pos] == 1, pos + 1
        if kind == "unit":
            return None, pos
    except struct.error:
        raise CodecError(f"the result is not a {kind}: too short ({len(data)} bytes)") from None
    except UnicodeDecodeError:
        raise CodecError("the result is not a string: not valid UTF-8") from None
    raise CodecError(f"unknown type {kind!r} (types: {', '.join(TYPES)})")


__all__ = ["CodecError", "TYPES", "decode", "encode", "parse_types"]
