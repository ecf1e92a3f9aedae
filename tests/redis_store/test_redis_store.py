"""The redis store on one real redis-server: options, layout, one round trip per put, errors, notifications.

The store contract itself (merges, types, keys) is tests/store/test_contract.py,
run on this store too; the Redis Cluster is test_redis_cluster.py.
"""

from __future__ import annotations

import importlib.metadata
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import uuid

import pytest

pytest.importorskip("essa_redis")

from essa.errors import DecodeError, StoreError  # noqa: E402
from essa.state.bincode import encode_lattice  # noqa: E402
from essa.state.lattice import LwwLattice, OrderedSetLattice, SetLattice  # noqa: E402
from essa_redis import RedisStore  # noqa: E402
from essa_redis.options import OPTIONS, parse  # noqa: E402

from .servers import READY_TIMEOUT, RedisServer, free_port, wait_until  # noqa: E402


def open_store(server, **options: str) -> RedisStore:
    return RedisStore({"url": server.url, "prefix": f"t{uuid.uuid4().hex[:10]}:", "timeout": "30", **options})


@pytest.fixture
def store(redis_server):
    s = open_store(redis_server)
    yield s
    s.close()


def commandstats(server) -> dict[str, int]:
    with server.client() as client:
        return {name: stats["calls"] for name, stats in client.info("commandstats").items()}


def calls_since(server, before: dict[str, int]) -> dict[str, int]:
    after = commandstats(server)
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


# -- options ---------------------------------------------------------------------------------


def test_options_are_checked_in_one_line():
    with pytest.raises(StoreError, match="unknown redis store option 'nope'; valid options: url, cluster"):
        RedisStore({"nope": "1"})
    for options, word in [({"timeout": "soon"}, "timeout"), ({"wait_replicas": "-1"}, "wait_replicas"),
                          ({"url": "http://x"}, "url"), ({"url": "redis://h:99999"}, "url"),
                          ({"tls": "maybe"}, "tls"), ({"cluster": "sometimes"}, "cluster"),
                          ({"url": "redis://a:1 redis://b:2", "db": "3"}, "database 0"),
                          ({"tls_cert": "c.pem"}, "tls_key")]:
        with pytest.raises(StoreError, match=word):
            RedisStore(options)


def test_options_spelt_with_hyphens_and_urls_with_credentials():
    settings = parse({"url": "rediss://essa:s%40cret@cache.example:6380/2", "wait-replicas": "1",
                      "wait-timeout": "0.5"})
    assert (settings.username, settings.password, settings.db, settings.tls) == ("essa", "s@cret", 2, True)
    assert (settings.wait_replicas, settings.wait_timeout) == (1, 0.5)
    assert settings.where == "cache.example:6380"
    store = RedisStore({"url": "redis://essa:secret@127.0.0.1:1/2"})
    assert "secret" not in store.describe() and "secret" not in repr(store)
    assert store.describe() == "redis at 127.0.0.1:1 db 2, key prefix 'essa:'"
    store.close()


def test_the_plugin_registers_the_store_and_essa_plugins_lists_it_with_its_options():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="essa")}
    assert eps["redis"].dist.name == "essa-plugin-redis"
    from essa.plugins import PluginManager

    assert PluginManager().store_class("redis") is RedisStore
    listed = subprocess.run([sys.executable, "-m", "essa", "plugins"], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "COLUMNS": "400"})
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "essa-plugin-redis" in line)
    assert "store redis" in line
    assert all(option in listed.stdout for option in OPTIONS)


# -- layout and round trips ---------------------------------------------------------------------


def test_sets_are_redis_sets_and_ordered_sets_sorted_sets_and_a_put_is_one_script_call(redis_server, store):
    store.put("warm", SetLattice([b"x"]))  # the server has the script (a first put may load it)
    before = commandstats(redis_server)
    store.put("s", SetLattice([b"b", b"a"]))
    store.put("o", OrderedSetLattice([b"b", b"ab"]))
    store.put("l", LwwLattice(1, b"x"))
    counted = calls_since(redis_server, before)
    assert counted.get("cmdstat_evalsha") == 3  # one round trip each, merged on the server
    assert not {"cmdstat_watch", "cmdstat_multi", "cmdstat_exec", "cmdstat_smembers"} & set(counted)
    prefix = store.settings.prefix
    with redis_server.client() as client:
        assert client.type(f"{prefix}s") == b"set" and client.smembers(f"{prefix}s") == {b"a", b"b"}
        assert client.type(f"{prefix}o") == b"zset" and client.zrange(f"{prefix}o", 0, -1) == [b"ab", b"b"]
        assert client.get(f"{prefix}l") == encode_lattice(LwwLattice(1, b"x"))


