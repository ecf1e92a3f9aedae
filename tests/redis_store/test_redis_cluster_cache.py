"""Executor caches fed by a real Redis Cluster (3 masters, 3 replicas on loopback): a feed per master, a
slot that moves (MOVED), a master killed with kill -9 (failover), a failover whose old master stays up.

All on the session's cluster (``redis_cluster``), each test under key prefixes of its own; the tests that
change the topology leave it as they found it: 3 masters, each with its replica, every slot served. Waits
poll with a deadline of a minute, never a sleep.
"""

from __future__ import annotations

import signal
import threading
import uuid

import pytest

pytest.importorskip("essa_redis")

from redis.crc import key_slot  # noqa: E402

from essa.state.bincode import decode_lattice, encode_lattice  # noqa: E402
from essa.state.cache import CachedStore, cached  # noqa: E402
from essa.state.lattice import LwwLattice, SetLattice  # noqa: E402
from essa.testing.resources import sample  # noqa: E402
from essa_redis import RedisStore  # noqa: E402
from essa_redis.cluster_feed import ClusterCacheFeed  # noqa: E402
from essa_redis.feed import MAX_TRACKERS  # noqa: E402

from .servers import READY_TIMEOUT, wait_until  # noqa: E402
from .test_redis_cache import Pair, members, read_concurrently  # noqa: E402


@pytest.fixture
def pair(redis_cluster):
    p = Pair(redis_cluster.url)
    yield p
    p.close()


def value_of(cache: CachedStore, key: str) -> bytes:
    return decode_lattice(cache.get_bytes(key)).value


def master_port(cluster, store: RedisStore, key: str) -> int:
    return cluster.master_of_slot(key_slot((store.settings.prefix + key).encode())).port


def feed_ports(cache: CachedStore) -> set[int]:
    """The masters the cache's feed listens to, with its listener subscribed."""
    feed = cache.inner._feed
    assert isinstance(feed, ClusterCacheFeed)
    return {address[1] for address, node in list(feed.feeds.items()) if node.listener_id is not None}


def test_keys_on_every_master_are_cached_and_another_clients_writes_invalidate_them(pair, redis_cluster):
    cache, other = pair.cache, pair.other
    keys = [f"ns/data/{i}" for i in range(30)]
    other.merge_many([(key, encode_lattice(SetLattice({b"a"}))) for key in keys])
    assert len({master_port(redis_cluster, other, key) for key in keys}) == 3
    for _ in range(2):
        assert all(members(cache.get_bytes(key)) == {b"a"} for key in keys)
    assert (cache.stats.misses, cache.stats.hits, cache.stats.unwatched) == (30, 30, 0)
    assert feed_ports(cache) == {m.port for m in redis_cluster.masters()}  # one listener per master
    other.merge_many([(key, encode_lattice(SetLattice({b"b"}))) for key in keys])  # each master invalidates its keys
    assert wait_until(lambda: all(members(cache.get_bytes(key)) == {b"a", b"b"} for key in keys),
                      timeout=READY_TIMEOUT, what="every key's invalidation")
    assert cache.stats.pushes >= 30 and cache.stats.resets == 0
    cache.put(keys[0], SetLattice({b"own"}))  # written through: the writer reads its own write
    assert members(other.get_bytes(keys[0])) == {b"a", b"b", b"own"} == members(cache.get_bytes(keys[0]))


def test_one_seed_found_to_be_a_cluster_caches_too(redis_cluster):
    seeds = RedisStore({"url": redis_cluster.url, "timeout": "30"})
    assert cached(seeds) is not seeds  # several seeds: known to be a cluster, and cached
    seeds.close()
    prefix = f"c{uuid.uuid4().hex[:10]}:"
    one_seed = RedisStore({"url": redis_cluster.servers[0].url, "timeout": "30", "prefix": prefix})
    cache = CachedStore(one_seed)  # cluster=auto: found to be a cluster at the first read
    other = RedisStore({"url": redis_cluster.url, "timeout": "30", "prefix": prefix})
    try:
        other.put("k", LwwLattice(1, b"one"))
        assert value_of(cache, "k") == b"one" and value_of(cache, "k") == b"one"
        assert cache.stats.hits == 1 and isinstance(one_seed._feed, ClusterCacheFeed)
        other.put("k", LwwLattice(2, b"two"))
        assert wait_until(lambda: value_of(cache, "k") == b"two", timeout=READY_TIMEOUT)
    finally:
        cache.close()
        other.close()


def test_threads_and_descriptors_stay_flat_and_the_cache_within_its_bound(redis_cluster):
    capacity = 50 * 1024
    p = Pair(redis_cluster.url, capacity)
    cache, other = p.cache, p.other
    try:
        value = encode_lattice(LwwLattice(1, b"v" * 100))
        other.merge_many([(f"d{i}", value) for i in range(2000)])
        for i in range(30):  # warm: a feed (a listener thread) for every master
            cache.get_bytes(f"d{i}")
        before = sample()
        for _round in range(2):
            read_concurrently(cache, [f"d{i}" for i in range(2000)])
            assert cache.bytes <= capacity
            assert all(cache.get_bytes(f"d{i}") == value for i in range(0, 2000, 100))
        assert cache.stats.evictions > 0
        # A reset (the session's cluster settling after another test's failover changes its slot map) replaces
        # the feeds: the old listeners end on their own, so the count comes back; a leak would not.
        wait_until(lambda: sample().threads <= before.threads, what=f"the threads back to {before.threads}")
        assert sample().fds <= before.fds + 3 * MAX_TRACKERS  # each master's tracking connections, at most
    finally:
        p.close()
    assert wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("essa-redis-watch")],
                      timeout=READY_TIMEOUT, what="the feeds' threads ending")


