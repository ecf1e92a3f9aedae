"""The built-in memory store: what is its own (the store contract is tests/store/test_contract.py)."""

from __future__ import annotations

import pytest

from essa.errors import StoreError
from essa.memory_store import MemoryStore


def test_options_are_refused():
    with pytest.raises(StoreError, match="takes no options"):
        MemoryStore({"path": "/tmp"})