def test_one_add_into_a_big_set_sends_and_touches_only_the_member(redis_server, store):
    store.put("big", SetLattice(b"m%06d" % i for i in range(100_000)))
    before = commandstats(redis_server)
    store.put("big", SetLattice([b"one more"]))
    counted = calls_since(redis_server, before)
    assert counted.get("cmdstat_sadd") == 1 and counted.get("cmdstat_evalsha") == 1
    assert "cmdstat_smembers" not in counted and "cmdstat_get" not in counted
    assert len(store.get("big").values) == 100_001
    assert store.get_bytes("big") == encode_lattice(SetLattice([*(b"m%06d" % i for i in range(100_000)),
                                                                b"one more"]))


def test_a_merge_that_changes_nothing_writes_nothing(redis_server, store):
    store.put("l", LwwLattice(5, b"new"))
    store.put("s", SetLattice([b"a"]))
    before = commandstats(redis_server)
    store.put("l", LwwLattice(3, b"old"))
    store.put("s", SetLattice([b"a"]))
    counted = calls_since(redis_server, before)
    assert "cmdstat_set" not in counted and "cmdstat_get" not in counted  # the timestamp alone decided
    with redis_server.client() as client:
        assert client.get(f"{store.settings.prefix}l") == encode_lattice(LwwLattice(5, b"new"))


def test_a_key_under_the_prefix_that_holds_no_essa_value_is_named(redis_server, store):
    with redis_server.client() as client:
        client.rpush(f"{store.settings.prefix}list", b"x")
    with pytest.raises(StoreError, match="does not hold an essa value .it is a list"):
        store.put("list", SetLattice([b"a"]))
    with pytest.raises(StoreError, match="does not hold an essa value"):
        store.get("list")
    with pytest.raises(DecodeError):
        store.merge_bytes("list", b"junk")


def test_a_restarted_server_that_lost_the_scripts_is_sent_them_again(redis_server, store):
    store.put("k", SetLattice([b"a"]))
    with redis_server.client() as client:
        client.script_flush()
    store.put("k", SetLattice([b"b"]))
    assert store.get("k") == SetLattice([b"a", b"b"])


# -- a server that is down, restarted, or full ------------------------------------------------------


