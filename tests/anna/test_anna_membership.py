"""Forged KVS membership on a plain cluster, with real processes and a real rogue zenoh peer.

The rogue declares liveliness tokens of nodes that do not exist, tokens that
claim to be a live node (with another incarnation, or with the node's very
own token) and withdraws them. The routing node, the KVS nodes and the
client must keep their rings, their memory and their puts and gets.

Every wait is on a readiness signal: after its forged tokens, the rogue
declares a malformed *marker* token, and each process logs one line for it.
zenoh delivers one peer's declarations in order, so once a process logged the
marker it has been told of everything the rogue did before.
"""

from __future__ import annotations

import sys
import time

import pytest

pytest.importorskip("zenoh")
pytest.importorskip("essa_anna")

from essa.state.bincode import encode_lattice  # noqa: E402
from essa.state.lattice import SetLattice  # noqa: E402
from essa_anna import protocol as P  # noqa: E402

from .helpers import READY_TIMEOUT, AnnaCluster, RawPeer, rss_bytes, traceback_free, wait_until  # noqa: E402

NAMES = ["routing", "kvs-n0", "kvs-n1", "kvs-n2"]
REAL = {"n0", "n1", "n2"}
#: A malformed token (no numbers): each process logs one line when it arrives.
MARKER = "anna/live/kvs/marker"
#: The marker can take long to arrive at a process busy with what came before it (the old
#: membership rebuilt its rings once per forged token).
MARKER_TIMEOUT = 300.0


def wait_for_marker(cluster: AnnaCluster, peer: RawPeer) -> None:
    """Declare the marker; wait until every process logged it (so it saw all the peer did before)."""
    peer.token(MARKER)
    for name in NAMES:
        log = cluster.logs / f"{name}.log"
        assert wait_until(lambda: MARKER in log.read_text(), MARKER_TIMEOUT), cluster.log_text()


def assert_rings(cluster: AnnaCluster, client, nodes: set[str]) -> None:
    """Every KVS node, the routing node and ``client`` use exactly ``nodes``."""
    status = {a["id"]: a for a in client.status(timeout=10.0) if a["role"] in ("kvs", "routing")}
    rings = {node: set(a["ring"] if a["role"] == "kvs" else a["kvs_nodes"]) for node, a in status.items()}
    assert rings == {node: nodes for node in [*REAL, "r0"]}, rings
    assert set(client.membership.kvs) == nodes


def assert_puts_and_gets(client, tag: str, keys: int = 60) -> None:
    """``keys`` puts and gets succeed, and every key is held by two real nodes."""
    values = {f"{tag}/{i}": encode_lattice(SetLattice([b"%d" % i])) for i in range(keys)}
    client.put_many(values.items())
    assert client.get_many(values) == list(values.values())
    for key, value in values.items():
        owners = client.owners(key)
        assert {node for node, _w in owners} <= REAL and len({node for node, _w in owners}) == 2
        assert all(client.fetch(owner, [key])[key] == value for owner in owners)


def primaries_on(client, node: str, count: int = 20) -> list[str]:
    """``count`` keys whose primary owner is ``node``."""
    keys: list[str] = []
    i = 0
    while len(keys) < count:
        key = f"on-{node}/{i}"
        if client.owners(key)[0][0] == node:
            keys.append(key)
        i += 1
    return keys


@pytest.fixture
def cluster(tmp_path):
    cluster = AnnaCluster(tmp_path / "logs")
    peer = None
    try:
        cluster.start(3)
        client = cluster.client()
        client.wait_for_nodes(3, READY_TIMEOUT)
        peer = RawPeer(cluster.endpoint)
        yield cluster, peer, client
    finally:
        if peer is not None:
            peer.close()
        cluster.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc")
