"""How lattice values lie in LMDB records, so that a merge costs the delta, not the whole value.

Most values are kept whole: the main database maps a record key to the
value's bincode bytes, and a merge decodes, merges and re-encodes them (an
Lww or causal value is small). A merge that changes nothing writes nothing.

A Set or OrderedSet whose encoding outgrows :data:`INLINE_LIMIT` bytes is
kept as one record per member instead, so adding ``k`` members to a set of
``n`` costs ``O(k log n)``:

- in the main database, a 24-byte **header** under the value's record key:
  :data:`MAGIC` (4 bytes that no bincode value starts with, since variant
  tags are 0..7), the variant tag (``u32`` LE), the member count (``u64`` LE)
  and the set's id (8 bytes, big endian);
- in the ``members`` database, one record per member whose key is the set's
  id followed by the member itself (members of up to :data:`VERBATIM` bytes,
  empty value), or by the member's first :data:`PREFIX` bytes and its SHA-256
  (longer members, whose value is then the whole member). Keys therefore stay
  within LMDB's 511 bytes and a set's members are contiguous.

Reading assembles the bytes of the canonical encoding (tag, count, members in
ascending byte order): byte-identical to :func:`essa.state.bincode.encode_lattice`
of the same value. A cursor walks the members in key order, which is member
order except among long members sharing their first :data:`PREFIX` bytes (the
digest stands in for their tails); such runs are contiguous and are sorted
on the way out.

Keys longer than LMDB allows (511 bytes or more) lie under a shortened
record key (:func:`essa.state.keys.record_key`: their first 479 bytes and their
SHA-256). A layout opened with ``names=True`` (essa's LMDB store) keeps the
full key of each such record in the ``keys`` database, under the same record
key, so listings return the key itself (:meth:`Layout.name`). Records written
before that database existed have no entry there until their next merge.

The sub-databases have names of exactly 511 bytes: a user key is stored
verbatim only when shorter than that, and a 511-byte record key ends in a
SHA-256 digest, so no user key can ever collide with them.

A caller may keep bytes of its own at the start of each main record (the
Anna plugin keeps the key there, to recover keys on start): every method
takes that ``prefix``, writes it before the value or header, and skips it
when reading.
"""

from __future__ import annotations

import hashlib
import struct

from essa.plugin import (
    TAG_ORDERED_SET,
    TAG_SET,
    DecodeError,
    LatticeTypeError,
    OrderedSetLattice,
    SetLattice,
    decode_lattice,
    is_shortened,
    merge_encoded,
)

#: A set is kept whole while its encoding is at most this many bytes.
INLINE_LIMIT = 4096
#: First 4 bytes of a header record (no bincode value starts so: variant tags are 0..7).
MAGIC = b"\xff\xffes"
_HEADER = struct.Struct("<4sIQ8s")
_TAG_COUNT = struct.Struct("<IQ")
_U64 = struct.Struct("<Q")
_ID = struct.Struct(">Q")

#: Members up to this long are part of their record key (8-byte id + member <= 510 bytes).
VERBATIM = 502
#: Longer members: their first PREFIX bytes and a 32-byte digest (8 + 471 + 32 = 511 bytes).
PREFIX = 471

_SET_TYPES = {TAG_SET: SetLattice, TAG_ORDERED_SET: OrderedSetLattice}
_TAGS = {SetLattice: TAG_SET, OrderedSetLattice: TAG_ORDERED_SET}


def _db_name(label: str) -> bytes:
    # LMDB takes names as C strings: no NUL bytes
    return (b"essa-lmdb-layout/" + label.encode() + b"/").ljust(511, b"~")


MEMBERS_DB = _db_name("members")
META_DB = _db_name("meta")
#: Full keys of records kept under a shortened record key (layouts opened with ``names=True``).
KEYS_DB = _db_name("keys")
_NEXT_ID = b"next-set-id"
_SUB_DATABASES = frozenset({MEMBERS_DB, META_DB, KEYS_DB})

#: Named databases an environment must allow (``max_dbs``).
DATABASES = 3


def is_layout_key(key: bytes) -> bool:
    """Whether ``key`` of the main database names one of the layout's sub-databases (not a user key).

    Exactly the sub-databases' names: a user key that merely starts like them
    is a user key (a shortened one equals a name only if SHA-256 gave ``~`` x 32).
    """
    return key in _SUB_DATABASES


