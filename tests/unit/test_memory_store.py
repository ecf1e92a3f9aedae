"""The built-in memory store merges like every store must."""

from __future__ import annotations

import threading

import pytest

from essa.errors import DecodeError, LatticeTypeError, StoreError
from essa.state.bincode import encode_lattice
from essa.state.lattice import LwwLattice, SetLattice
from essa.state.memory import MemoryStore


def test_put_merges_and_get_returns_the_merged_value():
    store = MemoryStore()
    store.put("k", SetLattice({b"a"}))
    store.put("k", SetLattice({b"b"}))
    assert store.get("k") == SetLattice({b"a", b"b"})
    assert store.get("missing") is None


def test_type_mismatch_and_bad_bytes_change_nothing():
    store = MemoryStore()
    store.put("k", SetLattice({b"a"}))
    before = store.get_bytes("k")
    with pytest.raises(LatticeTypeError):
        store.put("k", LwwLattice(1, b"x"))
    with pytest.raises(DecodeError):
        store.merge_bytes("k", b"\x01\x00")
    assert store.get_bytes("k") == before == encode_lattice(SetLattice({b"a"}))


def test_concurrent_merges_lose_nothing():
    store = MemoryStore()

    def add(i: int) -> None:
        for j in range(50):
            store.put("k", SetLattice({f"{i}-{j}".encode()}))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.get("k").values) == 400


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
