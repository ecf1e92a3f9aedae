"""Executor caches fed by one real redis-server process: tracked reads, invalidations, resets, bounds, merge_many.

A cache here is :class:`essa.state.cache.CachedStore` on a :class:`RedisStore`, exactly what an executor
builds; another store (another client) writes. Waits poll with a deadline of a minute, never a sleep.
"""

from __future__ import annotations

import signal
import threading
import uuid

import pytest

pytest.importorskip("essa_redis")

import redis  # noqa: E402

from essa.errors import LatticeTypeError, StoreError  # noqa: E402
from essa.state.bincode import decode_lattice, encode_lattice  # noqa: E402
from essa.state.cache import CachedStore  # noqa: E402
from essa.state.lattice import LwwLattice, SetLattice  # noqa: E402
from essa.testing.resources import sample  # noqa: E402
from essa_redis import RedisStore  # noqa: E402
from essa_redis.feed import MAX_TRACKERS  # noqa: E402

from .servers import READY_TIMEOUT, RedisServer, wait_until  # noqa: E402


def open_store(url: str, prefix: str | None = None, **options: str) -> RedisStore:
    return RedisStore({"url": url, "prefix": prefix or f"c{uuid.uuid4().hex[:10]}:", "timeout": "30", **options})


class Pair:
    """A cache (what an executor holds) and another client of the same Redis, under one key prefix."""

    def __init__(self, url: str, capacity: int = 64 << 20, **options: str) -> None:
        self.cache = CachedStore(open_store(url, **options), capacity)
        self.other = open_store(url, self.cache.inner.settings.prefix)

    def close(self) -> None:
        self.cache.close()
        self.other.close()


@pytest.fixture
def pair(redis_server):
    p = Pair(redis_server.url)
    yield p
    p.close()


def members(value: bytes | None) -> set[bytes]:
    return set(decode_lattice(value).values) if value is not None else set()


def feed_up(cache: CachedStore) -> bool:
    """The cache's feed listens (so reads are watched)."""
    feed = cache.inner._feed
    return feed is not None and feed.listener_id is not None


def tracking_clients(server: RedisServer) -> list[dict]:
    """The server's clients whose reads it tracks (flag ``t``) and the pub/sub listeners (flag ``P``)."""
    with server.client() as client:
        return [c for c in client.client_list() if "t" in c["flags"] or "P" in c["flags"]]


def test_a_cached_read_is_served_here_and_sees_another_clients_write_after_the_invalidation(pair):
    cache, other = pair.cache, pair.other
    other.put("k", SetLattice({b"a"}))
    assert members(cache.get_bytes("k")) == {b"a"}
    assert members(cache.get_bytes("k")) == {b"a"}
    assert (cache.stats.misses, cache.stats.hits, cache.stats.unwatched) == (1, 1, 0)
    other.put("k", SetLattice({b"b"}))  # another client: the server invalidates the key here
    assert wait_until(lambda: members(cache.get_bytes("k")) == {b"a", b"b"}, timeout=READY_TIMEOUT)
    assert cache.stats.pushes >= 1
    other.put("k", SetLattice({b"b"}))  # a merge that changes nothing writes nothing: no invalidation
    misses = cache.stats.misses
    assert members(cache.get_bytes("k")) == {b"a", b"b"}
    assert members(cache.get_bytes("k")) == {b"a", b"b"} and cache.stats.misses == misses


def test_an_absent_key_is_cached_as_absent_and_writes_and_deletions_reach_it(pair):
    cache, other = pair.cache, pair.other
    assert cache.get_bytes("absent") is None
    assert cache.get_bytes("absent") is None and cache.stats.hits == 1
    other.put("absent", LwwLattice(5, b"now"))
    assert wait_until(lambda: cache.get_bytes("absent") is not None, timeout=READY_TIMEOUT)
    assert decode_lattice(cache.get_bytes("absent")) == LwwLattice(5, b"now")
    assert "absent" in cache._entries  # cached again
    other.delete("absent")
    assert wait_until(lambda: cache.get_bytes("absent") is None, timeout=READY_TIMEOUT)