class Layout:
    """Reads and merges values of one LMDB environment (opened with ``max_dbs >= DATABASES``).

    :param names: keep the full key of every record stored under a shortened
        record key (:meth:`record_name`, :meth:`name`). The Anna plugin keeps
        keys in its records' prefix instead and leaves it off.
    """

    def __init__(self, env, names: bool = False) -> None:
        self.members = env.open_db(MEMBERS_DB)
        self.meta = env.open_db(META_DB)
        self.names = env.open_db(KEYS_DB) if names else None

    # -- full keys of shortened records ------------------------------------------------------

    def name(self, txn, rkey: bytes) -> bytes | None:
        """The full key recorded for the shortened record key ``rkey``, or ``None`` (none recorded)."""
        if self.names is None:
            return None
        name = txn.get(rkey, db=self.names)
        return None if name is None else bytes(name)

    def record_name(self, txn, rkey: bytes, name: bytes) -> bool:
        """Record ``name`` as the full key of the shortened record key ``rkey``; True if it was not yet."""
        if self.names is None:
            return False
        return bool(txn.put(rkey, name, overwrite=False, db=self.names))

    def forget_name(self, txn, rkey: bytes) -> None:
        """Drop the full key recorded for ``rkey`` (its record is being deleted)."""
        if self.names is not None and is_shortened(rkey):
            txn.delete(rkey, db=self.names)

    # -- reading -------------------------------------------------------------------------

    def read(self, txn, rkey: bytes, prefix: bytes = b"") -> bytes | None:
        """The encoded value stored under ``rkey``, or ``None``."""
        record = txn.get(rkey)
        if record is None:
            return None
        return self.assemble(txn, record[len(prefix):] if prefix else record)

    def assemble(self, txn, stored: bytes) -> bytes:
        """The encoded value of a main record's ``stored`` bytes (after any prefix)."""
        if stored[:4] != MAGIC:
            return stored
        _magic, tag, count, set_id = _HEADER.unpack(stored)
        parts = [_TAG_COUNT.pack(tag, count)]
        append = parts.append
        pack = _U64.pack
        run: list[bytes] = []  # long members sharing their first PREFIX bytes
        for member in self._members(txn, set_id):
            if len(member) >= PREFIX:
                if run and run[0][:PREFIX] != member[:PREFIX]:
                    _flush_run(run, parts)
                run.append(member)
                continue
            if run:
                _flush_run(run, parts)
            append(pack(len(member)))
            append(member)
        if run:
            _flush_run(run, parts)
        return b"".join(parts)

    def _members(self, txn, set_id: bytes):
        cursor = txn.cursor(db=self.members)
        if not cursor.set_range(set_id):
            return
        for key, value in cursor:
            if key[:8] != set_id:
                return
            yield value if value else key[8:]

    # -- merging -------------------------------------------------------------------------

    def merge(self, txn, rkey: bytes, value: bytes, prefix: bytes = b"") -> bool:
        """Merge the encoded lattice ``value`` into ``rkey`` inside the write ``txn``; True if it changed.

        Every check (decoding, lattice types) happens before the first write,
        so a refused merge leaves ``txn`` as it was.

        :raises essa.errors.DecodeError: ``value`` (or the stored value) is not a valid encoding.
        :raises essa.errors.LatticeTypeError: the stored value has another lattice type.
        """
        record = txn.get(rkey)
        if record is not None and prefix:
            record = record[len(prefix):]
        if record is not None and record[:4] == MAGIC:
            return self._add_members(txn, rkey, record, value, prefix)
        merged = merge_encoded(record, value)
        if merged == record:
            return False
        self._write_whole(txn, rkey, merged, prefix)
        return True

    def replace(self, txn, rkey: bytes, encoded: bytes, prefix: bytes = b"") -> None:
        """Store the (valid, canonical) encoded value ``encoded`` under ``rkey``, whatever was there."""
        self.delete(txn, rkey, prefix)
        self._write_whole(txn, rkey, encoded, prefix)

    def delete(self, txn, rkey: bytes, prefix: bytes = b"") -> None:
        """Delete the value under ``rkey`` (and a big set's member records; not its recorded full key)."""
        record = txn.get(rkey)
        if record is None:
            return
        stored = record[len(prefix):]
        if stored[:4] == MAGIC:
            set_id = _HEADER.unpack(stored)[3]
            cursor = txn.cursor(db=self.members)
            if cursor.set_range(set_id):
                while cursor.key()[:8] == set_id and cursor.delete():
                    pass
        txn.delete(rkey)

    def _write_whole(self, txn, rkey: bytes, encoded: bytes, prefix: bytes) -> None:
        if len(encoded) > INLINE_LIMIT and _unpack_tag(encoded) in _SET_TYPES:
            self._spill(txn, rkey, encoded, prefix)
        else:
            txn.put(rkey, prefix + encoded if prefix else encoded)

    def _add_members(self, txn, rkey: bytes, record: bytes, value: bytes, prefix: bytes) -> bool:
        _magic, tag, count, set_id = _HEADER.unpack(record)
        incoming = decode_lattice(value)
        stored_type = _SET_TYPES[tag]
        if type(incoming) is not stored_type:
            raise LatticeTypeError(f"cannot merge a {incoming.type_name} lattice into a {stored_type.type_name} "
                                   "lattice: lattice types differ")
        added = self._put_members(txn, set_id, incoming.values)
        if not added:
            return False
        txn.put(rkey, prefix + _HEADER.pack(MAGIC, tag, count + added, set_id))
        return True

    def _spill(self, txn, rkey: bytes, encoded: bytes, prefix: bytes) -> None:
        """Keep the (big) set ``encoded`` as a header and one record per member."""
        value = decode_lattice(encoded)
        raw_id = txn.get(_NEXT_ID, db=self.meta)
        number = _U64.unpack(raw_id)[0] if raw_id else 1
        txn.put(_NEXT_ID, _U64.pack(number + 1), db=self.meta)
        set_id = _ID.pack(number)
        count = self._put_members(txn, set_id, value.values)
        txn.put(rkey, prefix + _HEADER.pack(MAGIC, _TAGS[type(value)], count, set_id))

    def _put_members(self, txn, set_id: bytes, members) -> int:
        put = txn.put
        db = self.members
        added = 0
        for member in members:
            if len(member) <= VERBATIM:
                added += put(set_id + member, b"", overwrite=False, db=db)
            else:
                key = set_id + member[:PREFIX] + hashlib.sha256(member).digest()
                added += put(key, member, overwrite=False, db=db)
        return added


def _flush_run(run: list[bytes], parts: list[bytes]) -> None:
    run.sort()
    for member in run:
        parts.append(_U64.pack(len(member)))
        parts.append(member)
    run.clear()


def _unpack_tag(encoded: bytes) -> int:
    if len(encoded) < 4:
        raise DecodeError("invalid lattice value: truncated")
    return struct.unpack_from("<I", encoded)[0]


__all__ = ["Layout", "INLINE_LIMIT", "DATABASES", "is_layout_key"]