def test_a_flood_of_forged_kvs_tokens_changes_no_ring_and_no_memory(cluster):
    cluster, peer, client = cluster
    before = {name: rss_bytes(cluster.procs[name].pid) for name in NAMES}
    started = time.monotonic()
    forged = [f"anna/live/kvs/ghost{i}/g{i}/{P.MAX_WORKERS}/2/1" for i in range(600)]
    for key in forged:
        peer.token(key)
    wait_for_marker(cluster, peer)
    # No forged node answers for its token: none enters any ring, and puts and gets go on.
    assert_rings(cluster, client, REAL)
    assert_puts_and_gets(client, "flood")
    from essa_anna.membership import Limits

    claims = Limits().claims
    status = [a for a in client.status(timeout=10.0) if a["role"] in ("kvs", "routing")]
    assert len(status) == 4 and all(a["unproven_tokens"] == claims for a in status), status
    assert client.membership.unproven() == claims
    for name in NAMES:
        grown = rss_bytes(cluster.procs[name].pid) - before[name]
        assert grown < 32 << 20, f"{name} grew by {grown >> 20} MiB"
    # The tokens beyond what a process keeps waiting for their proof cost one line per 10 s.
    lines = 2 + int(time.monotonic() - started) // 10
    for name in NAMES:
        text = (cluster.logs / f"{name}.log").read_text()
        refused = text.count("tokens already wait for their node to answer")
        assert 1 <= refused <= lines, text
        assert "KVS node ghost" not in text, text  # none joined
    # Withdrawn, the claims are forgotten.
    for key in forged:
        peer.withdraw(key)
    assert wait_until(lambda: all(a["unproven_tokens"] == 0 for a in client.status(timeout=10.0)
                                  if a["role"] in ("kvs", "routing")))
    assert wait_until(lambda: client.membership.unproven() == 0)
    traceback_free(cluster)


def test_a_withdrawn_token_of_another_incarnation_does_not_evict_a_live_node(cluster):
    cluster, peer, client = cluster
    n0 = client.membership.kvs["n0"]
    on_n0 = primaries_on(client, "n0")
    # The same node id with another incarnation, and 64 workers where n0 has 1.
    forged = f"anna/live/kvs/n0/forged/{P.MAX_WORKERS}/{n0.global_replication}/{n0.local_replication}"
    peer.token(forged)
    peer.withdraw(forged)
    wait_for_marker(cluster, peer)
    assert_rings(cluster, client, REAL)
    assert client.membership.kvs["n0"] == n0
    assert_puts_and_gets(client, "other-incarnation")
    values = {key: encode_lattice(SetLattice([b"n0"])) for key in on_n0}
    client.put_many(values.items())
    assert client.get_many(values) == list(values.values())
    traceback_free(cluster)


def test_a_copy_of_a_live_nodes_own_token_withdrawn_does_not_evict_it(cluster):
    cluster, peer, client = cluster
    n0 = client.membership.kvs["n0"]
    on_n0 = primaries_on(client, "n0")
    # The very key n0 holds. zenoh counts holders for the other processes (no withdrawal is
    # reported to them), but tells n0 itself that its key was withdrawn.
    peer.token(P.kvs_token(n0))
    peer.withdraw(P.kvs_token(n0))
    wait_for_marker(cluster, peer)
    assert_rings(cluster, client, REAL)
    assert client.membership.kvs["n0"] == n0
    values = {key: encode_lattice(SetLattice([b"n0"])) for key in on_n0}
    client.put_many(values.items())
    assert client.get_many(values) == list(values.values())
    assert_puts_and_gets(client, "same-incarnation")
    # n0 checked: it still holds the token, so it stays (and says so, once).
    log = cluster.logs / "kvs-n0.log"
    assert wait_until(lambda: "was reported withdrawn but its node still holds it" in log.read_text())
    assert_rings(cluster, client, REAL)
    traceback_free(cluster)


def test_forged_leaving_and_routing_tokens_change_nothing(cluster):
    """A leaving token for a live node (everybody used to drop it from the rings at once) and
    routing tokens of routing nodes that do not exist (clients used to send address requests
    to them) are never proven."""
    cluster, peer, client = cluster
    peer.token(f"{P.LIVE_LEAVING}/n0")
    for i in range(20):
        peer.token(f"{P.LIVE_ROUTING}/ghost{i}")
    wait_for_marker(cluster, peer)
    fresh = cluster.client()  # learns every token at once, forged ones included
    fresh.wait_for_nodes(3)
    for c in (client, fresh):
        assert c.membership.leaving == set() and c.membership.routing == {"r0"}
    assert_rings(cluster, client, REAL)
    assert_puts_and_gets(fresh, "leaving-and-routing")
    status = [a for a in client.status(timeout=10.0) if a["role"] == "routing"]
    assert status and status[0]["routing_nodes"] == ["r0"] and status[0]["leaving"] == []
    traceback_free(cluster)