def test_writes_go_through_to_redis_and_the_writer_reads_its_own(pair):
    cache, other = pair.cache, pair.other
    assert cache.get_bytes("w") is None
    cache.put("w", SetLattice({b"x"}))
    assert members(other.get_bytes("w")) == {b"x"}  # acknowledged by Redis before put returned
    assert members(cache.get_bytes("w")) == {b"x"}
    cache.merge_many([("w", encode_lattice(SetLattice({b"y"}))), ("v", encode_lattice(SetLattice({b"z"})))])
    assert members(cache.get_bytes("w")) == {b"x", b"y"} and members(other.get_bytes("v")) == {b"z"}


def test_flushall_resets_the_cache(tmp_path):
    server = RedisServer(tmp_path / "flushed").start()
    p = Pair(server.url)
    try:
        p.other.put("f", LwwLattice(10, b"before"))
        assert p.cache.get_bytes("f") is not None and "f" in p.cache._entries
        resets = p.cache.stats.resets
        with server.client() as client:
            client.flushall()  # a null invalidation
        assert wait_until(lambda: p.cache.stats.resets > resets, timeout=READY_TIMEOUT)
        assert p.cache.get_bytes("f") is None
    finally:
        p.close()
        server.stop()


def test_a_killed_and_restarted_server_resets_the_cache_and_serves_nothing_stale(tmp_path):
    server = RedisServer(tmp_path / "restarted").start()  # no AOF: a restart loses everything
    p = Pair(server.url, timeout="2")
    cache, other = p.cache, p.other
    try:
        other.put("lww", LwwLattice(10, b"old"))
        other.put("set", SetLattice({b"old"}))
        assert decode_lattice(cache.get_bytes("lww")).value == b"old" and members(cache.get_bytes("set"))
        resets = cache.stats.resets
        server.kill(signal.SIGKILL)
        assert wait_until(lambda: cache.stats.resets > resets, timeout=READY_TIMEOUT)
        assert len(cache) == 0
        with pytest.raises(StoreError, match="state store unavailable: redis at 127.0.0.1:"):
            cache.get_bytes("lww")  # nothing is served from the cache while the server is away
        server.start()
        other.put("lww", LwwLattice(5, b"new"))  # older than the lost value: a stale cache would say "old"
        assert wait_until(lambda: feed_up(cache), timeout=READY_TIMEOUT)
        assert decode_lattice(cache.get_bytes("lww")) == LwwLattice(5, b"new")
        assert cache.get_bytes("set") is None
        hits = cache.stats.hits
        assert decode_lattice(cache.get_bytes("lww")) == LwwLattice(5, b"new")
        assert cache.stats.hits == hits + 1  # caching again, and the invalidations come again too
        other.put("lww", LwwLattice(6, b"newer"))
        assert wait_until(lambda: decode_lattice(cache.get_bytes("lww")).value == b"newer", timeout=READY_TIMEOUT)
    finally:
        p.close()
        server.stop()


@pytest.mark.parametrize("connection", ["tracking", "listener"])
def test_a_killed_feed_connection_resets_the_cache_and_the_feed_comes_back(tmp_path, connection):
    """A tracking connection the server closed (CLIENT KILL, its idle ``timeout``) takes its tracked keys
    along, unannounced: the feed's keepalive finds it; a killed listener is found at once."""
    server = RedisServer(tmp_path / "killed").start()
    p = Pair(server.url)
    cache, other = p.cache, p.other
    try:
        other.put("k", LwwLattice(1, b"one"))
        assert cache.get_bytes("k") is not None and "k" in cache._entries
        flag = "t" if connection == "tracking" else "P"
        victims = [c for c in tracking_clients(server) if flag in c["flags"]]
        assert victims
        resets = cache.stats.resets
        with server.client() as client:
            for victim in victims:
                client.client_kill_filter(_id=victim["id"])
        other.put("k", LwwLattice(2, b"two"))  # its invalidation may be lost with the connection
        assert wait_until(lambda: cache.stats.resets > resets, timeout=READY_TIMEOUT)
        assert wait_until(lambda: decode_lattice(cache.get_bytes("k")).value == b"two", timeout=READY_TIMEOUT)
        assert wait_until(lambda: feed_up(cache), timeout=READY_TIMEOUT)
        cache.get_bytes("k")
        other.put("k", LwwLattice(3, b"three"))
        assert wait_until(lambda: decode_lattice(cache.get_bytes("k")).value == b"three", timeout=READY_TIMEOUT)
    finally:
        p.close()
        server.stop()


