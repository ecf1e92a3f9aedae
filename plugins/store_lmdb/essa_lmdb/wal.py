"""The commit log: what makes a ``sync=on`` put durable with one flush on its path.

LMDB's commit flushes the transaction's data pages, then writes the meta page
that names them (the environment runs with ``metasync`` off, so that meta page
is not flushed by the commit itself: see :mod:`essa_lmdb.store`). Until some
later flush of ``data.mdb`` covers it, an OS crash or power loss may undo the
commit. Each process that writes with ``sync=on`` therefore keeps a log of its
own beside the environment (``essa-wal/<pid>-<random>.log``): before a group
commits, its puts are written to the log as one record named by the
transaction's id; the log is flushed by a thread of its own *while* LMDB
flushes the data pages, and the group is acknowledged once both flushes are
done. A put waits for one flush, not for two in sequence.

Recovery (:func:`replay_dead_logs`, when a process opens the environment): the
logs of processes that are gone (no one holds their ``flock``) are read, and the
puts of every record whose transaction id is above the environment's last
durable one (``last_txnid``: commits an OS crash undid) are merged again, then
flushed, and the logs removed. Lattice merges are idempotent and commute, so
merging a put twice changes nothing; a record at or below ``last_txnid`` is
skipped, so a delete that committed after a put is never undone by it. After a
process crash (``kill -9``) every commit is in the OS's page cache and nothing
is replayed.

A log starts with ``ESSALOG1`` and a random key of 16 bytes; a record is
``<length u32><generation u32><txn id u64><kind u8><check: 8 bytes>`` then its
puts (each ``<u32 length><bytes>`` of key, value, and full key or
``0xFFFFFFFF`` for none); the check is a BLAKE2b of the rest keyed with the
log's key, so no value a guest writes can pass for a record. Kinds: ``PUTS``,
and ``CANCEL`` (the commit of the last record with that id failed; the id will
be used again). Records are written into space the log allocated beforehand
(zeros, written and flushed :data:`GROWTH` at a time), so a record's flush
writes the record alone, not the file's size. A record that does not check (a
crash while it was written, zeros, a record of an earlier generation) ends the
log: it was never acknowledged. Once the log holds more than :data:`LOG_LIMIT`
bytes of records it is emptied (after a flush of ``data.mdb``): the next record
goes to the start, with the next generation.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import struct
import threading
from typing import Callable, Iterable

#: The directory of the logs, inside the environment's directory.
LOG_DIRECTORY = "essa-wal"
#: Bytes of records a log holds before it is emptied.
LOG_LIMIT = 2 << 20
#: Bytes a log allocates at a time.
GROWTH = 64 << 10

PUTS = 1
CANCEL = 2
_MAGIC = b"ESSALOG1"
_FILE_HEADER = len(_MAGIC) + 16
_FIELDS = struct.Struct("<IIQB")
_CHECK = 8
_LENGTH = struct.Struct("<I")
_NONE = 0xFFFFFFFF

#: One put as the log keeps it: record key, encoded value, and the full key of a shortened record key.
Put = tuple[bytes, bytes, "bytes | None"]


def _check(key: bytes, fields: bytes, body: bytes) -> bytes:
    digest = hashlib.blake2b(fields, digest_size=_CHECK, key=key)
    digest.update(body)
    return digest.digest()


def encode_record(key: bytes, generation: int, txn_id: int, kind: int, puts: Iterable[Put] = ()) -> bytes:
    """One record of the log whose key is ``key``."""
    parts = []
    for rkey, value, name in puts:
        parts += [_LENGTH.pack(len(rkey)), rkey, _LENGTH.pack(len(value)), value]
        parts += [_LENGTH.pack(_NONE)] if name is None else [_LENGTH.pack(len(name)), name]
    body = b"".join(parts)
    fields = _FIELDS.pack(len(body), generation, txn_id, kind)
    return fields + _check(key, fields, body) + body


def decode_log(data: bytes) -> list[tuple[int, list[Put]]]:
    """The records of a log that stand (``(txn id, puts)`` each), up to the first one that does not check.

    A ``CANCEL`` withdraws the last record of its transaction id before it.
    """
    if len(data) < _FILE_HEADER or not data.startswith(_MAGIC):
        return []
    key = data[len(_MAGIC) : _FILE_HEADER]
    records: list[tuple[int, list[Put] | None]] = []
    generation = None
    at = _FILE_HEADER
    while at + _FIELDS.size + _CHECK <= len(data):
        fields = data[at : at + _FIELDS.size]
        length, gen, txn_id, kind = _FIELDS.unpack(fields)
        start = at + _FIELDS.size + _CHECK
        body = data[start : start + length]
        if (len(body) < length or kind not in (PUTS, CANCEL) or gen != (generation or gen)
                or _check(key, fields, body) != data[at + _FIELDS.size : start]):
            break
        generation = gen
        at = start + length
        if kind == CANCEL:
            for i in range(len(records) - 1, -1, -1):
                if records[i][0] == txn_id and records[i][1] is not None:
                    records[i] = (txn_id, None)
                    break
            continue
        puts = _decode_puts(body)
        if puts is None:
            break
        records.append((txn_id, puts))
    return [(txn_id, puts) for txn_id, puts in records if puts is not None]


def _decode_puts(body: bytes) -> list[Put] | None:
    puts: list[Put] = []
    at = 0
    try:
        while at < len(body):
            fields: list[bytes | None] = []
            for _ in range(3):
                (length,) = _LENGTH.unpack_from(body, at)
                at += _LENGTH.size
                if length == _NONE:
                    fields.append(None)
                    continue
                if at + length > len(body):
                    return None
                fields.append(body[at : at + length])
                at += length
            rkey, value, name = fields
            if rkey is None or value is None:
                return None
            puts.append((rkey, value, name))
    except struct.error:
        return None
    return puts


class CommitLog:
    """This process's log: a record per group, flushed beside LMDB's commit; emptied when large.

    One thread (the group commit's leader, under the environment's write lock)
    uses it at a time; :meth:`start_flush` hands the flush to the log's own
    thread, :meth:`finish_flush` waits for it.
    """

    def __init__(self, env_directory: str) -> None:
        directory = os.path.join(env_directory, LOG_DIRECTORY)
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{os.getpid()}-{secrets.token_hex(4)}.log")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while this process lives: "not dead"
            self._key = secrets.token_bytes(16)
            self._allocated = 0
            self._grow(_FILE_HEADER)
            os.pwrite(self._fd, _MAGIC + self._key, 0)
            os.fdatasync(self._fd)
        except BaseException:
            os.close(self._fd)
            os.unlink(self.path)
            raise
        #: Bytes of records since the log was last emptied.
        self.size = 0
        #: Flushes of the log so far (for tests and benchmarks).
        self.flushes = 0
        self._generation = 1
        self._wake = threading.Semaphore(0)
        self._flushed = threading.Semaphore(0)
        self._error: OSError | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._flush_forever, name="essa-lmdb-log", daemon=True)
        self._thread.start()

    def append(self, txn_id: int, kind: int, puts: Iterable[Put] = ()) -> None:
        """Write a record (not flushed yet); on failure nothing of it counts."""
        record = encode_record(self._key, self._generation, txn_id, kind, puts)
        at = _FILE_HEADER + self.size
        self._grow(at + len(record))
        if os.pwrite(self._fd, record, at) != len(record):  # pragma: no cover - the space is allocated
            raise OSError(f"the commit log {self.path} took a record in part")
        self.size += len(record)

    def _grow(self, end: int) -> None:
        """Allocate the log up to ``end`` at least: zeros, written and flushed."""
        if end <= self._allocated:
            return
        new = -(-end // GROWTH) * GROWTH
        zeros = bytes(GROWTH)
        at = self._allocated
        while at < new:
            at += os.pwrite(self._fd, zeros[: new - at], at)
        os.fdatasync(self._fd)
        self._allocated = new

    def start_flush(self) -> None:
        """Start flushing what was written (on the log's thread)."""
        self._wake.release()

    def finish_flush(self) -> None:
        """Wait for the flush :meth:`start_flush` began; raise what it raised."""
        self._flushed.acquire()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def empty(self) -> None:
        """Drop every record (the caller flushed ``data.mdb`` after their commits): the next starts a generation."""
        self.size = 0
        self._generation += 1

    def _flush_forever(self) -> None:
        while True:
            self._wake.acquire()
            if self._closed:
                return
            try:
                os.fdatasync(self._fd)
                self.flushes += 1
            except OSError as exc:
                self._error = exc
            self._flushed.release()

    def close(self, remove: bool) -> None:
        """Stop the log's thread and close it; ``remove`` it too (the caller flushed ``data.mdb``)."""
        self._closed = True
        self._wake.release()
        self._thread.join(5.0)
        if remove:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        os.close(self._fd)

    def forget_in_child(self) -> None:
        """In a child made by ``fork()``: close the inherited descriptor (the parent's log lives on)."""
        try:
            os.close(self._fd)
        except OSError:
            pass


def replay_dead_logs(env_directory: str, last_txn_id: Callable[[], int], merge: Callable[[list[Put]], None],
                     flush: Callable[[], None]) -> int:
    """Merge again the puts of dead processes' logs that an OS crash undid; return how many.

    ``merge(puts)`` merges puts in one committed write transaction; ``flush()``
    flushes ``data.mdb``. Holds ``essa-wal/replay.lock`` meanwhile, so a
    process opening the environment at the same time waits for the replay.
    """
    directory = os.path.join(env_directory, LOG_DIRECTORY)
    if not os.path.isdir(directory):
        return 0
    guard = os.open(os.path.join(directory, "replay.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        dead: list[tuple[str, int]] = []
        try:
            for name in sorted(os.listdir(directory)):
                if not name.endswith(".log"):
                    continue
                path = os.path.join(directory, name)
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a live process's log
                    os.close(fd)
                    continue
                dead.append((path, fd))
            last = last_txn_id()
            puts = [put for _path, fd in dead for txn_id, record in decode_log(_read_all(fd)) if txn_id > last
                    for put in record]
            if puts:
                merge(puts)
                flush()
            for path, _fd in dead:
                os.unlink(path)
            return len(puts)
        finally:
            for _path, fd in dead:
                os.close(fd)
    finally:
        os.close(guard)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


__all__ = ["CANCEL", "GROWTH", "LOG_DIRECTORY", "LOG_LIMIT", "PUTS", "CommitLog", "decode_log", "encode_record",
           "replay_dead_logs"]
