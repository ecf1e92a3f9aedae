"""The types of function parameters and results, and their bytes: bincode 1.x, as ``#[essa_wrap]`` writes them.

A type is written as text (docs/signatures.md is the contract)::

    string  bytes  bool  unit
    u8 u16 u32 u64 u128  i8 i16 i32 i64 i128  f32 f64
    option<T>  list<T>  tuple<T1,T2,...>  map<K,V>

and :func:`parse_type` turns the text into a :class:`Type`, which encodes a
value into bincode, decodes bincode back into a value, and converts values
to and from JSON and command-line text. The bytes are serde + bincode 1.x
with its default (fixed-width, little-endian) integers, exactly as Rust's
``#[essa_wrap]`` functions read and write them:

============ ============================ ============================ ===========================
type         Rust                         bytes                        Python / JSON
============ ============================ ============================ ===========================
``string``   ``String``                   u64 length, UTF-8            ``str`` / string
``bytes``    ``Vec<u8>``                  u64 length, the bytes        ``bytes`` / ``{"base64": ...}``
``bool``     ``bool``                     one byte, 0 or 1             ``bool`` / true, false
``u8``..     ``u8``..``u128``, ``usize``  little-endian, fixed width   ``int`` / number
``i8``..     ``i8``..``i128``, ``isize``  little-endian, two's compl.  ``int`` / number
``f32``      ``f32``, ``f64``             IEEE 754, little-endian      ``float`` / number
``unit``     ``()``                       nothing                      ``None`` / null
``option``   ``Option<T>``                0, or 1 then the value       ``None`` or the value
``list``     ``Vec<T>``                   u64 count, the items         ``list`` / array
``tuple``    ``(T1, T2)``, ``[T; N]``     the items in order           ``tuple`` / array
``map``      ``HashMap<K,V>``, ``BTreeMap`` u64 count, key value pairs ``dict`` / object
============ ============================ ============================ ===========================

Values are accepted leniently where nothing is ambiguous: a ``bytes`` value
may be ``bytes``, text (its UTF-8), ``{"base64": "..."}`` or a list of
numbers 0-255; a float may be ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``
(JSON has no such numbers; :meth:`Type.to_json` writes them so); a map may be
a dict or a list of ``[key, value]`` pairs, its keys text where JSON needs
them to be. A value that does not fit raises :class:`Mismatch`, whose
message says what was expected and what came (:mod:`essa.state.signatures`
names the parameter).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import struct
from typing import Any

#: The longest type text :func:`parse_type` reads, and how deeply types may nest.
MAX_TYPE_TEXT = 1024
MAX_DEPTH = 32
#: Most items of a list or map of zero-size items (``list<unit>``) a result may claim.
MAX_EMPTY_ITEMS = 1 << 20

_U64 = struct.Struct("<Q")
_NAN_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class Mismatch(ValueError):
    """A value does not fit its type, or bytes do not decode as it; ``path`` says where within the value.

    ``path`` is a list of the positions leading to the part that does not
    fit (``[2]`` for a list's third item, ``["k"]`` for a map's value at key
    ``k``), outermost first.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []

    def within(self, segment: str) -> "Mismatch":
        self.path.insert(0, segment)
        return self

    def where(self) -> str:
        return "".join(self.path)


