"""Consistency levels: request fields, snapshots between executors, a call's view of the state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from essa.cluster.consistency import MAX_DEPS, CallState, Snapshots, check_fields
from essa.errors import LatticeTypeError
from essa.state.bincode import decode_lattice, encode_lattice
from essa.state.lattice import LwwLattice, SetLattice
from essa.state.memory import MemoryStore
from essa.transport.local import LocalTransport


def s(*members: bytes) -> bytes:
    return encode_lattice(SetLattice(set(members)))


def members(value: bytes | None) -> set[bytes]:
    return set(decode_lattice(value).values) if value is not None else set()


@pytest.mark.parametrize("fields, problem", [
    ({"consistency": "serializable"}, "unknown consistency level 'serializable'"),
    ({"consistency": "repeatable-read", "snapshot": "tree"}, "'snapshot' is not [tree id, executor id]"),
    ({"consistency": "repeatable-read", "snapshot": ["t", "a/b"]}, "'snapshot' is not [tree id, executor id]"),
    ({"consistency": "repeatable-read", "snapshot": ["t", "a", "tree"]}, "'snapshot' is not [tree id, executor id]"),
    ({"consistency": "causal", "deps": [1]}, "'deps' is not a list"),
    ({"consistency": "causal", "deps": ["k"] * (MAX_DEPS + 1)}, "'deps' is not a list"),
])
def test_malformed_consistency_fields_are_named_in_one_line(fields, problem):
    assert problem in check_fields({"id": "c", **fields})


def test_good_fields_pass():
    assert check_fields({"id": "c"}) is None
    assert check_fields({"consistency": "causal", "deps": ["a", "b"]}) is None
    assert check_fields({"consistency": "causal", "deps": True}) is None
    assert check_fields({"consistency": "repeatable-read", "snapshot": ["t", "0"]}) is None
    assert check_fields({"consistency": "repeatable-read", "snapshot": ["t", "0", "dag"]}) is None


def test_a_call_tree_reads_one_version_of_a_key_on_every_executor():
    transport, store = LocalTransport(), MemoryStore()
    owner, other = Snapshots("a", transport, store), Snapshots("b", transport, store)
    subs = [owner.serve(), other.serve()]
    try:
        store.merge_bytes("k", s(b"1"))
        root = CallState({"id": "t1", "consistency": "repeatable-read"}, "a", store, owner)
        assert members(root.get("k")) == {b"1"}
        store.merge_bytes("k", s(b"2"))  # a concurrent writer
        child = CallState({"id": "c1", **root.request_extra()}, "b", store, other)
        assert members(child.get("k")) == {b"1"}  # the version the tree pinned, from executor a
        child.put("k", s(b"mine"))
        assert members(child.get("k")) == {b"1", b"mine"}  # plus its own writes
        assert members(root.get("k")) == {b"1"}
        root.end()
        assert owner.status() == {"trees_owned": 0, "trees_seen": 0}
        late = CallState({"id": "c2", **root.request_extra()}, "b", store, other)
        assert members(late.get("other-key")) == set()  # the tree ended: current values, nothing pinned
    finally:
        for sub in subs:
            sub.close()


def test_a_dag_calls_snapshot_opens_on_its_first_read_anywhere_and_ends_for_good(monkeypatch):
    """A DAG call has no top-level call: whichever stage reads first (here on executor b) opens the tree at
    its owner (a); the sink's end drops it, and a straggler then reads current values without reopening it."""
    transport, store = LocalTransport(), MemoryStore()
    owner, other = Snapshots("a", transport, store), Snapshots("b", transport, store)
    subs = [owner.serve(), other.serve()]
    try:
        store.merge_bytes("k", s(b"1"))
        stage = {"consistency": "repeatable-read", "snapshot": ["dag1", "a", "dag"]}
        first = CallState({"id": "dag1/1", **stage}, "b", store, other)
        assert members(first.get("k")) == {b"1"}
        assert owner.status()["trees_owned"] == 1
        store.merge_bytes("k", s(b"2"))
        nested = CallState({"id": "dag1/1.1", **first.request_extra()}, "b", store, other)
        assert nested.request_extra()["snapshot"] == ["dag1", "a", "dag"]  # calls a stage starts join the tree
        sink = CallState({"id": "dag1/2", **stage}, "a", store, owner)
        assert members(nested.get("k")) == members(sink.get("k")) == {b"1"}
        sink.end()  # a stage's end is not the tree's
        assert owner.status()["trees_owned"] == 1
        owner.end_dag("dag1")
        assert owner.status()["trees_owned"] == 0
        straggler = CallState({"id": "dag1/3", **stage}, "a", store, owner)
        assert members(straggler.get("k2")) == set() and owner.status()["trees_owned"] == 0
        # A tree whose end never comes (an upstream executor died) goes after its time.
        monkeypatch.setattr("essa.cluster.consistency.DAG_SNAPSHOT_TTL", 0.0)
        CallState({"id": "dag2/0", **stage, "snapshot": ["dag2", "a", "dag"]}, "a", store, owner).get("k")
        CallState({"id": "dag3/0", **stage, "snapshot": ["dag3", "a", "dag"]}, "a", store, owner).get("k")
        assert owner.status()["trees_owned"] == 1  # dag2 expired when dag3 opened
    finally:
        for sub in subs:
            sub.close()