def test_forged_nodes_that_answer_pings_enter_the_ring_only_up_to_the_limits(tmp_path):
    """A rogue speaking the protocol (it answers pings for its tokens) gets at most the limits."""
    from essa_anna.membership import Limits

    cluster = AnnaCluster(tmp_path / "logs")
    cluster.env = {"ESSA_ANNA_MAX_NODES": "6", "ESSA_ANNA_MAX_WORKERS": "70"}
    peer = None
    try:
        cluster.start(3)
        client = cluster.client(limits=Limits(6, 70))
        client.wait_for_nodes(3, READY_TIMEOUT)
        peer = RawPeer(cluster.endpoint)

        def forge(*keys: str) -> None:
            for key in keys:
                peer.answer_pings(key)
                peer.token(key)

        def refused(text: str) -> None:
            """Wait until every process refused a forged node with a line containing ``text``."""
            for name in NAMES:
                log = cluster.logs / f"{name}.log"
                assert wait_until(lambda: text in log.read_text()), cluster.log_text()

        def rings() -> list[dict[str, int]]:
            """The ring of each KVS node, the routing node and the client: node -> workers."""
            status = [a for a in client.status(timeout=10.0) if a["role"] in ("kvs", "routing")]
            assert len(status) == 4
            nodes = [a["ring"] if a["role"] == "kvs" else a["kvs_nodes"] for a in status] + [client.membership.kvs]
            return [{n: 64 if n.startswith("big") else 1 for n in ring} for ring in nodes]

        started = time.monotonic()
        # 3 real nodes of 1 worker, then two of 64: one fits (67 workers), the other would make 131.
        forge("anna/live/kvs/big0/b0/64/2/1", "anna/live/kvs/big1/b1/64/2/1")
        refused("its 64 workers would make 131 in the ring, over the most allowed 70")
        assert wait_until(lambda: len(client.membership.kvs) == 4)
        # Then four of 1 worker: two fit (6 nodes, 69 workers), two do not.
        forge(*(f"anna/live/kvs/small{i}/s{i}/1/2/1" for i in range(4)))
        refused("the ring already has 6 nodes, the most allowed")
        assert wait_until(lambda: len(client.membership.kvs) == 6)
        for ring in rings():
            assert len(ring) <= 6 and sum(ring.values()) <= 70 and REAL <= set(ring), ring
            assert len([n for n in ring if n.startswith("big")]) == 1, ring
        lines = 2 * (2 + int(time.monotonic() - started) // 10)  # two kinds, one line each per 10 s
        for name in NAMES:
            text = (cluster.logs / f"{name}.log").read_text()
            assert text.count("refusing KVS node") <= lines, text
        traceback_free(cluster)
    finally:
        if peer is not None:
            peer.close()
        cluster.stop()


def test_a_client_recovers_from_the_death_of_an_owner_it_never_saw_prove_itself(tmp_path):
    """The routing node may send a client to a node the client's membership does not hold (not
    proven to it yet, or refused by its limits): when that node dies, the client asks again."""
    from essa_anna.membership import Limits

    cluster = AnnaCluster(tmp_path / "logs")
    try:
        cluster.start(3)
        client = cluster.client(limits=Limits(nodes=2))  # it will never hold the third node
        client.wait_for_nodes(2, READY_TIMEOUT)
        assert wait_until(lambda: client.membership.unproven() == 1)  # the third, refused
        (unknown,) = REAL - set(client.membership.kvs)
        values = {f"unknown/{i}": encode_lattice(SetLattice([b"%d" % i])) for i in range(60)}
        client.put_many(values.items())
        assert client.get_many(values) == list(values.values())  # owners cached, some on the unknown node
        assert any(client.owners(key)[0][0] == unknown for key in values)
        cluster.kill(f"kvs-{unknown}")
        # Puts go to the cached primary: for some keys the dead node.
        client.put_many((key, encode_lattice(SetLattice([b"late"]))) for key in values)
        assert client.get_many(values) == [encode_lattice(SetLattice([b"%d" % i, b"late"])) for i in range(60)]
    finally:
        cluster.stop()
