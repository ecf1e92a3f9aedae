"""The byte encoding of lattice values: serde + bincode 1.x, byte for byte.

Guests built with the Rust SDK of essa-rs exchange state as the anna-rs
``LatticeValue`` enum serialized with ``bincode::serialize`` (fixed-width little
endian integers, ``u64`` lengths, trailing bytes allowed on input). This module
produces and accepts exactly those bytes. The contract, with worked examples
that ``tests/unit/test_docs.py`` checks against this module, is the
repository's ``docs/lattice-encoding.md``. Layout, after a ``u32`` LE variant
tag:

===  ================  =====================================================
tag  lattice           payload
===  ================  =====================================================
0    ``Lww``           timestamp ``str`` (RFC 3339), value ``bytes``
1    ``Set``           ``u64`` n, n x ``bytes``
2    ``OrderedSet``    ``u64`` n, n x ``bytes`` in ascending byte order
3    ``SingleCausal``  clock, values (like ``Set``)
4    ``MultiCausal``   clock, ``u64`` d, d x (key ``str``, clock), values
5    ``Max``           ``u64``
6    ``Bool``          one byte, 0 or 1
7    ``Map``           ``u64`` n, n x (key ``str``, nested tag + payload)
===  ================  =====================================================

``bytes`` and ``str`` are a ``u64`` byte length then the raw bytes (UTF-8 for
``str``); a clock is ``u64`` m then m x (node id ``str``, counter ``u64``).

Tags 0-4 are the guest enum. **Tags 5-7 are essa extensions** for host-side
lattices: a guest never sees them, and a Rust guest could not decode them.

Encoding is canonical: set members, clock entries, dependency and map keys are
written in ascending order, so equal values always encode to equal bytes.
Decoding accepts any order, keeps the last of duplicate map keys (as serde's
``HashMap`` does) and ignores trailing bytes. :func:`decode_lattice` raises
only :class:`~essa.errors.DecodeError`, whatever the input.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from essa.errors import DecodeError
from essa.state.lattice import (
    BoolLattice,
    Lattice,
    LwwLattice,
    MapLattice,
    MaxLattice,
    MultiCausalLattice,
    OrderedSetLattice,
    SetLattice,
    SingleCausalLattice,
    VectorClock,
    _ClockMap,
    _LatticeMap,
    _new,
)
from essa.state.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "encode_lattice",
    "decode_lattice",
    "merge_encoded",
    "MAX_MAP_DEPTH",
    "TAG_LWW",
    "TAG_SET",
    "TAG_ORDERED_SET",
    "TAG_SINGLE_CAUSAL",
    "TAG_MULTI_CAUSAL",
    "TAG_MAX",
    "TAG_BOOL",
    "TAG_MAP",
]

TAG_LWW = 0
TAG_SET = 1
TAG_ORDERED_SET = 2
TAG_SINGLE_CAUSAL = 3
TAG_MULTI_CAUSAL = 4
TAG_MAX = 5  # essa extension
TAG_BOOL = 6  # essa extension
TAG_MAP = 7  # essa extension

#: How deeply Map lattices may nest (a top-level Map is depth 1).
MAX_MAP_DEPTH = 64

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_TAG_U64 = struct.Struct("<IQ")
_pack_u64 = _U64.pack
_unpack_u32 = _U32.unpack_from
_unpack_u64 = _U64.unpack_from

# -- encoding -----------------------------------------------------------------


def encode_lattice(value: Lattice) -> bytes:
    """Encode a lattice as bincode 1.x bytes (canonical: sorted members and keys).

    :raises TypeError: ``value`` is not one of essa's lattice types.
    :raises ValueError: Map lattices nest deeper than :data:`MAX_MAP_DEPTH`.
    """
    parts: list[bytes] = []
    _encode_into(parts, value, 1)
    return b"".join(parts)


def _encode_into(parts: list[bytes], value: Lattice, depth: int) -> None:
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        raise TypeError(f"cannot encode {type(value).__name__}: not an essa lattice type")
    encoder(parts, value, depth)


def _put_byte_set(parts: list[bytes], values: frozenset[bytes]) -> None:
    parts.append(_pack_u64(len(values)))
    append = parts.append
    for item in sorted(values):
        append(_pack_u64(len(item)))
        append(item)


def _put_str(parts: list[bytes], text: str) -> None:
    raw = text.encode("utf-8")
    parts.append(_pack_u64(len(raw)))
    parts.append(raw)


def _put_clock(parts: list[bytes], clock: VectorClock) -> None:
    parts.append(_pack_u64(len(clock)))
    for node, counter in clock.items():  # a VectorClock iterates in key order
        _put_str(parts, node)
        parts.append(_pack_u64(counter))


def _enc_lww(parts: list[bytes], value: LwwLattice, depth: int) -> None:
    ts = format_timestamp(value.timestamp).encode("ascii")
    parts += (_TAG_U64.pack(TAG_LWW, len(ts)), ts, _pack_u64(len(value.value)), value.value)


def _enc_set(parts: list[bytes], value: SetLattice, depth: int) -> None:
    parts.append(_U32.pack(TAG_SET))
    _put_byte_set(parts, value.values)


def _enc_ordered_set(parts: list[bytes], value: OrderedSetLattice, depth: int) -> None:
    parts.append(_U32.pack(TAG_ORDERED_SET))
    _put_byte_set(parts, value.values)


def _enc_single_causal(parts: list[bytes], value: SingleCausalLattice, depth: int) -> None:
    parts.append(_U32.pack(TAG_SINGLE_CAUSAL))
    _put_clock(parts, value.clock)
    _put_byte_set(parts, value.values)


def _enc_multi_causal(parts: list[bytes], value: MultiCausalLattice, depth: int) -> None:
    parts.append(_U32.pack(TAG_MULTI_CAUSAL))
    _put_clock(parts, value.clock)
    parts.append(_pack_u64(len(value.dependencies)))
    for key, clock in value.dependencies.items():  # sorted by key
        _put_str(parts, key)
        _put_clock(parts, clock)
    _put_byte_set(parts, value.values)


def _enc_max(parts: list[bytes], value: MaxLattice, depth: int) -> None:
    parts.append(struct.pack("<IQ", TAG_MAX, value.value))


def _enc_bool(parts: list[bytes], value: BoolLattice, depth: int) -> None:
    parts.append(struct.pack("<IB", TAG_BOOL, 1 if value.value else 0))


def _enc_map(parts: list[bytes], value: MapLattice, depth: int) -> None:
    if depth > MAX_MAP_DEPTH:
        raise ValueError(f"Map lattices nest deeper than {MAX_MAP_DEPTH} levels")
    parts.append(_TAG_U64.pack(TAG_MAP, len(value.entries)))
    for key, entry in value.entries.items():  # sorted by key
        _put_str(parts, key)
        _encode_into(parts, entry, depth + 1)


_ENCODERS: dict[type, Callable[[list[bytes], Any, int], None]] = {
    LwwLattice: _enc_lww,
    SetLattice: _enc_set,
    OrderedSetLattice: _enc_ordered_set,
    SingleCausalLattice: _enc_single_causal,
    MultiCausalLattice: _enc_multi_causal,
    MaxLattice: _enc_max,
    BoolLattice: _enc_bool,
    MapLattice: _enc_map,
}


# -- decoding -----------------------------------------------------------------
#
# Each reader takes the whole buffer and an offset and returns (value, new
# offset). Every length and count is checked against the remaining bytes before
# anything is sliced or allocated, so a huge length fails at once.


def _error(message: str) -> DecodeError:
    return DecodeError(f"invalid lattice value: {message}")


def _truncated(what: str, size: int, pos: int, buf: bytes) -> DecodeError:
    return _error(f"truncated (need {size} bytes for {what} at offset {pos}, {len(buf) - pos} remain)")


def _read_u64(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    if len(buf) - pos < 8:
        raise _truncated(what, 8, pos, buf)
    return _unpack_u64(buf, pos)[0], pos + 8


def _read_bytes(buf: bytes, pos: int, what: str) -> tuple[bytes, int]:
    if len(buf) - pos < 8:
        raise _truncated(f"{what} length", 8, pos, buf)
    length = _unpack_u64(buf, pos)[0]
    start = pos + 8
    end = start + length
    if end > len(buf):
        raise _error(
            f"truncated ({what} length {length} at offset {pos} exceeds remaining {len(buf) - start} bytes)"
        )
    return buf[start:end], end


def _read_str(buf: bytes, pos: int, what: str) -> tuple[str, int]:
    raw, end = _read_bytes(buf, pos, what)
    try:
        return raw.decode("utf-8"), end
    except UnicodeDecodeError:
        raise _error(f"{what} at offset {pos} is not valid UTF-8") from None


def _read_count(buf: bytes, pos: int, what: str, min_item_size: int) -> tuple[int, int]:
    """Read a collection length, refusing one whose items cannot fit in the rest."""
    count, start = _read_u64(buf, pos, f"{what} length")
    if count * min_item_size > len(buf) - start:
        raise _error(
            f"truncated ({what} of {count} items at offset {pos} cannot fit in remaining"
            f" {len(buf) - start} bytes)"
        )
    return count, start


def _read_byte_set(buf: bytes, pos: int, what: str) -> tuple[frozenset[bytes], int]:
    count, pos = _read_count(buf, pos, what, 8)
    size = len(buf)
    items = []
    append = items.append
    for _ in range(count):  # _read_bytes inlined: this loop is the hot one
        start = pos + 8
        if start > size:
            raise _truncated(f"{what} member length", 8, pos, buf)
        length = _unpack_u64(buf, pos)[0]
        end = start + length
        if end > size:
            raise _error(
                f"truncated ({what} member length {length} at offset {pos} exceeds remaining"
                f" {size - start} bytes)"
            )
        append(buf[start:end])
        pos = end
    return frozenset(items), pos


def _read_clock(buf: bytes, pos: int, what: str) -> tuple[VectorClock, int]:
    count, pos = _read_count(buf, pos, what, 16)
    entries: dict[str, int] = {}
    for _ in range(count):
        node, pos = _read_str(buf, pos, f"{what} node id")
        entries[node], pos = _read_u64(buf, pos, f"{what} counter")
    return VectorClock._from_sorted({node: entries[node] for node in sorted(entries)}), pos


def _dec_lww(buf: bytes, pos: int, depth: int) -> tuple[Lattice, int]:
    text, end = _read_str(buf, pos, "LWW timestamp")
    try:
        timestamp = parse_timestamp(text)
    except DecodeError as exc:
        raise _error(f"LWW timestamp is not RFC 3339 text ({exc})") from None
    value, end = _read_bytes(buf, end, "LWW value")
    return _new(LwwLattice, timestamp=timestamp, value=value), end


def _dec_set(buf: bytes, pos: int, depth: int) -> tuple[Lattice, int]:
    values, pos = _read_byte_set(buf, pos, "set")
    return _new(SetLattice, values=values), pos


def _dec_ordered_set(buf: bytes, pos: int, depth: int) -> tuple[Lattice, int]:
    # Like a Rust BTreeSet, any order is accepted; the encoder sorts.
    values, pos = _read_byte_set(buf, pos, "ordered set")
    return _new(OrderedSetLattice, values=values), pos


def _dec_single_causal(buf: bytes, pos: int, depth: int) -> tuple[Lattice, int]:
    clock, pos = _read_clock(buf, pos, "vector clock")
    values, pos = _read_byte_set(buf, pos, "causal value set")
    return _new(SingleCausalLattice, clock=clock, values=values), pos


def _dec_multi_causal(buf: bytes, pos: int, depth: int) -> tuple[Lattice, int]:
    clock, pos = _read_clock(buf, pos, "vector clock")
    count, pos = _read_count(buf, pos, "dependency map", 16)
    deps: dict[str, VectorClock] = {}
    for _ in range(count):
        key, pos = _read_str(buf, pos, "dependency key")
        deps[key], pos = _read_clock(buf, pos, "dependency clock")
    values, pos = _read_byte_set(buf, pos, "causal value set")
    dependencies = _ClockMap._from_sorted({key: deps[key] for key in sorted(deps)})
    return _new(MultiCausalLattice, clock=clock, dependencies=dependencies, values=values), pos


def _dec_max(buf: bytes, pos: int, depth: int) -> tuple[Lattice, int]:
    value, pos = _read_u64(buf, pos, "Max value")
    return _new(MaxLattice, value=value), pos


def _dec_bool(buf: bytes, pos: int, depth: int) -> tuple[Lattice, int]:
    if pos >= len(buf):
        raise _truncated("Bool value", 1, pos, buf)
    byte = buf[pos]
    if byte > 1:
        raise _error(f"Bool byte at offset {pos} is {byte}, not 0 or 1")
    return _new(BoolLattice, value=byte == 1), pos + 1


def _dec_map(buf: bytes, pos: int, depth: int) -> tuple[Lattice, int]:
    if depth > MAX_MAP_DEPTH:
        raise _error(f"Map lattices nest deeper than {MAX_MAP_DEPTH} levels at offset {pos}")
    count, pos = _read_count(buf, pos, "map", 12)  # key length + nested tag
    entries: dict[str, Lattice] = {}
    for _ in range(count):
        key, pos = _read_str(buf, pos, "map key")
        entries[key], pos = _decode_at(buf, pos, depth + 1)
    return _new(MapLattice, entries=_LatticeMap._from_sorted({k: entries[k] for k in sorted(entries)})), pos


_DECODERS: tuple[Callable[[bytes, int, int], tuple[Lattice, int]], ...] = (
    _dec_lww,
    _dec_set,
    _dec_ordered_set,
    _dec_single_causal,
    _dec_multi_causal,
    _dec_max,
    _dec_bool,
    _dec_map,
)


def _decode_at(buf: bytes, pos: int, depth: int) -> tuple[Lattice, int]:
    if len(buf) - pos < 4:
        raise _truncated("variant tag", 4, pos, buf)
    tag = _unpack_u32(buf, pos)[0]
    if tag >= len(_DECODERS):
        raise _error(f"unknown variant tag {tag}" + (f" at offset {pos}" if pos else ""))
    return _DECODERS[tag](buf, pos + 4, depth)


def decode_lattice(data: bytes | bytearray | memoryview) -> Lattice:
    """Decode bincode 1.x bytes into a lattice; bytes after the value are ignored.

    :raises essa.errors.DecodeError: ``data`` is not a valid encoding; the
        message names the problem and its offset. No other exception escapes
        for any input bytes.
    :raises TypeError: ``data`` is not a bytes-like object.
    """
    if type(data) is bytes:
        buf = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        buf = bytes(data)
    else:
        raise TypeError(f"lattice data must be bytes, not {type(data).__name__}")
    if not buf:
        raise _error("empty input")
    try:
        return _decode_at(buf, 0, 1)[0]
    except DecodeError:
        raise
    except (struct.error, IndexError, KeyError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        # Safety net: the readers check every bound, so this is a bug, but a
        # caller must still only ever see a DecodeError for bad bytes.
        raise _error(f"{type(exc).__name__}: {exc}") from exc


# -- merging encoded values ------------------------------------------------------


def merge_encoded(old: bytes | None, new: bytes, new_is_canonical: bool = False) -> bytes:
    """Merge the encoded lattice ``new`` into the encoded ``old``; return the encoding.

    This is the store's write path: ``new`` is decoded first, so an invalid
    value is refused before anything else happens. With no ``old`` the result
    is the canonical encoding of ``new``.

    ``old`` is expected to be a result of this function (a stored value). When
    ``old == new``, or when ``new`` adds nothing to it, ``old`` itself is
    returned (merge is idempotent; nothing is encoded again). With
    ``new_is_canonical`` (``new`` is a stored value too, as a store's push is),
    ``new`` itself is returned when it holds all of ``old``: merging a newer
    version of a big set costs its decoding, not its encoding.

    :raises essa.errors.DecodeError: ``new`` (or the stored ``old``) is not a
        valid encoding.
    :raises essa.errors.LatticeTypeError: the two values are different lattice
        types; nothing is returned, so the stored value stays as it was.
    """
    incoming = decode_lattice(new)
    if old is None:
        return encode_lattice(incoming)
    if old == new:
        return old
    try:
        local = decode_lattice(old)
    except DecodeError as exc:
        raise DecodeError(f"stored value: {exc}") from exc
    merged = local.merge(incoming)
    if merged == local:
        return old
    if new_is_canonical and merged == incoming:
        return new
    return encode_lattice(merged)
