"""Arguments and results of functions, in bincode, by type names: :func:`essa.encode` and :func:`essa.decode`.

A function written with the Rust SDK's ``#[essa_wrap]`` (or the C SDK's
bincode helpers) takes its parameters bincode-encoded one after the other
and returns its result bincode-encoded. :func:`encode` and :func:`decode`
turn Python values into those bytes and back by type names: every type of
:mod:`essa.state.types` (``string``, ``u64``, ``list<string>``, ...), and
three older names, ``usize`` (``u64``), ``isize`` (``i64``) and
``strings`` (``list<string>``, given on a command line as ``a,b,c``).

``essa call NAME FUNCTION ARG... --args string,u32 --result u64`` uses them
for functions without a signature; a function with one (docs/signatures.md)
needs neither.
"""

from __future__ import annotations

from typing import Any, Sequence

from essa.errors import EssaError
from essa.state.types import GRAMMAR, Mismatch, Type, decode_value, parse_type

#: Older names of types, still accepted.
ALIASES = {"usize": "u64", "isize": "i64", "strings": "list<string>"}

#: The type names :func:`encode` and :func:`decode` accept, for messages.
TYPES = ("string", "bytes", "strings", "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize",
         "bool", "f32", "f64", "unit", "option<T>", "list<T>", "tuple<T1,T2,...>", "map<K,V>")


class CodecError(EssaError):
    """A value does not fit its type, or bytes do not decode as the type."""


def type_of(name: str) -> Type:
    """The :class:`~essa.state.types.Type` a type name (or an older alias) stands for."""
    try:
        return parse_type(ALIASES.get(name.strip(), name))
    except Mismatch:
        raise CodecError(f"unknown type {name.strip()!r} (types: {', '.join(TYPES)})") from None


def parse_types(text: str) -> list[str]:
    """``"string,u32"`` -> ``["string", "u32"]`` (commas inside ``<>`` belong to the type); one-line errors."""
    names, depth, start = [], 0, 0
    for index, char in enumerate(text + ","):
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and depth <= 0:
            name = text[start:index].strip()
            if name:
                type_of(name)
                names.append(name)
            start = index + 1
    return names


def encode(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """The bincode bytes of ``values`` as ``types``, one after the other (a function's arguments).

    Values may be given as text (from a command line): ``"42"`` for ``u32``,
    ``"true"`` for ``bool``, ``"a,b"`` for ``strings``, JSON for lists,
    tuples and maps.
    """
    if isinstance(types, str):
        types = [types]
        values = [values]
    if len(types) != len(values):
        raise CodecError(f"{len(types)} types ({', '.join(types) or 'none'}) but {len(values)} values")
    out = bytearray()
    for number, (name, value) in enumerate(zip(types, values), start=1):
        kind = type_of(name)
        try:
            if name.strip() == "strings" and isinstance(value, str):
                value = value.split(",")
            elif kind.text == "string" and isinstance(value, (bytes, bytearray)):
                value = _text(bytes(value), name)
            elif isinstance(value, str) and kind.text != "string":
                value = kind.from_text(value)
            kind.encode(value, out)
        except Mismatch as exc:
            raise CodecError(f"argument {number}{exc.where()}: {exc.reason}") from None
    return bytes(out)


def decode(kind: str, data: bytes) -> Any:
    """The value of type ``kind`` that ``data`` encodes (all of it: trailing bytes are an error)."""
    try:
        return decode_value(type_of(kind), data)
    except Mismatch as exc:
        raise CodecError(f"the result{exc.where()} is not a {kind.strip()}: {exc.reason}") from None


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Mismatch(f"expected {name}, got bytes that are not UTF-8 text") from None


__all__ = ["ALIASES", "GRAMMAR", "TYPES", "CodecError", "decode", "encode", "parse_types", "type_of"]
