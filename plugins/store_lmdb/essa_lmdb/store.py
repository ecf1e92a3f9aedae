"""LmdbStore: essa's embedded lattice key-value store, kept in an LMDB environment.

One LMDB environment (a directory holding ``data.mdb`` and ``lock.mdb``) keeps
every key (see :mod:`essa_lmdb.layout` for how values lie in its records: big
sets one record per member, so a merge costs the delta). Merges happen inside
LMDB write transactions: read the stored value, merge the new one into it,
write. LMDB allows one writer at a time across all processes of a machine (its
lock file holds a process-shared mutex), so concurrent merges from threads and
processes never lose an update, and with ``sync`` on (the default) a merge
returns only after its commit reached the disk. Merges of one process that
arrive while a commit is in flight share the next transaction and its flush
(group commit, :meth:`_Env.merge`).

Durability with ``sync`` on: one flush per commit. LMDB commits by writing
the transaction's data pages, flushing them (``fdatasync``), then writing the
meta page that names them. The environment is opened with ``metasync`` off
(LMDB's ``MDB_NOMETASYNC``), so that meta page is written but not flushed by
the commit itself; the data pages are always durable before a meta page
naming them is written, so the file is consistent after any crash (LMDB
documents ``MDB_NOMETASYNC`` as keeping the database's integrity), and what
an OS crash can undo is only the last commit whose meta page was not flushed
yet. A commit's puts
are therefore acknowledged (``merge`` returns) only after a later flush of
``data.mdb``: the next group's commit (its data flush covers every page
written before it, the previous meta page included), or, when no put waits,
an explicit ``env.sync(True)`` by the leader. So:

- on a process crash (``kill -9``), nothing is lost: every commit, flushed or
  not, is in the OS's page cache, and the next process reads it;
- on an OS crash or power loss, nothing acknowledged is lost: an
  acknowledged put's meta page was flushed after it was written. Puts not
  acknowledged yet may or may not have been kept (as before).

Under load a commit costs one flush (the old meta page rides along with the
new data pages) instead of LMDB's two (data, then the meta page through an
``O_DSYNC`` descriptor); a lone put still costs two, in sequence. Flushes by
other processes committing into the same file also cover our meta pages, but
only our own are counted on. A delete commits alone and flushes before it
returns. With ``sync`` off nothing is flushed, as before.

LMDB must not be opened twice by one process (its POSIX file locks belong to the
process, so closing a second handle silently drops the first one's locks). All
stores of a process that name the same directory therefore share one
environment through a reference-counted registry keyed by ``(pid, real path)``;
the environment is closed when the last of them closes. An environment inherited
through ``fork()`` is never used (nor closed) by the child: stores opened before
the fork raise :class:`~essa.errors.StoreError` in the child, which should open
its own store after forking (or start with the ``spawn`` method).

Options (``--store-option KEY=VALUE``):

``path``
    the environment's directory (created if missing); default
    ``essa.util.paths.data_dir() / "lmdb"`` (``$ESSA_HOME/lmdb`` when set).
``map_size``
    the largest size the data file may grow to, in bytes, with an optional
    binary suffix: ``4G``, ``512M``, ``64K``, ``1GiB``. Default ``4G``. LMDB
    reserves address space, not disk. Processes that open a store with a
    larger ``map_size`` enlarge it for everyone; the others adopt the larger
    size when they need it.
``sync``
    ``on`` (default): a merge or delete returns only once its commit is on
    disk (see above); ``off`` trades the last commits before a power loss or OS crash (not a
    process crash) for speed.
``max_readers``
    read transactions that may be open at once across all processes
    (default 1024). Only the first process to create the lock file sets it.

Keys are UTF-8 text (:mod:`essa.state.keys`), stored as their UTF-8 bytes. LMDB
keys are limited to 511 bytes: a key whose encoding is 511 bytes or longer is
stored under :func:`essa.state.keys.record_key` (its first 479 bytes followed by the
32-byte SHA-256 of the whole encoding: exactly 511 bytes, so it can never
equal a key stored verbatim), and its full key is kept beside it in the
layout's ``keys`` database, so a listing returns it exactly. Every store of
every process maps a key the same way, so long keys just work.

A long key written by an older essa (before full keys were recorded) reads,
merges and deletes by its full key as before; a listing leaves it out and
says so (:class:`essa.state.keys.KeyList`) until its next merge records its full
key. A record whose key is not UTF-8 (an older ``essa state put`` took such
keys) is left out of listings the same way.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Mapping

import lmdb

from essa.plugin import (
    RECORD_KEY_KEPT,
    RECORD_KEY_LIMIT,
    KeyList,
    Store,
    StoreError,
    data_dir,
    encode_key,
    encode_text,
    is_shortened,
    parse_size,
    record_key,
    spell_size,
)

from .disk import full_disk_message, lmdb_error_code
from .layout import DATABASES, Layout, is_layout_key

#: Options users may pass with ``--store-option KEY=VALUE``.
OPTIONS = ("map_size", "max_readers", "path", "sync")

DEFAULT_MAP_SIZE = 4 << 30
MIN_MAP_SIZE = 64 << 10
DEFAULT_MAX_READERS = 1024

#: LMDB's default (and essa's fixed) maximum key length in bytes.
KEY_LIMIT = RECORD_KEY_LIMIT

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# -- options ---------------------------------------------------------------------


def _parse_options(options: Mapping[str, str]) -> tuple[Path, int, bool, int]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise StoreError(
            f"unknown lmdb store option {unknown[0]!r}; valid options: {', '.join(OPTIONS)}"
        )

    raw_path = options.get("path")
    if raw_path is not None and not str(raw_path).strip():
        raise StoreError("lmdb store option path is empty; give a directory")
    path = Path(str(raw_path)).expanduser() if raw_path is not None else data_dir() / "lmdb"

    map_size = DEFAULT_MAP_SIZE
    if "map_size" in options:
        try:
            map_size = parse_size(options["map_size"])
        except ValueError:
            raise StoreError(
                f"invalid lmdb store option map_size={options['map_size']!r}: "
                "expected a size in bytes such as 4G, 512M or 1048576"
            ) from None
        if map_size < MIN_MAP_SIZE:
            raise StoreError(
                f"lmdb store option map_size={options['map_size']} is too small: "
                f"the minimum is {spell_size(MIN_MAP_SIZE)}"
            )

    sync = True
    if "sync" in options:
        word = str(options["sync"]).strip().lower()
        if word not in _TRUE | _FALSE:
            raise StoreError(f"invalid lmdb store option sync={options['sync']!r}: expected on or off")
        sync = word in _TRUE

    max_readers = DEFAULT_MAX_READERS
    if "max_readers" in options:
        try:
            max_readers = int(str(options["max_readers"]).strip())
        except ValueError:
            max_readers = 0
        if max_readers < 1:
            raise StoreError(
                f"invalid lmdb store option max_readers={options['max_readers']!r}: "
                "expected a positive whole number"
            )
    return path, map_size, sync, max_readers


# -- errors ----------------------------------------------------------------------


def _reason(exc: lmdb.Error) -> str:
    if getattr(exc, "code", 0) and getattr(exc, "reason", None):
        return str(exc.reason)
    return str(exc)


def _translate(exc: lmdb.Error, path: str, doing: str, map_size: int, max_readers: int) -> StoreError:
    """A one-line :class:`StoreError` for an LMDB failure at ``path``."""
    if isinstance(exc, lmdb.MapFullError):
        return StoreError(
            f"the store at {path} is full (map_size {map_size} bytes); raise it with "
            f"--store-option map_size={spell_size(max(map_size * 2, MIN_MAP_SIZE))}"
        )
    full = full_disk_message(path, lmdb_error_code(exc))
    if full is not None:
        return StoreError(f"{full}; free some space")
    if isinstance(exc, lmdb.ReadersFullError):
        return StoreError(
            f"the store at {path} has no free reader slots (max_readers {max_readers}, all in use); "
            "use fewer reading processes and threads, or stop every process using it, delete its "
            "lock.mdb and reopen with a larger --store-option max_readers=..."
        )
    if isinstance(exc, lmdb.InvalidError):
        return StoreError(f"the store at {path} is not an LMDB database (data.mdb is damaged or of another format)")
    if isinstance(exc, lmdb.VersionMismatchError):
        return StoreError(f"the store at {path} was written by an incompatible LMDB version")
    if isinstance(exc, (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.PanicError)):
        return StoreError(f"the store at {path} is damaged: {_reason(exc)}")
    if isinstance(exc, lmdb.ReadonlyError):
        return StoreError(f"the store at {path} is not writable (permission denied)")
    return StoreError(f"{doing} the store at {path} failed: {_reason(exc)}")


def _fork_error(path: str) -> StoreError:
    return StoreError(
        f"the lmdb store at {path} was opened before this process was forked and cannot be used here; "
        "open the store in the child after forking, or start workers with the 'spawn' method"
    )


# -- shared environments ---------------------------------------------------------------


#: Most puts one group commit takes.
GROUP_LIMIT = 1024


class _Put:
    """A put waiting for a group commit.

    Its thread blocks on ``wake`` (a lock held from the start) until a leader
    releases it: because the put is done, or to hand it the lead.
    """

    __slots__ = ("key", "name", "value", "done", "error", "wake", "lead")

    def __init__(self, key: bytes, value: bytes, name: bytes | None) -> None:
        self.key = key
        #: The full key, when ``key`` is a shortened record key.
        self.name = name
        self.value = value
        self.done = False
        self.error: BaseException | None = None
        self.wake = threading.Lock()
        self.wake.acquire()
        self.lead = False

    def finish(self, error: BaseException | None) -> None:
        self.error = error
        self.done = True


class _Env:
    """One open LMDB environment, shared by all stores of one process on one path.

    Writers of this process take ``write_lock`` (LMDB admits one writer at a
    time anyway, and remapping needs no write transaction in flight). Readers
    only count themselves in ``readers`` so that the rare remap (adopting a
    map another process enlarged) can wait until no read transaction is open.
    """

    __slots__ = ("env", "path", "pid", "refs", "sync", "max_readers", "write_lock", "cond", "readers", "resizing",
                 "layout", "group", "queue", "unflushed", "leading", "last_group", "woken", "commits", "flushes")

    def __init__(self, env: lmdb.Environment, path: str, sync: bool, max_readers: int) -> None:
        self.env = env
        self.path = path
        self.pid = os.getpid()
        self.refs = 0
        self.sync = sync
        self.max_readers = max_readers
        self.write_lock = threading.Lock()
        self.cond = threading.Condition(threading.Lock())
        self.readers = 0
        self.resizing = False
        self.layout = Layout(env, names=True)
        # group commit: puts waiting for the next commit, and whether a thread leads one (under group)
        self.group = threading.Lock()
        self.queue: list[_Put] = []
        #: Committed puts not acknowledged yet: the meta page of their commit awaits a flush.
        self.unflushed: list[_Put] = []
        self.leading = False
        self.last_group = 0
        #: Threads the last step woke (acknowledged), other than its leader.
        self.woken = 0
        #: What this process did (for tests and benchmarks): commits, and explicit flushes.
        self.commits = 0
        self.flushes = 0

    def map_size(self) -> int:
        return int(self.env.info()["map_size"])

    def error(self, exc: lmdb.Error, doing: str) -> StoreError:
        try:
            map_size = self.map_size()
        except lmdb.Error:  # pragma: no cover - environment unusable
            map_size = 0
        return _translate(exc, self.path, doing, map_size, self.max_readers)

    # -- remapping -------------------------------------------------------------

    def remap(self, at_least: int = 0) -> int:
        """Adopt the map size persisted by other processes (and at least ``at_least``).

        The caller holds ``write_lock``. Returns the new map size.
        """
        cond = self.cond
        with cond:
            self.resizing = True
            try:
                while self.readers:
                    cond.wait()
                before = self.map_size()
                self.env.set_mapsize(0)  # the largest size any process committed
                now = self.map_size()
                want = max(before, at_least)
                if now < want:
                    self.env.set_mapsize(want)
                    now = self.map_size()
                return now
            finally:
                self.resizing = False
                cond.notify_all()

    # -- operations ------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self._read(lambda txn: self.layout.read(txn, key))

    def scan(self, prefix: bytes) -> tuple[list[bytes], int]:
        """The full keys starting with ``prefix``, sorted, and how many shortened records have no full key.

        A shortened record key keeps only its key's first 479 bytes, so the
        cursor walks the records starting with at most that much of
        ``prefix`` and each record's full key is matched against the rest.
        """
        start = prefix[:RECORD_KEY_KEPT]

        def keys(txn) -> tuple[list[bytes], int]:
            found: list[bytes] = []
            unnamed = 0
            cursor = txn.cursor()
            if cursor.set_range(start):
                for rkey in cursor.iternext(keys=True, values=False):
                    if not rkey.startswith(start):
                        break
                    if is_layout_key(rkey):  # the sub-databases' names
                        continue
                    key = self.layout.name(txn, rkey) if is_shortened(rkey) else rkey
                    if key is None:
                        unnamed += 1  # written before full keys were recorded
                    elif key.startswith(prefix):
                        found.append(key)
            found.sort()
            return found, unnamed

        return self._read(keys)

    def _read(self, fn):
        """``fn(txn)`` in a read transaction, adopting a map grown by another process if need be."""
        cond = self.cond
        cleaned = False
        for _ in range(4):
            with cond:
                while self.resizing:
                    cond.wait()
                self.readers += 1
            problem: lmdb.Error | None = None
            try:
                txn = self.env.begin()
                try:
                    return fn(txn)
                finally:
                    txn.abort()
            except (lmdb.MapResizedError, lmdb.ReadersFullError) as exc:
                problem = exc
            except lmdb.Error as exc:
                raise self.error(exc, "reading from") from None
            finally:
                with cond:
                    self.readers -= 1
                    if self.resizing and not self.readers:
                        cond.notify_all()
            if isinstance(problem, lmdb.MapResizedError):
                try:
                    with self.write_lock:
                        self.remap()
                except lmdb.Error as exc:
                    raise self.error(exc, "remapping") from None
            elif not cleaned:  # readers full: clear slots of dead processes once
                cleaned = True
                try:
                    self.env.reader_check()
                except lmdb.Error:  # pragma: no cover
                    pass
            else:
                raise self.error(problem, "reading from") from None
        raise self.error(problem, "reading from") from None  # pragma: no cover

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; return whether it existed (committed, and with ``sync`` durable, before returning)."""
        for _ in range(4):
            with self.write_lock:
                try:
                    with self.env.begin(write=True) as txn:
                        existed = txn.get(key) is not None
                        self.layout.delete(txn, key)  # and a big set's member records
                        self.layout.forget_name(txn, key)
                    self.commits += 1
                except lmdb.MapResizedError:
                    self._remap_or_raise()
                    continue
                except lmdb.Error as exc:
                    raise self.error(exc, "deleting from") from None
            if self.sync:
                self._flush()  # the commit's meta page
            return existed
        raise StoreError(f"deleting from the store at {self.path} failed: its map size keeps changing")

    def merge(self, key: bytes, value: bytes, name: bytes | None = None) -> None:
        """Merge ``value`` into ``key``; returns once the merge is committed (and, with ``sync``, durable).

        ``name`` is the full key when ``key`` is a shortened record key: the
        merge records it (once) in the same transaction.

        Group commit: puts that arrive while a commit is in flight wait, and
        the next commit takes them all in one write transaction. A put that
        finds no commit in flight leads; a leader commits groups until its own
        put is acknowledged, wakes exactly the puts it acknowledged and hands
        the lead to the oldest waiting put (waking everyone would cost each a
        GIL hand-off for nothing). A put whose merge is refused fails alone; a
        failed commit fails every put of it. With ``sync`` off there is no
        flush to share, and waking followers costs more than it saves: each
        put commits on its own.

        With ``sync`` on, a commit flushes its data pages but not its meta
        page (see the module documentation), so its puts are acknowledged only
        after the next flush: the next group's commit, or :meth:`_flush` when
        no put waits.
        """
        put = _Put(key, value, name)
        if not self.sync:
            self._commit([put])
        else:
            with self.group:
                self.queue.append(put)
                put.lead = not self.leading
                self.leading = True
            try:
                if not put.lead:
                    put.wake.acquire()
                if not put.done:
                    self._lead(put)
            except BaseException:  # interrupted (Ctrl-C): withdraw the put, never strand a lead
                self._pass_lead(put)
                raise
        if put.error is not None:
            raise put.error

    def _lead(self, put: "_Put") -> None:
        """Run flushes (:meth:`_step`) until ``put`` is acknowledged, then pass the lead on."""
        try:
            while not put.done:
                self._step(put)
        finally:
            self._pass_lead(put)

    def _step(self, leader: "_Put") -> None:
        """One flush: commit the waiting puts, or flush explicitly when none waits; acknowledge what it made durable.

        A commit's data flush also flushes the meta page the previous commit
        wrote, so it makes the previous group durable; its own group becomes
        ``unflushed`` until the next flush.
        """
        if self.woken and len(self.queue) < self.last_group:
            # Threads woken by the previous flush are likely to queue their next
            # puts within microseconds: let them (a fuller group, one flush fewer).
            # A lone put woke no one: it does not wait (sleep(0) costs ~70 us here).
            time.sleep(0)
        with self.group:
            batch = self.queue[:GROUP_LIMIT]
            del self.queue[:GROUP_LIMIT]
            self.last_group = len(batch)
            waiting, self.unflushed = self.unflushed, []
        acked: list[_Put] = []
        try:
            try:
                if batch:
                    flushed = self._commit(batch)
                else:
                    self._flush()
                    flushed = True
            except BaseException as exc:  # every put of the batch learns, whatever happened
                acked = [other for other in batch if not other.done]
                for other in acked:
                    other.finish(exc)
                if not isinstance(exc, Exception):
                    raise  # KeyboardInterrupt and the like
                if not waiting:
                    return
                error: BaseException | None = exc  # the explicit flush failed: so does every put waiting for it
                if batch:  # the failed commit flushed nothing we can count on: flush for the puts waiting
                    try:
                        self._flush()
                        error = None
                    except Exception as failed:
                        error = failed
                acked += waiting
                for other in waiting:
                    other.finish(error)
                waiting = []
                return
            fresh = [other for other in batch if not other.done]  # the refused ones are done already
            acked = [other for other in batch if other.done]
            if flushed:
                acked += waiting
                for other in waiting:
                    other.finish(None)
                waiting = fresh
            else:  # nothing was written, so nothing was flushed: they wait together
                waiting += fresh
        finally:
            with self.group:
                self.unflushed[:0] = waiting
            self.woken = 0
            for other in acked:
                if other is not leader:
                    other.wake.release()
                    self.woken += 1

    def _flush(self) -> None:
        """Flush ``data.mdb`` (and so the meta page of the last commit) to disk."""
        try:
            self.env.sync(True)
        except lmdb.Error as exc:
            raise self.error(exc, "flushing") from None
        with self.group:
            self.flushes += 1

    def _pass_lead(self, put: "_Put") -> None:
        """``put``'s thread stops waiting or leading: withdraw it if still waiting, and hand on its lead.

        The lead goes to the oldest queued put, else to the oldest put waiting
        for a flush; it ends when none waits.
        """
        with self.group:
            if not put.done:  # interrupted: it can be neither acknowledged nor heir
                if put in self.queue:
                    self.queue.remove(put)
                elif put in self.unflushed:
                    self.unflushed.remove(put)
            if not put.lead:
                return
            put.lead = False
            if not self.queue and not self.unflushed:
                self.leading = False
                return
            heir = self.queue[0] if self.queue else self.unflushed[0]
            heir.lead = True
        heir.wake.release()

    def _commit(self, batch: list["_Put"]) -> bool:
        """Merge every put of ``batch`` in one write transaction and commit it once.

        Returns whether a transaction was committed (with ``sync``: its data
        pages, and so the previous commit's meta page, flushed); ``False``
        when no put changed anything.
        """
        grown = False
        for _ in range(4):
            with self.write_lock:
                try:
                    txn = self.env.begin(write=True)
                except lmdb.MapResizedError:
                    self._remap_or_raise()
                    continue
                except lmdb.Error as exc:
                    raise self.error(exc, "writing to") from None
                done = False
                refused: dict[int, Exception] = {}
                try:
                    changed = False
                    for i, put in enumerate(batch):
                        try:
                            changed |= self.layout.merge(txn, put.key, put.value)
                            if put.name is not None:
                                changed |= self.layout.record_name(txn, put.key, put.name)
                        except lmdb.Error:
                            raise
                        except Exception as exc:  # refused before anything was written: this put alone fails
                            refused[i] = exc
                    if changed:
                        txn.commit()
                        self.commits += 1
                    else:
                        txn.abort()  # nothing new: what is stored is durable or soon will be
                    done = True
                    for i, put in enumerate(batch):
                        if i in refused:
                            put.finish(refused[i])
                        elif not self.sync:
                            put.finish(None)
                    return changed
                except lmdb.MapFullError as exc:
                    full = exc
                except lmdb.MapResizedError:
                    full = None
                except lmdb.Error as exc:
                    raise self.error(exc, "writing to") from None
                finally:
                    if not done:
                        try:
                            txn.abort()
                        except lmdb.Error:  # pragma: no cover - already finished
                            pass
                # The map is full for this process, or another process grew
                # the file beyond it: adopt the size other processes use, once.
                if full is not None:
                    if grown:
                        raise self.error(full, "writing to") from None
                    before = self.map_size()
                    if self._remap_or_raise() <= before:
                        raise self.error(full, "writing to") from None
                    grown = True
                else:
                    self._remap_or_raise()
        raise StoreError(f"writing to the store at {self.path} failed: its map size keeps changing")

    def _remap_or_raise(self) -> int:
        try:
            return self.remap()
        except lmdb.Error as exc:
            raise self.error(exc, "remapping") from None


