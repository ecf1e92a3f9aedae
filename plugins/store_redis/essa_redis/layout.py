"""How essa's lattice values lie in Redis: one Redis key per essa key, typed by the lattice.

=================  ==================================================================
lattice            Redis value under ``PREFIX + key``
=================  ==================================================================
``Set``            a set of the members (an empty Set: a string, its bincode)
``OrderedSet``     a sorted set of the members, every score 0, so Redis keeps them
                   in byte order (an empty OrderedSet: a string, its bincode)
anything else      a string holding the value's canonical bincode
=================  ==================================================================

A value is one Redis key, so it lives on one shard of a Redis Cluster and
needs no hash tag; merges into it are one script call (``merge.lua``). A
merge into a set costs the members it adds (``SADD``/``ZADD``), whatever the
set's size. Reading assembles the bytes essa's other stores return: the
canonical encoding, members in ascending byte order.
"""

from __future__ import annotations

import struct

from essa.plugin import (
    TAG_ORDERED_SET,
    TAG_SET,
    OrderedSetLattice,
    SetLattice,
    StoreError,
    decode_lattice,
    encode_lattice,
)

_TAG_COUNT = struct.Struct("<IQ")
_U64 = struct.Struct("<Q")
_SET_TAGS = {SetLattice: TAG_SET, OrderedSetLattice: TAG_ORDERED_SET}

#: Redis glob metacharacters, escaped in SCAN patterns.
_GLOB = {ord(c): "\\" + c for c in "*?[]\\"}


def redis_key(prefix: str, key: str) -> bytes:
    """The Redis key of essa key ``key`` under the store's ``prefix``.

    :raises essa.errors.StoreError: ``key`` is not text, is empty, or is not UTF-8.
    """
    if not isinstance(key, str):
        raise StoreError(f"store keys are text, not {type(key).__name__}")
    if not key:
        raise StoreError("the empty key cannot be stored")
    try:
        return (prefix + key).encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError(f"the store key {key!r} cannot be encoded as UTF-8") from None


def essa_key(prefix: bytes, rkey: bytes) -> str | None:
    """The essa key of Redis key ``rkey``, or ``None`` if it is not one of the store's keys."""
    if not rkey.startswith(prefix):
        return None
    try:
        return rkey[len(prefix):].decode("utf-8")
    except UnicodeDecodeError:
        return None


def scan_pattern(prefix: str) -> str:
    """A SCAN ``MATCH`` pattern for every Redis key that starts with ``prefix``, taken literally."""
    return prefix.translate(_GLOB) + "*"


def merge_arguments(value: bytes) -> list[bytes | str]:
    """The arguments of ``merge.lua`` for the encoded lattice ``value`` (decoded first: O(value)).

    :raises essa.errors.DecodeError: ``value`` is not a valid encoding.
    """
    lattice = decode_lattice(value)
    tag = _SET_TAGS.get(type(lattice))
    if tag is not None:
        return ["s", str(tag), *lattice.values]
    return ["v", encode_lattice(lattice)]


def assemble(reply) -> bytes | None:
    """The encoded value of a ``read.lua`` reply: stored bytes as they are, set members sorted and encoded."""
    if reply is None:
        return None
    kind, payload = reply
    if kind == b"v":
        return payload
    members = sorted(payload) if kind == b"1" else payload  # a sorted set comes in byte order
    pack = _U64.pack
    parts = [_TAG_COUNT.pack(TAG_SET if kind == b"1" else TAG_ORDERED_SET, len(members))]
    for member in members:
        parts.append(pack(len(member)))
        parts.append(member)
    return b"".join(parts)


__all__ = ["assemble", "essa_key", "merge_arguments", "redis_key", "scan_pattern"]
