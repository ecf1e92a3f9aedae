"""The redis store on a real Redis Cluster (3 masters, 3 replicas on loopback): slots, WAIT, a slot moving
under writers (ASK, then MOVED), a master killed with kill -9 under concurrent writers, notifications."""

from __future__ import annotations

import queue
import signal
import threading
import time
import uuid

import pytest

pytest.importorskip("essa_redis")

from essa.errors import StoreError  # noqa: E402
from essa.state.lattice import LwwLattice, SetLattice  # noqa: E402
from essa_redis import RedisStore  # noqa: E402

from .servers import READY_TIMEOUT, RedisClusterProcesses, wait_until  # noqa: E402


def open_store(cluster, **options: str) -> RedisStore:
    return RedisStore({"url": cluster.url, "prefix": f"t{uuid.uuid4().hex[:10]}:", "timeout": "30", **options})


@pytest.fixture
def own_cluster(tmp_path):
    """A cluster of this test's own (it changes the topology), with AOF on every node."""
    cluster = RedisClusterProcesses(tmp_path / "cluster", appendonly="yes", appendfsync="everysec").start()
    yield cluster
    cluster.stop()


def test_values_spread_over_every_master_and_keys_are_listed_from_all(redis_cluster):
    store = open_store(redis_cluster)
    for i in range(60):
        store.put(f"ns/data/{i:02d}", SetLattice([b"x"]))
    per_master = {}
    for master in redis_cluster.masters():
        with master.client() as client:
            per_master[master.port] = sum(1 for _ in client.scan_iter(match=f"{store.settings.prefix}*"))
    assert len(per_master) == 3 and all(per_master.values()) and sum(per_master.values()) == 60
    assert store.keys("ns/data/") == [f"ns/data/{i:02d}" for i in range(60)]
    assert store.describe().startswith("redis cluster via 127.0.0.1:")
    store.close()


def test_wait_acknowledges_a_put_once_replicas_have_it_and_refuses_when_they_cannot(redis_cluster):
    store = open_store(redis_cluster, wait_replicas="1")
    store.put("k", SetLattice([b"a"]))
    store.put("l", LwwLattice(1, b"x"))
    assert store.get("k") == SetLattice([b"a"])
    too_many = open_store(redis_cluster, wait_replicas="2", wait_timeout="0.2", prefix=store.settings.prefix)
    with pytest.raises(StoreError, match=r"reached 1 of 2 replicas within 0.2 s .* not acknowledged"):
        too_many.put("k", SetLattice([b"b"]))
    assert store.get("k") == SetLattice([b"a", b"b"])  # applied on the master all the same
    too_many.close()
    store.close()


def _node_id(server) -> str:
    with server.client() as client:
        return client.execute_command("CLUSTER", "MYID").decode()


def test_writers_follow_a_slot_that_moves_to_another_master_ask_then_moved(own_cluster):
    stores = [open_store(own_cluster), open_store(own_cluster, wait_replicas="1")]
    stores[1] = RedisStore({**stores[1].options, "prefix": stores[0].settings.prefix})
    key = "moving"
    rkey = (stores[0].settings.prefix + key).encode()
    with own_cluster.servers[0].client() as client:
        slot = client.execute_command("CLUSTER", "KEYSLOT", rkey)
    source = own_cluster.master_of_slot(slot)
    target = next(m for m in own_cluster.masters() if m.port != source.port)
    for n, store in enumerate(stores):
        store.put(key, SetLattice([b"before-%d" % n]))
    source_id, target_id = _node_id(source), _node_id(target)
    with target.client() as t, source.client() as s:
        t.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        s.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", rkey)
    # the key is on the target now, the slot still the source's: the source answers ASK
    for n, store in enumerate(stores):
        store.put(key, SetLattice([b"asked-%d" % n]))
    with target.client() as t:
        assert t.execute_command("ASKING") and len(t.smembers(rkey)) == 4
    for master in own_cluster.masters():  # the move ends: everyone else answers MOVED
        with master.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    wait_until(lambda: own_cluster.master_of_slot(slot).port == target.port, what="the slot's new owner")
    for n, store in enumerate(stores):
        store.put(key, SetLattice([b"moved-%d" % n]))
    expected = SetLattice(b"%s-%d" % (w, n) for w in (b"before", b"asked", b"moved") for n in range(2))
    assert stores[0].get(key) == expected
    with target.client() as t:
        assert len(t.smembers(rkey)) == 6
    for store in stores:
        store.close()


