"""Values a KVS worker holds in memory, so that a merge costs the delta, not the whole value.

A worker keeps most values as their encoded bytes and merges with
:func:`essa.state.bincode.merge_encoded` (decode, merge, re-encode: Lww and causal
values are small). A Set or OrderedSet whose encoding outgrows
:data:`INLINE_LIMIT` bytes becomes a :class:`GrowingSet`: a Python set of its
members, so adding ``k`` members costs ``O(k)`` whatever the set's size. Its
encoding is assembled when it is read (and cached until the next change), in
``O(n)``: the members already sorted for the previous read and the new ones
(sorted) are two runs, which Python's sort merges in linear time. The bytes
are those of :func:`essa.state.bincode.encode_lattice`, byte for byte.
"""

from __future__ import annotations

import struct

from essa.plugin import (
    TAG_ORDERED_SET,
    TAG_SET,
    LatticeTypeError,
    OrderedSetLattice,
    SetLattice,
    decode_lattice,
)

#: A set is kept as bytes while its encoding is at most this many bytes.
INLINE_LIMIT = 4096

_TYPES = {TAG_SET: SetLattice, TAG_ORDERED_SET: OrderedSetLattice}
_TAG_COUNT = struct.Struct("<IQ")
_U64 = struct.Struct("<Q")


class GrowingSet:
    """A big Set or OrderedSet value: members in a Python set, the encoding built on read."""

    __slots__ = ("kind", "tag", "members", "size", "_sorted", "_fresh", "_encoded")

    def __init__(self, value: SetLattice | OrderedSetLattice) -> None:
        self.kind = type(value)
        self.tag = TAG_SET if self.kind is SetLattice else TAG_ORDERED_SET
        self.members = set(value.values)
        self.size = 12 + sum(8 + len(m) for m in self.members)  # bytes of the encoding
        self._sorted: list[bytes] = []
        self._fresh: list[bytes] = list(self.members)
        self._encoded: bytes | None = None

    @classmethod
    def wanted(cls, encoded: bytes) -> bool:
        """Whether the encoded value ``encoded`` should be held as a :class:`GrowingSet`."""
        return len(encoded) > INLINE_LIMIT and struct.unpack_from("<I", encoded)[0] in _TYPES

    def add(self, value: bytes) -> frozenset[bytes]:
        """Merge the encoded lattice ``value``; returns the members it added (none: nothing changed).

        :raises essa.errors.DecodeError: ``value`` is not a valid encoding.
        :raises essa.errors.LatticeTypeError: ``value`` is not of this set's type.
        """
        incoming = decode_lattice(value)
        if type(incoming) is not self.kind:
            raise LatticeTypeError(f"cannot merge a {incoming.type_name} lattice into a {self.kind.type_name} "
                                   "lattice: lattice types differ")
        new = incoming.values - self.members
        if new:
            self.members |= new
            self._fresh.extend(new)
            self.size += sum(8 + len(m) for m in new)
            self._encoded = None
        return new

    def discard(self, members: frozenset[bytes]) -> None:
        """Take ``members`` out again (undoing an :meth:`add` whose write failed); ``O(n)``."""
        gone = members & self.members
        if gone:
            self.members -= gone
            self._sorted = [m for m in self._sorted if m not in gone]
            self._fresh = [m for m in self._fresh if m not in gone]
            self.size -= sum(8 + len(m) for m in gone)
            self._encoded = None

    def encoded(self) -> bytes:
        """The value's bincode bytes (cached until the next change)."""
        encoded = self._encoded
        if encoded is None:
            if self._fresh:
                self._fresh.sort()
                self._sorted += self._fresh  # two sorted runs: sorting them is a linear merge
                self._sorted.sort()
                self._fresh = []
            parts = [_TAG_COUNT.pack(self.tag, len(self._sorted))]
            pack = _U64.pack
            for member in self._sorted:
                parts.append(pack(len(member)))
                parts.append(member)
            encoded = self._encoded = b"".join(parts)
        return encoded

    def current(self) -> bytes | None:
        """The cached encoding if the value has not changed since it was built, else ``None``."""
        return self._encoded
