"""essa-plugin-lmdb: essa's embedded lattice key-value store, backed by LMDB.

The store is registered under the name ``lmdb`` (``essa --store lmdb``, the
default store) through the ``essa`` entry point group; see :mod:`essa_lmdb.store`.
"""

from __future__ import annotations

from .disk import full_disk_message
from .store import LmdbStore

__version__ = "0.1.0"

__all__ = ["LmdbStore", "full_disk_message", "__version__"]
