"""Where a KVS node keeps its data: memory only, or memory plus LMDB (durable mode).

Workers always serve from memory. In durable mode every change is also written
to an LMDB environment, in one transaction per batch of requests, committed
(and with ``sync`` flushed to disk) before any answer of that batch is sent;
a node restarted on the same directory loads everything back.

Values lie in LMDB the way essa's LMDB store lays them out
(:mod:`essa_lmdb.layout`): whole, or for a big set one record per member, so
that writing a put into a big set costs the delta. Each main record starts
with ``u32 key length, key (UTF-8)`` (so keys are recovered exactly), under
:func:`essa.state.keys.record_key` of the key's UTF-8 bytes (the key itself when
shorter than LMDB's 511-byte limit, else its first 479 bytes plus its
SHA-256; the same mapping as essa's LMDB store), so any key length works.
"""

from __future__ import annotations

import logging
import struct
import threading
from pathlib import Path
from typing import Iterator, Sequence

from essa.plugin import encode_key, record_key
from essa_lmdb import DATABASES, Layout, full_disk_message, is_layout_key, lmdb_error_code

from .errors import AnnaError

log = logging.getLogger("essa.anna")
_LEN = struct.Struct("<I")

#: What a batch does to one key, in order: ("put", whole value), ("merge", value), ("delete", None).
Change = Sequence[tuple[str, "bytes | None"]]


class LmdbBackend:
    """One LMDB environment for one KVS node (shared by its workers)."""

    def __init__(self, path: str | Path, sync: bool = True, map_size: int = 4 << 30) -> None:
        import lmdb

        self._lmdb = lmdb
        self.path = Path(path).expanduser()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.env = lmdb.open(str(self.path), map_size=map_size, sync=sync, metasync=sync,
                                 max_dbs=DATABASES, lock=True, subdir=True)
            self.layout = Layout(self.env)
        except (OSError, lmdb.Error) as exc:
            raise AnnaError(f"cannot open the KVS node's data directory {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def load(self) -> Iterator[tuple[str, bytes]]:
        """Every stored (key, encoded value); a record whose key is not UTF-8 is skipped with one line."""
        assemble = self.layout.assemble
        skipped = 0
        with self.env.begin() as txn:
            for rk, record in txn.cursor():
                if is_layout_key(rk):
                    continue  # the layout's sub-databases
                (n,) = _LEN.unpack_from(record, 0)
                try:
                    key = bytes(record[4:4 + n]).decode("utf-8")
                except UnicodeDecodeError:  # no client can send such a key: not essa's record
                    skipped += 1
                    continue
                yield key, assemble(txn, bytes(record[4 + n:]))
        if skipped:
            log.warning("anna: skipped %d records of %s whose keys are not UTF-8", skipped, self.path)

    def write(self, changes: dict[str, Change]) -> None:
        """Apply ``changes`` (per key, in order) in one durable transaction."""
        if not changes:
            return
        layout = self.layout
        try:
            with self._lock, self.env.begin(write=True) as txn:
                for key, ops in changes.items():
                    raw = encode_key(key)
                    rk = record_key(raw)
                    prefix = _LEN.pack(len(raw)) + raw
                    for op, value in ops:
                        if op == "merge":
                            layout.merge(txn, rk, value, prefix)
                        elif op == "put":
                            layout.replace(txn, rk, value, prefix)
                        else:
                            layout.delete(txn, rk, prefix)
        except self._lmdb.MapFullError:
            raise AnnaError(f"the KVS node's LMDB store at {self.path} is full; restart it with a larger --map-size") from None
        except self._lmdb.Error as exc:
            full = full_disk_message(self.path, lmdb_error_code(exc))
            if full is not None:
                raise AnnaError(f"{full}; the KVS node's writes fail until space is freed") from None
            raise AnnaError(f"writing the KVS node's LMDB store at {self.path} failed: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self.env.close()
