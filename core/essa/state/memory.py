"""The ``memory`` store: lattice state in this process's memory.

Built in, for embedded runs whose state need not outlive the process
(``essa --store memory run f.wasm``) and for tests of the core. Merges are
atomic under a lock; nothing is written to disk. Keys are checked as every
store checks them (:func:`essa.state.keys.encode_key`), so a key this store refuses
is refused by the others too.
"""

from __future__ import annotations

import threading

from essa.errors import StoreError
from essa.state.bincode import merge_encoded
from essa.state.keys import encode_key, encode_text
from essa.state.store import Store


class MemoryStore(Store):
    """A dict of encoded lattices guarded by a lock. Accepts no options."""

    def __init__(self, options=None) -> None:
        super().__init__(options)
        if self.options:
            raise StoreError(f"the memory store takes no options (got {', '.join(sorted(self.options))})")
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get_bytes(self, key: str) -> bytes | None:
        encode_key(key)
        return self._data.get(key)

    def merge_bytes(self, key: str, value: bytes) -> None:
        encode_key(key)
        with self._lock:
            self._data[key] = merge_encoded(self._data.get(key), value)

    def keys(self, prefix: str = "") -> list[str]:
        encode_text(prefix, "key prefix")
        return sorted(key for key in list(self._data) if key.startswith(prefix))

    def delete(self, key: str) -> bool:
        encode_key(key)
        with self._lock:
            return self._data.pop(key, None) is not None

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "memory (not persisted)"
