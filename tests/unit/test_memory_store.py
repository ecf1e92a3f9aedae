"""The built-in memory store: what is its own (the store contract is tests/store/test_contract.py)."""

from __future__ import annotations

import pytest

from essa.errors import DecodeError, StoreError
from essa.state.bincode import encode_lattice
from essa.state.lattice import SetLattice
from essa.state.memory import MemoryStore


def test_options_are_refused():
    with pytest.raises(StoreError, match="takes no options"):
        MemoryStore({"path": "/tmp"})


def test_arbitrary_bytes_merged_into_a_value_are_refused_or_merged_never_corrupt():
    from hypothesis import example, given, settings
    from hypothesis import strategies as st

    from essa.state.bincode import decode_lattice

    store = MemoryStore()
    store.put("k", SetLattice({b"a"}))

    @settings(max_examples=300, deadline=None)
    @example(encode_lattice(SetLattice({b"b"})))
    @given(st.binary(max_size=120) | st.binary(max_size=100).map(lambda b: b"\x01\x00\x00\x00" + b))
    def check(data: bytes) -> None:
        before = store.get_bytes("k")
        try:
            store.merge_bytes("k", data)
        except (DecodeError, StoreError):
            assert store.get_bytes("k") == before  # refused: nothing changed
        else:
            merged = decode_lattice(store.get_bytes("k"))
            assert isinstance(merged, SetLattice) and b"a" in merged.values

    check()