def test_causal_dependencies_travel_down_and_back_bounded():
    store = MemoryStore()
    caller = CallState({"id": "c", "consistency": "causal"}, "a", store, None)
    caller.put("w", s(b"x"))
    caller.get("r")
    extra = caller.request_extra()
    assert extra == {"consistency": "causal", "deps": ["r", "w"]}
    callee = CallState({"id": "d", **extra}, "b", store, None)
    callee.put("z", s(b"y"))
    caller.received({"deps": callee.reply_extra()["deps"]})
    assert set(caller.request_extra()["deps"]) == {"r", "w", "z"}
    caller.received({"deps": [f"k{i}" for i in range(MAX_DEPS)]})
    assert caller.request_extra()["deps"] is True  # too many: every read of a successor skips the cache


def test_without_a_cache_writes_go_through_and_types_are_checked_by_the_store():
    store = MemoryStore()
    call = CallState({"id": "c"}, "a", store, None)
    call.put("k", encode_lattice(LwwLattice(1, b"v")))
    assert store.get_bytes("k") is not None
    with pytest.raises(LatticeTypeError):
        call.put("k", s(b"x"))
    assert call.request_extra() == {} and call.reply_extra() == {}


def test_a_deployment_records_its_level_and_refuses_an_unknown_one(tmp_path):
    import essa
    from essa.errors import EssaError

    engine = os.environ.get("ESSA_TEST_ENGINE") or "wasmtime"
    pytest.importorskip(f"essa_{engine}")  # it runs a module: not in the core environment, which has no engine
    module = (Path(__file__).resolve().parents[2] / "examples" / "state-ops.wasm").read_bytes()
    with essa.connect(engine=engine, store="memory", executors=1) as es:
        assert es.deploy(module, "plain").consistency == "default"
        assert es.deploy(module, "rr", consistency="repeatable-read").consistency == "repeatable-read"
        assert es.deployment("rr").consistency == "repeatable-read"
        assert es.deployment("rr").as_dict()["consistency"] == "repeatable-read"
        with pytest.raises(EssaError, match="unknown consistency level 'strict'"):
            es.deploy(module, "bad", consistency="strict")
        assert es.call("rr", "read_key", b"\x01\x00\x00\x00\x00\x00\x00\x00k") == b""  # runs at its level


def test_with_a_cache_writes_wait_in_the_call_bounded_and_are_stored_together():
    from test_cache import PushingStore  # tests/unit is on sys.path (no package)

    from essa.cluster.consistency import MAX_UNSTORED
    from essa.state.cache import CachedStore

    store = PushingStore()
    cache = CachedStore(store)
    call = CallState({"id": "c"}, "a", cache, None)
    call.put("k", s(b"1"))
    assert store.get_bytes("k") is None  # kept in the call
    assert members(call.get("k")) == {b"1"}  # which reads its own writes
    with pytest.raises(LatticeTypeError):
        call.put("k", encode_lattice(LwwLattice(1, b"v")))  # another lattice type: refused when made
    store.merge_bytes("t", s(b"x"))
    with pytest.raises(LatticeTypeError):
        call.put("t", encode_lattice(LwwLattice(1, b"v")))  # against the stored value too
    for i in range(MAX_UNSTORED + 5):
        call.put(f"many{i}", s(b"m"))
    assert store.get_bytes("many0") is not None and len(call.unstored) <= MAX_UNSTORED
    call.end()
    assert call.write_error is None and members(store.get_bytes("k")) == {b"1"}
    assert store.get_bytes(f"many{MAX_UNSTORED + 4}") is not None
