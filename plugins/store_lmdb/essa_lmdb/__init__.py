"""essa-plugin-lmdb: essa's embedded lattice key-value store, backed by LMDB.

The store is registered under the name ``lmdb`` (``essa --store lmdb``, the
default store) through the ``essa`` entry point group; see :mod:`essa_lmdb.store`.

Public API for other plugins (the names below, and nothing else of this
package): essa-plugin-anna's durable KVS nodes keep their data in the same
LMDB layout (:class:`Layout`: one record per key, big sets one record per
member in a sub-database of :data:`DATABASES`, full keys of shortened record
keys; :func:`is_layout_key` tells its own records apart) and name a full disk
the same way (:func:`full_disk_message`, :func:`lmdb_error_code`).
"""

from __future__ import annotations

from .disk import full_disk_message, lmdb_error_code
from .layout import DATABASES, Layout, is_layout_key
from .store import LmdbStore

__version__ = "0.1.0"

__all__ = ["DATABASES", "Layout", "LmdbStore", "full_disk_message", "is_layout_key", "lmdb_error_code",
           "__version__"]