def _node_id(server) -> str:
    with server.client() as client:
        return client.execute_command("CLUSTER", "MYID").decode()


def _move_slot(cluster, slot: int, source, target) -> None:
    """Move ``slot`` and every key in it (other tests' too) from ``source`` to ``target``, as
    ``redis-cli --cluster reshard`` does."""
    source_id, target_id = _node_id(source), _node_id(target)
    with target.client() as t, source.client() as s:
        t.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while rkeys := s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            s.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *rkeys)
    for master in cluster.masters():
        with master.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    wait_until(lambda: cluster.master_of_slot(slot).port == target.port, what="the slot's new owner")


def test_a_slot_moved_to_another_master_resets_the_cache_and_its_new_owner_feeds_it(pair, redis_cluster):
    cache, other = pair.cache, pair.other
    key = "moving"
    rkey = (other.settings.prefix + key).encode()
    slot = key_slot(rkey)
    source = redis_cluster.master_of_slot(slot)
    target = next(m for m in redis_cluster.masters() if m.port != source.port)
    other.put(key, LwwLattice(1, b"one"))
    assert value_of(cache, key) == b"one" and key in cache._entries
    resets = cache.stats.resets
    try:
        _move_slot(redis_cluster, slot, source, target)
        # MIGRATE deleted the key on the source: its invalidation dropped the entry; then the slot map changed
        assert wait_until(lambda: cache.stats.resets > resets, timeout=READY_TIMEOUT, what="the cache's reset")
        other.put(key, LwwLattice(2, b"two"))
        assert wait_until(lambda: value_of(cache, key) == b"two", timeout=READY_TIMEOUT)
        assert value_of(cache, key) == b"two" and key in cache._entries  # cached again, tracked on the target
        other.put(key, LwwLattice(3, b"three"))
        assert wait_until(lambda: value_of(cache, key) == b"three", timeout=READY_TIMEOUT)
    finally:
        _move_slot(redis_cluster, slot, target, source)


def test_kill_9_of_a_master_resets_the_cache_and_reads_stay_correct_through_the_failover(pair, redis_cluster):
    cache, other = pair.cache, pair.other
    keys = [f"f/{i}" for i in range(30)]  # on every master
    other.merge_many([(key, encode_lattice(LwwLattice(1, b"one"))) for key in keys])
    assert all(value_of(cache, key) == b"one" for key in keys) and len(cache) == 30
    victim = redis_cluster.by_port(master_port(redis_cluster, other, keys[0]))
    resets = cache.stats.resets
    victim.kill(signal.SIGKILL)
    try:
        assert wait_until(lambda: cache.stats.resets > resets, timeout=READY_TIMEOUT, what="the cache's reset")
        assert len(cache) == 0  # nothing of the killed master (nor of the others) is served any more
        redis_cluster.wait_healthy(masters=3)  # its replica took over
        other.merge_many([(key, encode_lattice(LwwLattice(2, b"two"))) for key in keys])
        assert all(value_of(cache, key) == b"two" for key in keys)
        promoted = master_port(redis_cluster, other, keys[0])
        assert wait_until(lambda: promoted in feed_ports(cache) and victim.port not in feed_ports(cache),
                          timeout=READY_TIMEOUT, what="the promoted master's feed")
        assert value_of(cache, keys[0]) == b"two"  # cached again, tracked on the promoted master
        hits = cache.stats.hits
        assert value_of(cache, keys[0]) == b"two" and cache.stats.hits == hits + 1
        other.put(keys[0], LwwLattice(3, b"three"))
        assert wait_until(lambda: value_of(cache, keys[0]) == b"three", timeout=READY_TIMEOUT)
    finally:
        victim.start()  # back as the promoted master's replica: the session's cluster as it was
        wait_until(lambda: redis_cluster.healthy(masters=3) and len(redis_cluster.roles()) == 6,
                   what="the killed node back as a replica")


def replica_of(cluster, master):
    for port, role in cluster.roles().items():
        if role == "slave":
            with cluster.by_port(port).client() as client:
                if client.info("replication")["master_port"] == master.port:
                    return cluster.by_port(port)
    raise AssertionError(f"the master on port {master.port} has no replica")


def test_a_failover_whose_old_master_stays_up_resets_the_cache_by_the_slot_map(pair, redis_cluster):
    """``CLUSTER FAILOVER``: no connection of the feed closes; the slot map read again tells the change."""
    cache, other = pair.cache, pair.other
    key = "manual"
    other.put(key, LwwLattice(1, b"one"))
    assert value_of(cache, key) == b"one" and key in cache._entries
    old = redis_cluster.by_port(master_port(redis_cluster, other, key))
    replica = replica_of(redis_cluster, old)
    resets = cache.stats.resets
    with replica.client() as client:
        client.execute_command("CLUSTER", "FAILOVER")
    wait_until(lambda: master_port(redis_cluster, other, key) == replica.port, what="the replica promoted")
    assert wait_until(lambda: cache.stats.resets > resets, timeout=READY_TIMEOUT, what="the cache's reset")
    redis_cluster.wait_healthy()
    other.put(key, LwwLattice(2, b"two"))
    assert wait_until(lambda: value_of(cache, key) == b"two", timeout=READY_TIMEOUT)
    assert wait_until(lambda: replica.port in feed_ports(cache) and old.port not in feed_ports(cache),
                      timeout=READY_TIMEOUT, what="the promoted master's feed, the old one's closed")
    assert value_of(cache, key) == b"two" and key in cache._entries  # tracked on the promoted master
    other.put(key, LwwLattice(3, b"three"))
    assert wait_until(lambda: value_of(cache, key) == b"three", timeout=READY_TIMEOUT)