def test_a_server_that_is_down_gives_one_line_per_call_never_a_hang():
    port = free_port()
    code = textwrap.dedent(f"""
        from essa_redis import RedisStore
        from essa.state.lattice import SetLattice
        from essa.errors import StoreError
        store = RedisStore({{"url": "redis://127.0.0.1:{port}", "timeout": "1"}})
        for call in (lambda: store.put("k", SetLattice([b"a"])), lambda: store.get("k"), lambda: store.keys(),
                     lambda: store.delete("k"), lambda: store.watch("", print)):
            try:
                call()
            except StoreError as exc:
                print(exc)
        store.close()
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5
    assert all(line.startswith("state store unavailable: ") and f"127.0.0.1:{port}" in line for line in lines), lines


def test_acknowledged_puts_survive_a_kill_9_with_aof_always_and_the_store_reconnects(tmp_path):
    server = RedisServer(tmp_path / "aof", appendonly="yes", appendfsync="always").start()
    try:
        store = open_store(server)
        for i in range(200):
            store.put("acked", SetLattice([b"%d" % i]))
            store.put(f"lww/{i}", LwwLattice(i, b"v%d" % i))
        server.kill(signal.SIGKILL)
        with pytest.raises(StoreError, match="state store unavailable"):
            RedisStore({**store.options, "timeout": "0.5"}).put("k", SetLattice([b"x"]))
        server.start()
        assert store.get("acked") == SetLattice(b"%d" % i for i in range(200))  # the same store, reconnected
        assert all(store.get(f"lww/{i}") == LwwLattice(i, b"v%d" % i) for i in range(200))
        store.close()
    finally:
        server.stop()


def test_a_full_server_refuses_puts_in_one_line_and_keeps_serving_reads(tmp_path):
    server = RedisServer(tmp_path / "full", maxmemory="3mb", **{"maxmemory-policy": "noeviction"}).start()
    try:
        store = open_store(server)
        acked = []
        with pytest.raises(StoreError) as info:
            for i in range(10_000):
                store.put(f"k{i}", LwwLattice(i, bytes(2000)))
                acked.append(i)
        message = str(info.value)
        assert message.startswith("state store unavailable: redis at ") and "is full" in message
        assert "\n" not in message and acked
        for i in range(5):  # later puts: the same line
            with pytest.raises(StoreError, match="is full"):
                store.put(f"more{i}", LwwLattice(i, bytes(2000)))
        assert store.get(f"k{acked[-1]}") == LwwLattice(acked[-1], bytes(2000))  # reads still work
        assert store.delete(f"k{acked[0]}")  # and freeing memory is allowed
        store.close()
    finally:
        server.stop()


# -- change notifications -------------------------------------------------------------------------


def test_watch_reports_each_changed_key_under_its_prefixes(redis_server, store):
    seen: queue.Queue = queue.Queue()
    other = open_store(redis_server, prefix=store.settings.prefix)  # another client writes
    with store.watch(["ns/data/", "deployments"], seen.put):
        other.put("ns/data/a", SetLattice([b"x"]))
        other.put("elsewhere/data/b", SetLattice([b"x"]))  # not watched
        other.put("deployments", SetLattice([b"wc"]))
        other.put("ns/data/a", SetLattice([b"x"]))  # changes nothing
        other.put("ns/data/l", LwwLattice(2, b"x"))
        other.delete("ns/data/a")
        got = [seen.get(timeout=READY_TIMEOUT) for _ in range(4)]
        assert got == ["ns/data/a", "deployments", "ns/data/l", "ns/data/a"]
        other.put("ns/data/l", LwwLattice(1, b"older"))  # loses: not a change
        other.put("ns/data/last", SetLattice([b"x"]))
        assert seen.get(timeout=READY_TIMEOUT) == "ns/data/last"
    other.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("essa-redis-watch")]


def test_watch_says_none_after_a_restart_and_keeps_watching(tmp_path):
    server = RedisServer(tmp_path / "watched", appendonly="yes").start()
    try:
        store = open_store(server)
        seen: queue.Queue = queue.Queue()
        watch = store.watch("", seen.put)
        store.put("a", SetLattice([b"x"]))
        assert seen.get(timeout=READY_TIMEOUT) == "a"
        server.kill(signal.SIGKILL)
        server.start()
        assert seen.get(timeout=READY_TIMEOUT) is None  # changes may have been missed: re-read
        store.put("b", SetLattice([b"x"]))
        assert seen.get(timeout=READY_TIMEOUT) == "b"
        watch.close()
        store.close()
    finally:
        server.stop()


def test_a_failing_callback_costs_a_line_and_the_watch_goes_on(store):
    seen: queue.Queue = queue.Queue()

    def callback(key):
        if key == "bad":
            raise RuntimeError("boom")
        seen.put(key)

    with store.watch("", callback):
        store.put("bad", SetLattice([b"x"]))
        store.put("good", SetLattice([b"x"]))
        assert seen.get(timeout=READY_TIMEOUT) == "good"


def test_threads_and_descriptors_stay_flat(redis_server):
    import os

    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    store = open_store(redis_server)
    store.put("warm", SetLattice([b"x"]))
    with store.watch("", lambda key: None):
        pass
    baseline_threads, baseline_fds = threading.active_count(), descriptors()
    for round_ in range(5):
        workers = [threading.Thread(target=lambda t=t: [store.put(f"k{t}", SetLattice([b"%d" % i]))
                                                          for i in range(50)]) for t in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        with store.watch("k", lambda key: None):
            pass
        try:
            RedisStore({"url": "redis://127.0.0.1:1", "timeout": "0.2"}).get("x")
        except StoreError:
            pass
    wait_until(lambda: threading.active_count() <= baseline_threads, what="watch threads ending")
    assert descriptors() <= baseline_fds + 8  # the pool keeps a connection per concurrent writer
    store.close()
