"""The Anna store against bad input, with real processes: malformed messages, rogue peers, a full disk."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

pytest.importorskip("zenoh")
pytest.importorskip("essa_anna")

from essa.state.bincode import decode_lattice, encode_lattice  # noqa: E402
from essa.state.lattice import LwwLattice, SetLattice  # noqa: E402
from essa_anna import AnnaError  # noqa: E402
from essa_anna import protocol as P  # noqa: E402
from essa_anna.ring import Ring  # noqa: E402
from essa_anna.storage import LmdbBackend  # noqa: E402

from .helpers import READY_TIMEOUT, AnnaCluster, RawPeer, rss_bytes, traceback_free, wait_until  # noqa: E402

# -- malformed messages ---------------------------------------------------------------------

BAD_TOPICS = ["", "a//b", "$*", "**", "/x", "anna/client/", "anna/client/a/b", "essa/scheduler/calls", 7, None,
              ["anna/client/raw"], "anna/kvs/n0/99999"]
BAD_VALUES = [None, True, -1, 2**64 - 1, -2**63, 1.5, "", "x", b"\xff", [], [[]], {}, {"a": 1}, [1, 2, 3], "a//b", "$*",
              "k" * 70000, [None] * 5, [[1, "g", 5, None, "a"]], [["k", 1]], [[1, 2]]]
KINDS = ["req", "repl", "gossip", "ack", "fetch", "fetched", "addr", "resp", "???", None, 3]
FIELDS = ["t", "reply", "ops", "kv", "id", "from", "failed", "keys", "r", "owners"]


def fuzz_message(rng: random.Random):
    """Random garbage shaped more or less like an anna message."""
    roll = rng.random()
    if roll < 0.1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 40)))  # not msgpack at all
    if roll < 0.2:
        return rng.choice(BAD_VALUES)  # msgpack, not a map
    message = {"t": rng.choice(KINDS)}
    for field in rng.sample(FIELDS, rng.randrange(0, 5)):
        message[field] = rng.choice(BAD_VALUES + BAD_TOPICS)
    if rng.random() < 0.5:
        message["reply"] = rng.choice(BAD_TOPICS + ["anna/client/raw"])
    if rng.random() < 0.4:  # operations with one bad field each
        op = [rng.randrange(10**6, 10**7), "p", "k", b"v", "a"]
        op[rng.randrange(5)] = rng.choice(BAD_VALUES)
        message["ops"] = [op]
    return message


def test_malformed_messages_cost_one_line_and_no_good_request_its_answer(tmp_path):
    cluster = AnnaCluster(tmp_path / "logs", replication=1)
    peer = None
    try:
        cluster.start(1, "--workers", "2")
        peer = RawPeer(cluster.endpoint)
        ring = Ring({"n0": 2}, 1, 1)
        good = encode_lattice(SetLattice([b"ok"]))

        def worker_of(key: str) -> str:
            return P.worker_topic(*ring.owners(key)[0])

        # Wait until the peer's publications reach both workers (zenoh drops them before that).
        probes = {P.worker_topic(*ring.owners(f"probe/{i}")[0]): i for i in range(64)}
        assert len(probes) == 2

        def reachable() -> bool:
            for topic, i in probes.items():
                peer.send(topic, {"t": "req", "reply": peer.inbox, "ops": [[-1 - i, "p", f"probe/{i}", good, "a"]]})
            return all(-1 - i in peer.answers for i in probes.values())

        assert wait_until(reachable, READY_TIMEOUT, 0.2), cluster.log_text()

        rng = random.Random(1234)
        expected: dict[int, int] = {}
        rid = 1
        topics = [P.worker_topic("n0", 0), P.worker_topic("n0", 1), P.routing_topic("r0")]
        for round_ in range(60):
            for _ in range(40):
                peer.send(rng.choice(topics), fuzz_message(rng))
            key = f"good/{round_}"
            # a bad reply topic right before a good request: in the same batch of the same worker
            for bad in ("", "a//b", "$*"):
                peer.send(worker_of(key), {"t": "req", "reply": bad, "ops": [[rid, "p", key, good, "a"]]})
                rid += 1
            # one request mixing good and bad operations: the good ones are answered OK, the bad ones an error
            ops = [[rid, "p", key, good, "a"], [rid + 1, "p", 12345, good, "a"], [rid + 2, "g", key, None, "a"],
                   [rid + 3, "x", key, None, "a"], [rid + 4, "p", key, "not bytes", "a"]]
            expected.update({rid: P.OK, rid + 1: P.ERROR, rid + 2: P.OK, rid + 3: P.ERROR, rid + 4: P.ERROR})
            rid += 5
            peer.send(worker_of(key), {"t": "req", "reply": peer.inbox, "ops": ops})

        assert wait_until(lambda: set(expected) <= set(peer.answers), READY_TIMEOUT), \
            sorted(set(expected) - set(peer.answers))[:20]
        assert {r: peer.answers[r][0] for r in expected} == expected
        # the cluster still works for a normal client, and nothing printed a traceback
        client = cluster.client()
        client.put("after", good)
        assert client.get("after") == good
        assert client.get("good/59") == good
        traceback_free(cluster)
        logs = cluster.log_text()
        assert "malformed" in logs
        assert logs.count("\n") < 400, logs  # one line per kind of problem, rate-limited
    finally:
        if peer is not None:
            peer.close()
        cluster.stop()


# -- rogue liveliness tokens ------------------------------------------------------------------


ROGUE_TOKENS = [
    "anna/live/kvs/rogue0/i0/0/2/1",  # no workers
    "anna/live/kvs/rogue1/i1/1500/2/1",  # far too many workers
    "anna/live/kvs/rogue2/i2/garbage/2/1",
    "anna/live/kvs/rogue3/i3/1/0/1",  # no replication
    "anna/live/kvs/rogue4/i4/1/100000/1",
    "anna/live/kvs/rogue5/i5/1/2/0",
    "anna/live/kvs/rogue6/i6/1/2",  # too short
    "anna/live/kvs/n0/i7/0/2/1",  # a real node's id with workers=0
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc")
def test_rogue_liveliness_tokens_change_nothing_about_ownership(tmp_path):
    cluster = AnnaCluster(tmp_path / "logs")
    peer = None
    try:
        cluster.start(3)
        names = ["routing", "kvs-n0", "kvs-n1", "kvs-n2"]
        before = {name: rss_bytes(cluster.procs[name].pid) for name in names}
        peer = RawPeer(cluster.endpoint)
        for key in ROGUE_TOKENS:
            peer.token(key)
        # every process says it ignored them (the readiness signal that they arrived)
        for name in names:
            log = cluster.logs / f"{name}.log"
            assert wait_until(lambda: "ignoring a KVS liveliness token" in log.read_text()), cluster.log_text()
        client = cluster.client()
        keys = {f"rogue/{i}": encode_lattice(SetLattice([b"%d" % i])) for i in range(60)}
        client.put_many(keys.items())
        for key, value in keys.items():
            owners = client.owners(key)
            assert len({node for node, _w in owners}) == 2 and {node for node, _w in owners} <= {"n0", "n1", "n2"}
            assert all(client.fetch(owner, [key])[key] == value for owner in owners)
        status = cluster.status()
        assert set(status) == {"n0", "n1", "n2"}
        assert all(s["ring"] == ["n0", "n1", "n2"] for s in status.values())
        routing = [a for a in client.status() if a["role"] == "routing"]
        assert routing and set(routing[0]["kvs_nodes"]) == {"n0", "n1", "n2"}
        for name in names:
            grown = rss_bytes(cluster.procs[name].pid) - before[name]
            assert grown < 64 << 20, f"{name} grew by {grown >> 20} MiB"
        # every key has two copies: losing one node loses nothing
        cluster.kill("kvs-n1")
        assert client.get_many(keys) == list(keys.values())
        traceback_free(cluster)
        for name in names:
            assert (cluster.logs / f"{name}.log").read_text().count("ignoring a KVS liveliness token") <= 2
    finally:
        if peer is not None:
            peer.close()
        cluster.stop()


# -- acknowledged means durable -------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 2 MiB tmpfs (root on Linux only): commits into it fail once it is full."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def durable_node(tmp_path, data) -> AnnaCluster:
    """A routing node and one durable KVS node ``d0`` keeping its data in ``data`` (replication 1)."""
    cluster = AnnaCluster(tmp_path / "logs", replication=1)
    try:
        cluster.routing()
        cluster.kvs("d0", "--path", str(data))
        cluster.wait_for_nodes(1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def restart(cluster: AnnaCluster, data) -> None:
    """SIGKILL ``d0`` (nothing but its disk survives) and start it again on ``data``."""
    cluster.kill("kvs-d0")
    cluster.kvs("d0", "--path", str(data))
    cluster.wait_for_nodes(1)


def test_every_acknowledged_put_survives_a_full_disk_and_sigkill(tmp_path, tiny_tmpfs):
    data = tiny_tmpfs / "d0"
    cluster = durable_node(tmp_path, data)
    try:
        client = cluster.client()
        rng = random.Random(5)
        acked: dict[str, bytes] = {}
        errors: list[str] = []
        retried = 0
        for i in range(320):
            key = f"full/{i}"
            value = encode_lattice(LwwLattice.now(rng.randbytes(8192)))
            for attempt in range(3):  # the README says retrying a put is safe
                try:
                    client.put(key, value)
                except AnnaError as exc:
                    errors.append(str(exc))
                    continue
                acked[key] = value
                retried += attempt > 0
                break
        assert errors, "the disk never filled up"
        assert acked
        restart(cluster, data)  # SIGKILL: nothing but the disk survives
        fresh = cluster.client()
        values = dict(zip(acked, fresh.get_many(acked)))
        lost = [k for k, v in values.items() if v != acked[k]]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged puts lost ({retried} acknowledged on a retry)"
        assert all(decode_lattice(v) for v in values.values())
        # the errors name the problem
        assert any("is full" in e for e in errors), errors[:5]
        assert not any("Input/output error" in e for e in errors), errors[:5]
        traceback_free(cluster)
    finally:
        cluster.stop()


def test_acknowledged_members_of_a_big_set_survive_a_full_disk_and_sigkill(tmp_path, tiny_tmpfs):
    """Adds into one big set (kept per member, in memory and on disk) until the disk is full."""
    data = tiny_tmpfs / "d0"
    cluster = durable_node(tmp_path, data)
    try:
        client = cluster.client()
        rng = random.Random(7)
        acked: set[bytes] = set()
        refused = 0
        for i in range(400):
            member = b"%05d" % i + rng.randbytes(6000)
            for _attempt in range(2):
                try:
                    client.put("big", encode_lattice(SetLattice([member])))
                except AnnaError:
                    refused += 1
                    continue
                acked.add(member)
                break
        assert refused, "the disk never filled up"
        stored = decode_lattice(client.get("big")).values
        assert stored == acked  # memory never ran ahead of the disk
        restart(cluster, data)
        recovered = cluster.client().get("big")
        assert recovered == encode_lattice(SetLattice(acked))
        traceback_free(cluster)
    finally:
        cluster.stop()


def test_a_big_set_of_a_durable_node_comes_back_byte_identical(tmp_path):
    data = tmp_path / "d0"
    cluster = durable_node(tmp_path, data)
    try:
        client = cluster.client()
        members = [b"%05d" % i + b"m" * (i % 600) for i in range(1500)]
        for i in range(0, len(members), 50):
            client.put("big", encode_lattice(SetLattice(members[i:i + 50])))
        client.put("small", encode_lattice(SetLattice([b"s"])))
        expected = encode_lattice(SetLattice(members))
        assert client.get("big") == expected
        restart(cluster, data)
        fresh = cluster.client()
        assert fresh.get("big") == expected
        assert fresh.get("small") == encode_lattice(SetLattice([b"s"]))
        fresh.put("big", encode_lattice(SetLattice([b"after"])))
        assert fresh.get("big") == encode_lattice(SetLattice([*members, b"after"]))
    finally:
        cluster.stop()


def test_a_primary_whose_commit_failed_does_not_acknowledge(tmp_path, tiny_tmpfs):
    """ack=all, replication 2: the primary's disk is full, its replica's is not; no put is acknowledged wrongly."""
    cluster = AnnaCluster(tmp_path / "logs", replication=2)
    try:
        cluster.routing()
        cluster.kvs("full", "--path", str(tiny_tmpfs / "full"))
        cluster.kvs("roomy", "--path", str(tmp_path / "roomy"))
        cluster.wait_for_nodes(2)
        client = cluster.client()
        rng = random.Random(6)
        acked: dict[str, bytes] = {}
        refused = 0
        for i in range(320):
            key = f"both/{i}"
            value = encode_lattice(LwwLattice.now(rng.randbytes(8192)))
            try:
                client.put(key, value)
            except AnnaError:
                refused += 1
                continue
            acked[key] = value
        cluster.kill("kvs-full")
        cluster.kill("kvs-roomy")
        # every acknowledged put is on both disks
        for path in (tiny_tmpfs / "full", tmp_path / "roomy"):
            backend = LmdbBackend(path)
            try:
                stored = dict(backend.load())
            finally:
                backend.close()
            lost = [k for k in acked if stored.get(k) != acked[k]]
            assert not lost, f"{path.name}: {len(lost)} of {len(acked)} acknowledged puts are not on its disk"
        assert refused, "the small disk never filled up"
        assert acked
        traceback_free(cluster)
    finally:
        cluster.stop()
