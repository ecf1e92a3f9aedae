"""Executor-local caches on the Anna store: watches, pushed updates, leases, bounds (real KVS processes)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("zenoh")
pytest.importorskip("essa_anna")

from essa.state.bincode import decode_lattice, encode_lattice  # noqa: E402
from essa.state.cache import CachedStore  # noqa: E402
from essa.state.lattice import LwwLattice, SetLattice  # noqa: E402
from essa_anna import AnnaStore  # noqa: E402

from .helpers import (  # noqa: E402
    READY_TIMEOUT,
    ROOT,
    TEST_FUNCTION,
    AnnaCluster,
    essa,
    expected_test_function_output,
    wait_until,
)

WORD_COUNT = ROOT / "examples" / "word-count.wasm"


def store_of(cluster: AnnaCluster) -> AnnaStore:
    return AnnaStore({"routing": cluster.endpoint, "timeout": "30", "connect_timeout": str(READY_TIMEOUT)})


def cache_of(cluster: AnnaCluster, capacity: int | None = None) -> CachedStore:
    """A cache on a new client, once the client has seen every node (each change of its view resets the cache)."""
    cache = CachedStore(store_of(cluster)) if capacity is None else CachedStore(store_of(cluster), capacity)
    nodes = len(cluster.watcher.membership.kvs)
    assert wait_until(lambda: len(cache.inner.client._kvs_seen) == nodes)
    return cache


def members(value: bytes | None) -> set[bytes]:
    return set(decode_lattice(value).values) if value is not None else set()


def test_a_cached_key_is_served_locally_and_updated_by_pushes(anna):
    anna.start(3)
    reader = cache_of(anna)
    writer = store_of(anna)
    try:
        writer.put("k", SetLattice({b"a"}))
        assert members(reader.get_bytes("k")) == {b"a"}
        assert reader.stats.misses == 1
        assert members(reader.get_bytes("k")) == {b"a"}
        assert reader.stats.hits == 1
        writer.put("k", SetLattice({b"b"}))  # another process writes: the owner pushes the merged value
        assert wait_until(lambda: members(reader.get_bytes("k")) == {b"a", b"b"}), reader.status()
        assert reader.stats.misses == 1 and reader.stats.pushes >= 1
        # an absent key is cached as absent, and a write elsewhere reaches it too
        assert reader.get_bytes("absent") is None
        writer.put("absent", LwwLattice(5, b"now"))
        assert wait_until(lambda: reader.get_bytes("absent") is not None)
        assert decode_lattice(reader.get_bytes("absent")).value == b"now"
        assert reader.stats.misses == 2
        # a deletion is pushed too
        writer.delete("absent")
        assert wait_until(lambda: "absent" not in reader._entries)
    finally:
        reader.close()
        writer.close()


def test_writes_go_through_to_the_store_and_into_the_cache(anna):
    anna.start(3)
    cache = cache_of(anna)
    other = store_of(anna)
    try:
        assert cache.get_bytes("w") is None
        cache.put("w", SetLattice({b"x"}))
        assert members(cache.get_bytes("w")) == {b"x"}  # read your writes, from the cache
        assert members(other.get_bytes("w")) == {b"x"}  # acknowledged by the store before put returned
        assert cache.stats.misses == 1
    finally:
        cache.close()
        other.close()


def test_a_killed_kvs_node_resets_the_cache_and_reads_stay_correct(anna):
    anna.start(3)
    cache = cache_of(anna)
    writer = store_of(anna)
    try:
        keys = [f"key-{i}" for i in range(50)]
        for key in keys:
            writer.put(key, SetLattice({b"1"}))
            cache.get_bytes(key)
        assert len(cache) == 50
        resets = cache.stats.resets
        anna.kill("kvs-n0")
        assert wait_until(lambda: cache.stats.resets > resets, timeout=READY_TIMEOUT)
        for key in keys:  # acknowledged writes survive (replication 2); pushes come from the new owners
            writer.put(key, SetLattice({b"2"}))
        for key in keys:
            assert wait_until(lambda: members(cache.get_bytes(key)) == {b"1", b"2"}), key
    finally:
        cache.close()
        writer.close()


def test_cache_memory_is_bounded_over_many_distinct_keys(anna):
    anna.start(1)
    writer = store_of(anna)
    value = encode_lattice(LwwLattice(1, b"v" * 100))
    writer.client.put_many((f"d{i}", value) for i in range(2000))
    capacity = 50 * 1024
    cache = cache_of(anna, capacity)
    try:
        for _round in range(3):
            for i in range(2000):
                assert cache.get_bytes(f"d{i}") == value
                assert cache.bytes <= capacity
        assert cache.stats.evictions > 0
        assert len(cache) < 2000
    finally:
        cache.close()
        writer.close()


def test_an_entry_is_watched_again_after_its_lease(anna):
    anna.start(1)
    cache = cache_of(anna)
    try:
        cache.lease = 3.0  # serve for 3 s, then read and watch again
        assert cache.get_bytes("l") is None
        assert cache.get_bytes("l") is None
        assert cache.stats.misses == 1
        time.sleep(3.1)  # (the lease running out is the point of the test, not a wait for a signal)
        assert cache.get_bytes("l") is None
        assert cache.stats.misses == 2
    finally:
        cache.close()


@pytest.mark.parametrize("cache", ["64M", "0"], ids=["cache-on", "cache-off"])
def test_the_examples_give_the_same_results_with_the_cache_on_and_off(anna, engine_name, cache):
    """essa-rs's test function and the word count, embedded on the Anna store, with the executors' cache
    on and off (ESSA_CACHE_SIZE): the same output."""
    anna.start(3)
    store = ["--engine", engine_name, "--store", "anna", "--store-option", f"routing={anna.endpoint}",
             "--store-option", "timeout=30"]
    env = {"ESSA_CACHE_SIZE": cache}
    result = essa(*store, "run", str(TEST_FUNCTION), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_test_function_output()
    result = essa(*store, "run", str(WORD_COUNT), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "words: 23\nvocabulary: 16 words\n"