_PID = os.getpid()
_registry: dict[tuple[int, str], _Env] = {}
_registry_lock = threading.Lock()
#: Environments inherited through fork(): kept alive, never used nor closed.
_inherited: list[_Env] = []


def _after_fork_in_child() -> None:
    global _PID, _registry_lock
    _PID = os.getpid()
    _registry_lock = threading.Lock()
    for entry in _registry.values():
        _inherited.append(entry)
        _pin(entry.env)
    _registry.clear()


def _pin(obj: object) -> None:
    """Keep ``obj`` alive until the process exits, even through interpreter shutdown.

    Closing an LMDB environment in a forked child would clear the parent's
    reader slots in the shared lock file (they carry the parent's pid), so an
    inherited environment must never be deallocated by the child.
    """
    try:
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    except Exception:  # pragma: no cover - not CPython: _inherited keeps it
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _prepare_directory(path: Path) -> str:
    try:
        if path.exists() and not path.is_dir():
            raise StoreError(f"the store path {path} is not a directory")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the store directory {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StoreError(f"the store directory {path} is not writable")
    return os.path.realpath(path)


def _open_env(real: str, map_size: int, sync: bool, max_readers: int) -> _Env:
    try:
        env = lmdb.open(
            real,
            map_size=map_size,
            subdir=True,
            create=True,
            sync=sync,
            metasync=False,  # a commit's meta page is flushed by the next flush (see the module docstring)
            max_readers=max_readers,
            max_dbs=DATABASES,
            lock=True,
        )
    except lmdb.Error as exc:
        if "already open" in str(exc):
            # Recent py-lmdb (3.x) refuses a second open of an environment in one
            # process. Here that is one inherited through fork() (closing it
            # would clear the parent's reader slots), or one that other code
            # opened without this registry.
            if any(old.path == real for old in _inherited):
                raise _fork_error(real) from None
            raise StoreError(
                f"the store at {real} is already open in this process by code other than essa's lmdb store"
            ) from None
        raise _translate(exc, real, "opening", map_size, max_readers) from None
    try:
        entry = _Env(env, real, sync, int(env.info().get("max_readers", max_readers)))
        if env.max_key_size() < KEY_LIMIT:
            raise StoreError(
                f"the LMDB library in use allows keys of only {env.max_key_size()} bytes; "
                f"essa needs {KEY_LIMIT} (use the lmdb package's bundled library)"
            )
        env.reader_check()  # free reader slots left by crashed processes
        if entry.map_size() < map_size:  # pragma: no cover - lmdb honours the request
            env.set_mapsize(map_size)
    except lmdb.Error as exc:
        env.close()
        raise _translate(exc, real, "opening", map_size, max_readers) from None
    except BaseException:
        env.close()
        raise
    return entry


def _acquire(path: Path, map_size: int, sync: bool, max_readers: int, explicit_size: bool) -> _Env:
    real = _prepare_directory(path)
    with _registry_lock:
        key = (_PID, real)
        entry = _registry.get(key)
        if entry is None:
            entry = _open_env(real, map_size, sync, max_readers)
            _registry[key] = entry
        else:
            if sync and not entry.sync:
                raise StoreError(
                    f"the store at {real} is already open in this process with sync=off; "
                    "open every store on it with the same sync setting"
                )
            if explicit_size and map_size > entry.map_size():
                try:
                    with entry.write_lock:
                        entry.remap(map_size)
                except lmdb.Error as exc:
                    raise entry.error(exc, "resizing") from None
        entry.refs += 1
        return entry


def _release(entry: _Env) -> None:
    # Called with _registry_lock held.
    if entry.pid != _PID:
        return  # inherited through fork(): the parent owns it
    entry.refs -= 1
    if entry.refs <= 0:
        _registry.pop((entry.pid, entry.path), None)
        with entry.write_lock:
            entry.env.close()


# -- the store ----------------------------------------------------------------------


def _unlisted_reason(unnamed: int, undecodable: int) -> str:
    """Why a listing left records out ("" if it did not)."""
    reasons = []
    if unnamed:
        reasons.append(f"{unnamed} of 511 bytes or more written by an older essa, which did not record "
                       "their full keys (they read, merge and delete by full key; a merge records it)")
    if undecodable:
        reasons.append(f"{undecodable} whose keys are not UTF-8 (written by an older essa; no state key "
                       "can name them)")
    return "; ".join(reasons)


class LmdbStore(Store):
    """essa's embedded store: lattice values in an LMDB environment on this machine.

    Safe for many threads of a process and many processes of a machine; see the
    module documentation for options and behaviour.
    """

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        path, map_size, sync, max_readers = _parse_options(self.options)
        self._entry: _Env | None = _acquire(path, map_size, sync, max_readers, "map_size" in self.options)
        #: Whether commits are flushed to disk (the shared environment's setting).
        self.sync = self._entry.sync
        #: The real path of the environment's directory.
        self.path = self._entry.path

    # -- helpers ---------------------------------------------------------------

    def _live(self) -> _Env:
        entry = self._entry
        if entry is None:
            raise StoreError(f"the lmdb store at {self.path} is closed")
        if entry.pid != _PID:
            raise _fork_error(self.path)
        return entry

    # -- Store API ---------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes | None:
        return self._live().get(record_key(encode_key(key)))

    def merge_bytes(self, key: str, value: bytes) -> None:
        raw = encode_key(key)
        rkey = record_key(raw)
        self._live().merge(rkey, value, raw if rkey != raw else None)

    def keys(self, prefix: str = "") -> KeyList:
        """The keys starting with ``prefix``, sorted, each exactly as it was put (long ones too).

        Records it cannot name are left out and counted in the answer's
        ``unlisted`` (see the module documentation).
        """
        found, unnamed = self._live().scan(encode_text(prefix, "key prefix"))
        keys, undecodable = [], 0
        for raw in found:
            try:
                keys.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                undecodable += 1
        return KeyList(keys, unnamed + undecodable, _unlisted_reason(unnamed, undecodable))

    def delete(self, key: str) -> bool:
        return self._live().delete(record_key(encode_key(key)))

    def close(self) -> None:
        with _registry_lock:
            entry, self._entry = self._entry, None
            if entry is not None:
                _release(entry)

    def describe(self) -> str:
        return f"lmdb at {self.path}"

    @property
    def map_size(self) -> int:
        """The current map size of the environment, in bytes."""
        return self._live().map_size()

    def __repr__(self) -> str:
        state = "closed" if self._entry is None else "open"
        return f"<LmdbStore {self.path} ({state})>"