def read_concurrently(cache, keys: list[str], threads: int = 8) -> None:
    """Read every one of ``keys`` through ``cache``, spread over ``threads`` threads (each its share in turn)."""
    workers = [threading.Thread(target=lambda t=t: [cache.get_bytes(k) for k in keys[t::threads]])
               for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def test_the_cache_stays_within_its_bound_and_threads_and_descriptors_stay_flat(redis_server):
    capacity = 50 * 1024
    p = Pair(redis_server.url, capacity)
    cache, other = p.cache, p.other
    try:
        value = encode_lattice(LwwLattice(1, b"v" * 100))
        other.merge_many([(f"d{i}", value) for i in range(2000)])
        cache.get_bytes("warm")
        before = sample()
        for round_ in range(3):
            read_concurrently(cache, [f"d{i}" for i in range(2000)])
            assert cache.bytes <= capacity
            for i in range(0, 2000, 100):
                assert cache.get_bytes(f"d{i}") == value
        assert cache.stats.evictions > 0 and len(cache) < 2000
        after = sample()
        assert after.threads <= before.threads
        assert after.fds <= before.fds + MAX_TRACKERS  # the feed's tracking connections, at most
        assert wait_until(lambda: len([c for c in tracking_clients(redis_server) if "t" in c["flags"]]) <= MAX_TRACKERS,
                          timeout=READY_TIMEOUT, what="the server's tracking clients being this cache's")
    finally:
        p.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("essa-redis-watch")]


def test_merge_many_is_one_round_trip_with_the_merge_scripts_rules(redis_server, monkeypatch):
    store = open_store(redis_server.url)
    sent = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    try:
        store.put("warm", SetLattice({b"x"}))
        with redis_server.client() as client:
            before = {k: v["calls"] for k, v in client.info("commandstats").items()}
        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
        items = [(f"s{i}", encode_lattice(SetLattice({b"%d" % i}))) for i in range(50)]
        items += [("lww", encode_lattice(LwwLattice(5, b"five"))), ("lww", encode_lattice(LwwLattice(3, b"three")))]
        store.merge_many(items)
        assert len(sent) == 1  # one round trip
        monkeypatch.undo()
        with redis_server.client() as client:
            after = {k: v["calls"] for k, v in client.info("commandstats").items()}
        assert after["cmdstat_evalsha"] - before.get("cmdstat_evalsha", 0) == 52
        assert store.get("s7") == SetLattice({b"7"}) and store.get("lww") == LwwLattice(5, b"five")
        # a value of another type is refused, as a single put is; the others are stored
        with pytest.raises(LatticeTypeError, match="cannot merge a Lww lattice into a Set lattice"):
            store.merge_many([("s1", encode_lattice(LwwLattice(1, b"x"))),
                              ("fresh", encode_lattice(SetLattice({b"f"})))])
        assert store.get("s1") == SetLattice({b"1"}) and store.get("fresh") == SetLattice({b"f"})
        with redis_server.client() as client:  # a server that forgot the script is sent it again
            client.script_flush()
        store.merge_many([("s1", encode_lattice(SetLattice({b"again"})))])
        assert store.get("s1") == SetLattice({b"1", b"again"})
        store.merge_many([])
        with pytest.raises(StoreError, match="reached 0 of 1 replicas"):  # WAIT in the same pipeline
            open_store(redis_server.url, wait_replicas="1", wait_timeout="0.1").merge_many(items[:2])
    finally:
        store.close()


@pytest.mark.parametrize("denied", ["client|tracking", "client|id"])
def test_a_user_the_server_does_not_let_track_keys_reads_through_and_caches_nothing(redis_server, denied, caplog):
    user = f"u{uuid.uuid4().hex[:8]}"
    with redis_server.client() as client:
        client.execute_command("ACL", "SETUSER", user, "on", ">secret", "~*", "&*", "+@all", f"-{denied}")
    p = Pair(redis_server.url, username=user, password="secret")
    try:
        p.other.put("k", SetLattice({b"a"}))
        for _ in range(3):
            assert members(p.cache.get_bytes("k")) == {b"a"}
        p.other.put("k", SetLattice({b"b"}))
        assert members(p.cache.get_bytes("k")) == {b"a", b"b"}  # nothing cached: every read is Redis's
        assert len(p.cache) == 0 and p.cache.stats.unwatched == 4
    finally:
        p.close()
        with redis_server.client() as client:
            client.execute_command("ACL", "DELUSER", user)
    assert "refuses to track keys" in caplog.text