def test_kill_9_of_a_master_under_concurrent_writers_loses_no_acknowledged_put(own_cluster):
    """Set adds and Lww puts from 8 threads with WAIT 1 and AOF on; one master is killed with SIGKILL while
    they write; after the failover every acknowledged put is there (the report counts what is missing)."""
    store = open_store(own_cluster, wait_replicas="1", wait_timeout="2")
    acked_adds: list[bytes] = []
    acked_lww: dict[str, LwwLattice] = {}
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(t: int) -> None:
        i = 0
        while not stop.is_set() and i < 20_000:
            i += 1
            member = b"%d-%d" % (t, i)
            lww = LwwLattice(i, b"v%d-%d" % (t, i))
            try:
                store.put(f"shared/{i % 4}", SetLattice([member]))
                with lock:
                    acked_adds.append(member)
                store.put(f"lww/{t}/{i % 50}", lww)
                with lock:
                    acked_lww[f"lww/{t}/{i % 50}"] = lww
            except StoreError as exc:  # not acknowledged: it may or may not be there
                with lock:
                    failures.append(str(exc))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acked_adds) > 500, what="500 acknowledged adds")
    # the master of the shared set with the most keys on it
    with own_cluster.servers[0].client() as client:
        slot = client.execute_command("CLUSTER", "KEYSLOT", f"{store.settings.prefix}shared/0")
    victim = own_cluster.master_of_slot(slot)
    victim.kill(signal.SIGKILL)
    at_kill = len(acked_adds)
    wait_until(lambda: own_cluster.healthy(masters=3), what="a replica taking over")
    # The promoted replica has no replica of its own, so WAIT 1 cannot be met on its shard (those puts are
    # refused, not acknowledged) until the killed node comes back, as its replica.
    victim.start()
    wait_until(lambda: own_cluster.healthy(masters=3) and len(own_cluster.roles()) == 6,
               what="the killed node back as a replica")
    wait_until(lambda: len(acked_adds) > at_kill + 500, what="writes going on after the failover")
    stop.set()
    for thread in threads:
        thread.join(READY_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    sets = [store.get(f"shared/{j}") for j in range(4)]
    present = set().union(*(s.values for s in sets if s is not None))
    lost_adds = [m for m in acked_adds if m not in present]
    lost_lww = [k for k, v in acked_lww.items() if store.get(k) is None or store.get(k).timestamp < v.timestamp]
    print(f"\nkill -9 of a master: {len(acked_adds)} Set adds and {len(acked_lww)} Lww keys acknowledged, "
          f"{len(failures)} puts refused during the failover, lost: {len(lost_adds)} adds, {len(lost_lww)} Lww")
    assert all(f.startswith("state store unavailable:") for f in failures), failures[:3]
    assert not lost_adds and not lost_lww
    store.close()


def test_watch_reports_changes_on_every_master_and_follows_a_failover(own_cluster):
    store = open_store(own_cluster)
    seen: queue.Queue = queue.Queue()
    with store.watch("w/", seen.put) as watch:
        keys = [f"w/{i}" for i in range(30)]  # on every master
        for key in keys:
            store.put(key, SetLattice([b"x"]))
        got = {seen.get(timeout=READY_TIMEOUT) for _ in keys}
        assert got == set(keys)
        with own_cluster.servers[0].client() as client:
            slot = client.execute_command("CLUSTER", "KEYSLOT", f"{store.settings.prefix}w/0")
        own_cluster.master_of_slot(slot).kill(signal.SIGKILL)
        wait_until(lambda: own_cluster.healthy(masters=3), what="a replica taking over")
        assert seen.get(timeout=READY_TIMEOUT) is None  # changes may have been missed
        deadline = time.monotonic() + READY_TIMEOUT
        while True:  # the promoted master is watched: a change of w/0 is reported
            store.put("w/0", SetLattice([b"after-%f" % time.monotonic()]))
            try:
                if seen.get(timeout=1.0) == "w/0":
                    break
            except queue.Empty:
                pass
            assert time.monotonic() < deadline, "the new master's changes were never reported"
        assert len(watch._masters) == 3
    store.close()


def test_a_cluster_node_used_as_one_server_is_named(redis_cluster):
    store = RedisStore({"url": redis_cluster.servers[0].url, "cluster": "off", "timeout": "30"})
    with pytest.raises(StoreError, match="is a Redis Cluster node .* cluster=auto"):
        for i in range(20):  # some keys are on this node's slots; the others answer MOVED
            store.put(f"k{i}", SetLattice([b"x"]))
    store.close()