def shown(value: Any, limit: int = 60) -> str:
    """``value`` for a message: as JSON where it is a JSON value, else its Python type; cut at ``limit``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"bytes ({len(value)} bytes)"
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Type:
    """A type of the grammar above: encodes and decodes its values (see the module documentation).

    Types compare equal when their text is equal; ``str(t)`` is the
    canonical text (no spaces), which :func:`parse_type` reads back.
    """

    __slots__ = ("text", "min_size", "plain")

    def __init__(self, text: str, min_size: int, plain: bool = True) -> None:
        self.text = text
        #: The fewest bytes a value of this type takes (guards counts in bytes to decode).
        self.min_size = min_size
        #: Whether :meth:`to_json` gives the value back as it is (no bytes, no floats inside).
        self.plain = plain

    def encode(self, value: Any, out: bytearray) -> None:
        """Append the bincode of ``value`` to ``out``; :class:`Mismatch` if it does not fit."""
        raise NotImplementedError

    def pack(self, value: Any) -> bytes:
        """The bincode of ``value`` alone (what :meth:`encode` appends); :class:`Mismatch` if it does not fit."""
        out = bytearray()
        self.encode(value, out)
        return bytes(out)

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        """The value whose bincode starts at ``data[pos]``, and where it ends.

        :raises Mismatch: the bytes are not a value of this type.
        :raises struct.error: ``data`` ends too soon (so may ``IndexError``).
        """
        raise NotImplementedError

    def to_json(self, value: Any) -> Any:
        """A decoded value as JSON can hold it (bytes as ``{"base64": ...}``, non-finite floats as text)."""
        return value

    def from_text(self, text: str) -> Any:
        """The value a command-line argument gives (see :meth:`Signature.encode_texts`); :class:`Mismatch` if none."""
        try:
            value = json.loads(text)
        except ValueError:
            raise Mismatch(f"expected {self.text} as JSON, got {shown(text)}") from None
        return value

    def mismatch(self, value: Any, detail: str = "") -> Mismatch:
        return Mismatch(f"expected {self.text}{detail}, got {shown(value)}")

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"essa.Type({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Type) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


# -- scalars --------------------------------------------------------------------------


class _String(Type):
    __slots__ = ()

    def encode(self, value: Any, out: bytearray) -> None:
        out += self.pack(value)

    def pack(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise self.mismatch(value)
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            raise Mismatch(f"expected string, got text that is not valid Unicode: {shown(value)}") from None
        return _U64.pack(len(data)) + data

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        raw, end = _sized(data, pos)
        try:
            return raw.decode("utf-8"), end
        except UnicodeDecodeError:
            raise Mismatch("a string that is not UTF-8") from None

    def from_text(self, text: str) -> Any:
        return text


class _Bytes(Type):
    __slots__ = ()

    def encode(self, value: Any, out: bytearray) -> None:
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
        elif isinstance(value, str):
            try:
                data = value.encode("utf-8")
            except UnicodeEncodeError:
                raise Mismatch(f"expected bytes, got text that is not valid Unicode: {shown(value)}") from None
        elif isinstance(value, dict) and len(value) == 1 and isinstance(value.get("base64"), str):
            try:
                data = base64.b64decode(value["base64"], validate=True)
            except (binascii.Error, ValueError):
                raise Mismatch(f"expected bytes, got base64 that does not decode: {shown(value)}") from None
        elif isinstance(value, (list, tuple)) and all(type(b) is int and 0 <= b <= 255 for b in value):
            data = bytes(value)
        else:
            raise self.mismatch(value, " (bytes, text, {\"base64\": ...} or a list of numbers 0-255)")
        out += _U64.pack(len(data))
        out += data

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        return _sized(data, pos)

    def to_json(self, value: Any) -> Any:
        return {"base64": base64.b64encode(value).decode("ascii")}

    def from_text(self, text: str) -> Any:
        return text.encode("utf-8", "surrogateescape")


class _Bool(Type):
    __slots__ = ()

    def encode(self, value: Any, out: bytearray) -> None:
        if value is True:
            out.append(1)
        elif value is False:
            out.append(0)
        else:
            raise self.mismatch(value)

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        byte = data[pos]
        if byte > 1:
            raise Mismatch(f"a bool byte of {byte} (only 0 and 1 are bools)")
        return byte == 1, pos + 1

    def from_text(self, text: str) -> Any:
        lowered = text.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise Mismatch(f"expected bool (true or false), got {shown(text)}")


class _Int(Type):
    __slots__ = ("packer", "size", "signed", "low", "high")

    def __init__(self, name: str, bits: int, signed: bool) -> None:
        super().__init__(name, bits // 8)
        self.size = bits // 8
        self.signed = signed
        self.low = -(1 << (bits - 1)) if signed else 0
        self.high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        codes = {1: "b", 2: "h", 4: "i", 8: "q"}
        code = codes.get(self.size)
        self.packer = struct.Struct("<" + (code if signed else code.upper())) if code else None

    def encode(self, value: Any, out: bytearray) -> None:
        out += self.pack(value)

    def pack(self, value: Any) -> bytes:
        if type(value) is not int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.mismatch(value)
            value = int(value)
        if not self.low <= value <= self.high:
            raise Mismatch(f"expected {self.text} ({self.low} to {self.high}), got {value}")
        if self.packer is not None:
            return self.packer.pack(value)
        return value.to_bytes(self.size, "little", signed=self.signed)

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        if self.packer is not None:
            return self.packer.unpack_from(data, pos)[0], pos + self.size
        end = pos + self.size
        if end > len(data):
            raise struct.error("too short")
        return int.from_bytes(data[pos:end], "little", signed=self.signed), end

    def from_text(self, text: str) -> Any:
        digits = text.strip().replace("_", "")
        unsigned = digits.lstrip("+-")
        try:
            value = int(digits, 0 if unsigned[:2].lower() in ("0x", "0o", "0b") else 10)
        except ValueError:
            raise Mismatch(f"expected {self.text} (a whole number), got {shown(text)}") from None
        if not self.low <= value <= self.high:
            raise Mismatch(f"expected {self.text} ({self.low} to {self.high}), got {value}")
        return value


class _Float(Type):
    __slots__ = ("packer",)

    def __init__(self, name: str, fmt: str) -> None:
        super().__init__(name, struct.calcsize(fmt), plain=False)
        self.packer = struct.Struct(fmt)

    def encode(self, value: Any, out: bytearray) -> None:
        if isinstance(value, str) and value in _NAN_NAMES:
            value = _NAN_NAMES[value]
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.mismatch(value)
        try:
            out += self.packer.pack(value)
        except (OverflowError, struct.error):
            raise Mismatch(f"expected {self.text}, got {shown(value)} (out of its range)") from None

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        return self.packer.unpack_from(data, pos)[0], pos + self.packer.size

    def to_json(self, value: Any) -> Any:
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")

    def from_text(self, text: str) -> Any:
        try:
            return float(text)
        except ValueError:
            raise Mismatch(f"expected {self.text} (a number), got {shown(text)}") from None


class _Unit(Type):
    __slots__ = ()

    def encode(self, value: Any, out: bytearray) -> None:
        if value is not None:
            raise self.mismatch(value, " (null)")

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        return None, pos

    def from_text(self, text: str) -> Any:
        if text.strip() in ("", "null"):
            return None
        raise Mismatch(f"expected unit (null), got {shown(text)}")


# -- compound types -------------------------------------------------------------------


class _Option(Type):
    __slots__ = ("item",)

    def __init__(self, item: Type) -> None:
        super().__init__(f"option<{item.text}>", 1, item.plain)
        self.item = item

    def encode(self, value: Any, out: bytearray) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            self.item.encode(value, out)

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        tag = data[pos]
        if tag == 0:
            return None, pos + 1
        if tag != 1:
            raise Mismatch(f"an option tag of {tag} (only 0 and 1 are options)")
        return self.item.decode(data, pos + 1)

    def to_json(self, value: Any) -> Any:
        return None if value is None else self.item.to_json(value)

    def from_text(self, text: str) -> Any:
        return None if text.strip() == "null" else self.item.from_text(text)


class _List(Type):
    __slots__ = ("item",)

    def __init__(self, item: Type) -> None:
        super().__init__(f"list<{item.text}>", 8, item.plain)
        self.item = item

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, (list, tuple)):
            raise self.mismatch(value)
        out += _U64.pack(len(value))
        item = self.item
        for index, element in enumerate(value):
            try:
                item.encode(element, out)
            except Mismatch as exc:
                raise exc.within(f"[{index}]") from None

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        count, pos = _count(data, pos, self.item.min_size)
        items = []
        item = self.item
        for index in range(count):
            try:
                value, pos = item.decode(data, pos)
            except Mismatch as exc:
                raise exc.within(f"[{index}]") from None
            items.append(value)
        return items, pos

    def to_json(self, value: Any) -> Any:
        return value if self.plain else [self.item.to_json(v) for v in value]


class _Tuple(Type):
    __slots__ = ("items",)

    def __init__(self, items: tuple[Type, ...]) -> None:
        super().__init__(f"tuple<{','.join(t.text for t in items)}>", sum(t.min_size for t in items),
                         all(t.plain for t in items))
        self.items = items

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, (list, tuple)) or len(value) != len(self.items):
            raise self.mismatch(value, f" ({len(self.items)} items)")
        for index, (item, element) in enumerate(zip(self.items, value)):
            try:
                item.encode(element, out)
            except Mismatch as exc:
                raise exc.within(f"[{index}]") from None

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        values = []
        for index, item in enumerate(self.items):
            try:
                value, pos = item.decode(data, pos)
            except Mismatch as exc:
                raise exc.within(f"[{index}]") from None
            values.append(value)
        return tuple(values), pos

    def to_json(self, value: Any) -> Any:
        return list(value) if self.plain else [t.to_json(v) for t, v in zip(self.items, value)]


class _Map(Type):
    __slots__ = ("key", "value")

    def __init__(self, key: Type, value: Type) -> None:
        super().__init__(f"map<{key.text},{value.text}>", 8, value.plain)
        self.key = key
        self.value = value

    def encode(self, value: Any, out: bytearray) -> None:
        if isinstance(value, dict):
            pairs = value.items()
        elif isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
            pairs = value
        else:
            raise self.mismatch(value, " (an object, or a list of [key, value] pairs)")
        out += _U64.pack(len(pairs))
        for key, item in pairs:
            where = f"[{shown(key)}]"
            try:
                if isinstance(key, str) and self.key.text != "string":
                    key = self.key.from_text(key)  # JSON object keys are text
                self.key.encode(key, out)
            except Mismatch as exc:
                raise exc.within(f"(key {shown(key)})") from None
            try:
                self.value.encode(item, out)
            except Mismatch as exc:
                raise exc.within(where) from None

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        count, pos = _count(data, pos, self.key.min_size + self.value.min_size)
        result = {}
        for _ in range(count):
            key, pos = self.key.decode(data, pos)
            try:
                result[key], pos = self.value.decode(data, pos)
            except Mismatch as exc:
                raise exc.within(f"[{shown(key)}]") from None
        return result, pos

    def to_json(self, value: Any) -> Any:
        if self.plain:
            return value
        return {k: self.value.to_json(v) for k, v in value.items()}


def _sized(data: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = _U64.unpack_from(data, pos)
    start = pos + 8
    end = start + length
    if end > len(data):
        raise Mismatch(f"a length of {length} bytes where {len(data) - start} remain")
    return data[start:end], end


def _count(data: bytes, pos: int, item_size: int) -> tuple[int, int]:
    (count,) = _U64.unpack_from(data, pos)
    pos += 8
    if (item_size and count * item_size > len(data) - pos) or (not item_size and count > MAX_EMPTY_ITEMS):
        raise Mismatch(f"a count of {count} items where {len(data) - pos} bytes remain")
    return count, pos


# -- the grammar ----------------------------------------------------------------------

_SCALARS: dict[str, Type] = {
    "string": _String("string", 8),
    "bytes": _Bytes("bytes", 8, plain=False),
    "bool": _Bool("bool", 1),
    "unit": _Unit("unit", 0),
    **{f"u{bits}": _Int(f"u{bits}", bits, False) for bits in (8, 16, 32, 64, 128)},
    **{f"i{bits}": _Int(f"i{bits}", bits, True) for bits in (8, 16, 32, 64, 128)},
    "f32": _Float("f32", "<f"),
    "f64": _Float("f64", "<d"),
}
#: Types a map's keys may have.
MAP_KEYS = ("string", "bool", *(f"{s}{b}" for s in "ui" for b in (8, 16, 32, 64, 128)))
#: The grammar, for messages.
GRAMMAR = ("string, bytes, bool, unit, u8..u128, i8..i128, f32, f64, option<T>, list<T>, tuple<T1,T2,...>, "
           "map<K,V>")

_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[<>,]|\S)")


@functools.lru_cache(maxsize=1024)
def parse_type(text: str) -> Type:
    """The :class:`Type` that ``text`` spells (spaces allowed between tokens).

    :raises Mismatch: ``text`` is not a type (the message says why, in one line).
    """
    if not isinstance(text, str):
        raise Mismatch(f"a type is text, not {shown(text)}")
    if len(text) > MAX_TYPE_TEXT:
        raise Mismatch(f"a type of {len(text)} characters (at most {MAX_TYPE_TEXT})")
    tokens = _TOKEN.findall(text)
    parser = _Parser(tokens, text)
    parsed = parser.type(0)
    if parser.pos != len(tokens):
        raise parser.error(f"unexpected {tokens[parser.pos]!r} after {parsed.text}")
    return parsed


class _Parser:
    def __init__(self, tokens: list[str], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.pos = 0

    def error(self, why: str) -> Mismatch:
        return Mismatch(f"{self.text!r} is not a type: {why}")

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise self.error("it ends too soon")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, token: str) -> None:
        got = self.take()
        if got != token:
            raise self.error(f"expected {token!r}, found {got!r}")

    def type(self, depth: int) -> Type:
        if depth > MAX_DEPTH:
            raise self.error(f"types nest deeper than {MAX_DEPTH}")
        name = self.take()
        scalar = _SCALARS.get(name)
        if scalar is not None:
            return scalar
        if name not in ("option", "list", "tuple", "map"):
            raise self.error(f"unknown type {name!r} (types: {GRAMMAR})")
        self.expect("<")
        items = [self.type(depth + 1)]
        while self.tokens[self.pos:self.pos + 1] == [","]:
            self.pos += 1
            items.append(self.type(depth + 1))
        self.expect(">")
        if name == "tuple":
            return _Tuple(tuple(items))
        if name == "map":
            if len(items) != 2:
                raise self.error(f"map takes a key type and a value type, not {len(items)} types")
            if items[0].text not in MAP_KEYS:
                raise self.error(f"a map's keys are string, bool or an integer type, not {items[0].text}")
            return _Map(items[0], items[1])
        if len(items) != 1:
            raise self.error(f"{name} takes one type, not {len(items)}")
        return _Option(items[0]) if name == "option" else _List(items[0])


def encode_value(kind: Type, value: Any) -> bytes:
    """The bincode of one ``value`` of type ``kind``."""
    out = bytearray()
    kind.encode(value, out)
    return bytes(out)


def decode_value(kind: Type, data: bytes) -> Any:
    """The one value of type ``kind`` that ``data`` holds, all of it.

    :raises Mismatch: ``data`` is not exactly one value of the type.
    """
    data = bytes(data)
    try:
        value, end = kind.decode(data, 0)
    except (struct.error, IndexError):
        raise Mismatch(f"its {count_bytes(len(data))} end before a whole {kind.text}") from None
    if end != len(data):
        raise Mismatch(f"{count_bytes(len(data) - end)} left over after a {kind.text}")
    return value


def count_bytes(count: int) -> str:
    """``"1 byte"``, ``"3 bytes"``."""
    return f"{count} byte{'' if count == 1 else 's'}"


__all__ = ["GRAMMAR", "MAP_KEYS", "Mismatch", "Type", "count_bytes", "decode_value", "encode_value", "parse_type",
           "shown"]
