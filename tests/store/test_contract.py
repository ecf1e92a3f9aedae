"""The store contract (essa.store.Store), checked on every store: memory, LMDB, Redis, a Redis Cluster.

Each test takes ``any_store`` (tests/store/conftest.py), so a store passes the
same tests as the others; a store's own behaviour (files, options, servers)
is tested beside it (test_lmdb_store.py, tests/redis_store).
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from essa.errors import DecodeError, LatticeTypeError, StoreError
from essa.state.bincode import decode_lattice, encode_lattice
from essa.state.lattice import (
    BoolLattice,
    LwwLattice,
    MapLattice,
    MaxLattice,
    MultiCausalLattice,
    OrderedSetLattice,
    SetLattice,
    SingleCausalLattice,
)


def members(*names: str) -> SetLattice:
    return SetLattice(n.encode() for n in names)


def test_put_merges_and_get_returns_the_merged_value(any_store):
    any_store.put("k", members("a"))
    any_store.put("k", members("b"))
    assert any_store.get("k") == members("a", "b")
    assert any_store.get("missing") is None
    assert any_store.get_bytes("missing") is None


def test_lww_keeps_the_larger_timestamp_then_the_larger_value(any_store):
    any_store.put("l", LwwLattice(20, b"new"))
    any_store.put("l", LwwLattice(10, b"old"))
    assert any_store.get("l") == LwwLattice(20, b"new")
    any_store.put("l", LwwLattice(20, b"newer"))  # equal timestamps: the larger bytes win
    assert any_store.get("l") == LwwLattice(20, b"newer")
    any_store.put("l", LwwLattice(20, b"ne"))
    assert any_store.get("l") == LwwLattice(20, b"newer")
    any_store.put("l", LwwLattice(-5, b"zzz"))  # before 1970
    any_store.put("l", LwwLattice(1_000_000_000_000_000_001, b""))  # a nanosecond after whole seconds
    assert any_store.get("l") == LwwLattice(1_000_000_000_000_000_001, b"")


def test_every_lattice_type_reads_back_as_its_canonical_bytes(any_store):
    values = {
        "lww": LwwLattice(7, b"seven"),
        "set": members("b", "a"),
        "empty-set": SetLattice(()),
        "ordered": OrderedSetLattice([b"b", b"ab", b"a"]),
        "empty-ordered": OrderedSetLattice(()),
        "single": SingleCausalLattice({"n": 7}, [b"x"]),
        "multi": MultiCausalLattice({"n": 7}, {"k": {"n": 7}}, ()),
        "max": MaxLattice(2**64 - 1),
        "bool": BoolLattice(True),
        "map": MapLattice({"hits": MaxLattice(3), "who": members("x")}),
    }
    for key, value in values.items():
        any_store.put(key, value)
    for key, value in values.items():
        data = any_store.get_bytes(key)
        assert type(data) is bytes
        assert data == encode_lattice(value), key
        assert decode_lattice(data) == value


def test_causal_merges_follow_the_clocks(any_store):
    any_store.put("c", SingleCausalLattice({"a": 1}, [b"x"]))
    any_store.put("c", SingleCausalLattice({"b": 1}, [b"y"]))  # concurrent: both kept
    assert any_store.get("c") == SingleCausalLattice({"a": 1, "b": 1}, [b"x", b"y"])
    any_store.put("c", SingleCausalLattice({"a": 2, "b": 1}, [b"z"]))  # dominates
    assert any_store.get("c") == SingleCausalLattice({"a": 2, "b": 1}, [b"z"])
    any_store.put("c", SingleCausalLattice({"a": 1}, [b"old"]))  # dominated: dropped
    assert any_store.get("c") == SingleCausalLattice({"a": 2, "b": 1}, [b"z"])
    any_store.put("m", MultiCausalLattice({"a": 1}, {"k": {"a": 1}}, [b"x"]))
    any_store.put("m", MultiCausalLattice({"b": 1}, {"k": {"b": 2}, "j": {}}, [b"y"]))
    assert any_store.get("m") == MultiCausalLattice({"a": 1, "b": 1}, {"k": {"a": 1, "b": 2}, "j": {}}, [b"x", b"y"])


def test_type_mismatch_and_bad_bytes_change_nothing(any_store):
    any_store.put("k", members("a"))
    before = any_store.get_bytes("k")
    with pytest.raises(LatticeTypeError, match="cannot merge a Lww lattice into a Set lattice"):
        any_store.put("k", LwwLattice(1, b"x"))
    with pytest.raises(LatticeTypeError):
        any_store.put("k", OrderedSetLattice([b"a"]))
    for bad in (b"", b"\xff\xff\xff\xff", b"\x01\x00\x00\x00\x05"):
        with pytest.raises(DecodeError):
            any_store.merge_bytes("k", bad)
        with pytest.raises(DecodeError):
            any_store.merge_bytes("absent", bad)
    assert any_store.get_bytes("k") == before == encode_lattice(members("a"))
    assert any_store.get_bytes("absent") is None
    any_store.put("k", members("b"))  # the store still works afterwards
    assert any_store.get("k") == members("a", "b")


def test_a_type_mismatch_inside_a_map_names_the_key_and_changes_nothing(any_store):
    any_store.put("m", MapLattice({"a": MapLattice({"b": MaxLattice(1)}), "z": MaxLattice(1)}))
    before = any_store.get_bytes("m")
    with pytest.raises(LatticeTypeError, match="map key 'a': map key 'b': cannot merge a Bool lattice into a Max"):
        any_store.put("m", MapLattice({"a": MapLattice({"b": BoolLattice(True)}), "z": MaxLattice(5)}))
    assert any_store.get_bytes("m") == before
    with pytest.raises(LatticeTypeError):  # an empty set is a Set all the same
        any_store.put("e", SetLattice(()))
        any_store.put("e", OrderedSetLattice(()))


def test_concurrent_merges_lose_nothing(any_store):
    errors = []

    def add(i: int) -> None:
        try:
            for j in range(50):
                any_store.put("k", SetLattice({f"{i}-{j}".encode()}))
                any_store.put(f"lww-{i}", LwwLattice(j, b"%d" % j))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(any_store.get("k").values) == 400
    assert all(any_store.get(f"lww-{i}") == LwwLattice(49, b"49") for i in range(8))


def test_keys_are_listed_by_prefix_and_deleted(any_store):
    big = SetLattice(b"w%05d" % i for i in range(3000))
    for name in ("ns/data/a", "ns/data/b", "other/data/c", "ns/data/*?[x]\\"):
        any_store.put(name, members("x"))
    any_store.put("ns/data/big", big)
    assert any_store.keys("ns/data/") == ["ns/data/*?[x]\\", "ns/data/a", "ns/data/b", "ns/data/big"]
    assert any_store.keys("ns/data/*") == ["ns/data/*?[x]\\"]  # a prefix is taken literally
    assert set(any_store.keys()) >= {"ns/data/a", "other/data/c"}
    assert any_store.delete("ns/data/big") and any_store.delete("ns/data/a")
    assert not any_store.delete("ns/data/a")
    assert any_store.keys("ns/data/") == ["ns/data/*?[x]\\", "ns/data/b"]
    assert any_store.get("ns/data/big") is None
    any_store.put("ns/data/big", members("fresh"))  # a deleted key starts anew, even with another type
    assert any_store.get("ns/data/big") == members("fresh")


def test_unicode_and_long_keys(any_store):
    any_store.put("módulo/data/ключ", members("v"))
    assert any_store.get("módulo/data/ключ") == members("v")
    assert any_store.get("modulo/data/ключ") is None
    long = "p" * 600
    any_store.put(long + "x", members("x"))
    any_store.put(long + "y", members("y"))
    assert any_store.get(long + "x") == members("x") and any_store.get(long + "y") == members("y")


def test_arbitrary_bytes_merged_into_a_value_are_refused_or_merged_never_corrupt(any_store):
    any_store.put("k", members("a"))

    @settings(max_examples=150, deadline=None)
    @example(encode_lattice(members("b")))
    @given(st.binary(max_size=120) | st.binary(max_size=100).map(lambda b: b"\x01\x00\x00\x00" + b))
    def check(data: bytes) -> None:
        before = any_store.get_bytes("k")
        try:
            any_store.merge_bytes("k", data)
        except (DecodeError, StoreError):
            assert any_store.get_bytes("k") == before  # refused: nothing changed
        else:
            merged = decode_lattice(any_store.get_bytes("k"))
            assert isinstance(merged, SetLattice) and b"a" in merged.values

    check()
