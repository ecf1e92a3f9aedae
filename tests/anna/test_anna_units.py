"""Anna pieces without processes: the rings, the token format, store options, essa up's services."""

from __future__ import annotations

import collections

import pytest

pytest.importorskip("essa_anna")

from essa_anna import protocol as P  # noqa: E402
from essa_anna.errors import AnnaError, Malformed  # noqa: E402
from essa_anna.ring import VIRTUAL_NODES, NodeInfo, Ring, hash64  # noqa: E402
from essa_anna.store import AnnaStore  # noqa: E402

KEYS = [f"key/{i}" for i in range(3000)]


def test_hash_is_stable_across_processes_and_versions():
    # BLAKE2b-64 little endian; the value is part of the wire contract between nodes
    assert hash64("") == int.from_bytes(bytes.fromhex("e4a6a0577479b2b4"), "little")
    assert hash64("anna") == hash64(b"anna")


def test_owners_are_distinct_nodes_then_workers_and_deterministic():
    ring = Ring({"a": 2, "b": 2, "c": 1}, global_replication=2, local_replication=2)
    for key in KEYS[:200]:
        owners = ring.owners(key)
        nodes = [n for n, _w in owners]
        assert len(set(nodes)) == 2
        assert len(owners) == sum(min(2, {"a": 2, "b": 2, "c": 1}[n]) for n in set(nodes))
        assert owners == Ring({"c": 1, "b": 2, "a": 2}, 2, 2).owners(key)  # order of construction is irrelevant


def test_keys_spread_evenly_over_nodes_and_workers():
    ring = Ring({f"n{i}": 4 for i in range(4)}, 1, 1)
    per_node = collections.Counter(ring.owners(k)[0][0] for k in KEYS)
    per_worker = collections.Counter(ring.owners(k)[0] for k in KEYS)
    assert all(600 < n < 900 for n in per_node.values()), per_node
    assert all(100 < n < 300 for n in per_worker.values()), per_worker


def test_replication_is_capped_by_the_members():
    assert len(Ring({"a": 1}, 3, 1).owners("k")) == 1
    assert len(Ring({"a": 1, "b": 1}, 3, 5).owners("k")) == 2
    assert Ring({}, 2, 1).owners("k") == ()


def test_a_joining_node_takes_keys_only_from_others():
    before = Ring({"a": 1, "b": 1, "c": 1}, 2, 1)
    after = Ring({"a": 1, "b": 1, "c": 1, "d": 1}, 2, 1)
    moved = 0
    for key in KEYS:
        old, new = set(before.owner_nodes(key)), set(after.owner_nodes(key))
        assert new - old <= {"d"}  # consistent hashing: only the new node gains keys
        moved += "d" in new
    assert 0.35 < moved / len(KEYS) < 0.65  # about 2/4 of the keys get a copy on d


def test_token_round_trip_and_ring_from_members():
    info = NodeInfo("kvs-1", "abcd", 4, 2, 1)
    assert P.parse_kvs_token(P.kvs_token(info)) == info
    for bad in ("anna/live/kvs/x", "anna/live/kvs/n/i/0/2/1", "anna/live/kvs/n/i/1500/2/1", "anna/live/kvs/n/i/1/0/1",
                "anna/live/kvs/n/i/1/99/1", "anna/live/kvs/n/i/garbage/2/1", "anna/live/kvs/n/i/\u00b2/2/1",
                "anna/live/kvs/n/i/-1/2/1", "anna/live/kvs/n$/i/1/2/1", "anna/live/kvs/n/i/1/2/1000000000000"):
        with pytest.raises(Malformed):
            P.parse_kvs_token(bad)
    ring = Ring.from_members([info, NodeInfo("kvs-2", "ef", 1, 3, 1)])
    assert ring.global_replication == 3 and ring.nodes == {"kvs-1": 4, "kvs-2": 1}
    with pytest.raises(ValueError):
        P.check_id("a/b")


def test_store_options_are_checked():
    with pytest.raises(AnnaError, match="unknown anna store option 'nope'"):
        AnnaStore({"nope": "1"})
    with pytest.raises(AnnaError, match="kvs_nodes.*essa up"):
        AnnaStore({"kvs_nodes": "3"})
    with pytest.raises(AnnaError, match="timeout"):
        AnnaStore({"timeout": "soon"})


def test_cluster_services_start_a_routing_node_and_kvs_nodes():
    services = AnnaStore.cluster_services({"kvs_nodes": "2", "global_replication": "2", "ack": "owner",
                                           "path": "/data"}, "tcp/127.0.0.1:7447")
    assert services.options == {"ack": "owner", "routing": "tcp/127.0.0.1:7447"}
    assert [c[:2] for c in services.commands] == [["anna", "routing"], ["anna", "kvs"], ["anna", "kvs"]]
    assert "--path" in services.commands[2] and "/data/kvs-1" in services.commands[2]
    assert all("tcp/127.0.0.1:7447" in c for c in services.commands)
    # Beside essa's default scheduler endpoint, routing listens on anna's default (`essa anna status` finds it).
    assert services.endpoints == {"anna routing": "tcp/127.0.0.1:7450"}
    assert services.commands[0][-2:] == ["--listen", "tcp/127.0.0.1:7450"]
    elsewhere = AnnaStore.cluster_services({}, "tcp/127.0.0.1:17447")
    routing = elsewhere.endpoints["anna routing"]
    assert routing.startswith("tcp/127.0.0.1:") and routing != "tcp/127.0.0.1:7450"
    external = AnnaStore.cluster_services({"routing": "tcp/10.0.0.5:7450"}, "tcp/127.0.0.1:7447")
    assert external.commands == [] and external.options == {"routing": "tcp/10.0.0.5:7450"}
    with pytest.raises(AnnaError, match="cannot be combined"):
        AnnaStore.cluster_services({"routing": "tcp/10.0.0.5:7450", "kvs_nodes": "2"}, "tcp/127.0.0.1:7447")


def test_replies_go_only_to_anna_inboxes():
    from essa_anna import inbound

    for good in ("anna/client/abc123", "anna/kvs/n0/0", "anna/kvs/node-1.x/63"):
        assert inbound.reply_topic(good) == good
    for bad in ("", "a//b", "$*", "**", "anna/client/", "anna/client/a/b", "anna/kvs/n0/64", "anna/kvs/n0/-1",
                "essa/scheduler/calls", "anna/client/a*", None, 7, ["anna/client/x"]):
        with pytest.raises(Malformed):
            inbound.reply_topic(bad)


def test_a_request_keeps_its_good_operations_and_names_the_bad_ones():
    from essa_anna import inbound

    checked = inbound.worker_message({"t": "req", "reply": "anna/client/c", "ops": [
        [1, "p", "k", b"v", "a"], [2, "p", 5, b"v", "a"], [3, "g", "k", None, "o"], [4, "p", "k", "text", "a"],
        [5, "z", "k", None, "a"], ["x" * 100, "g", "k", None, "a"], "junk"]})
    assert checked["ops"] == [(1, "p", "k", b"v", "a"), (3, "g", "k", None, "o")]
    assert [rid for rid, _reason in checked["bad"]] == [2, 4, 5]
    with pytest.raises(Malformed, match="reply topic"):
        inbound.worker_message({"t": "req", "ops": []})
    with pytest.raises(Malformed, match="at most"):
        inbound.worker_message({"t": "gossip", "kv": [["k", b"v"]] * (inbound.MAX_ITEMS + 1)})


def test_a_batch_answering_many_requests_of_one_client_is_sent_in_bounded_messages():
    """40,000 answers for one client (a loaded worker's batch) go out in messages the client accepts."""
    from types import SimpleNamespace

    from essa_anna.inbound import MAX_ITEMS
    from essa_anna.kvs import Worker

    published = []
    node = SimpleNamespace(info=SimpleNamespace(id="n1"),
                           transport=SimpleNamespace(publish=lambda topic, message: published.append((topic, message))))
    worker = Worker(node, 0)
    worker._answers = {"anna/inbox/c1": [[rid, 0, None] for rid in range(40000)]}
    worker._flush()
    assert {topic for topic, _message in published} == {"anna/inbox/c1"}
    sizes = [len(message["r"]) for _topic, message in published]
    assert max(sizes) <= MAX_ITEMS
    assert [answer[0] for _topic, message in published for answer in message["r"]] == list(range(40000))


# -- compact rings ---------------------------------------------------------------------------


def test_ring_successors_are_the_first_distinct_members_clockwise():
    """The compact ring's precomputed successors match a walk round the ring, wrap-around included."""
    import random
    from bisect import bisect_right

    from essa_anna.ring import _HashRing

    rng = random.Random(5)
    for count, want in ((1, 2), (2, 2), (3, 1), (5, 3), (9, 16)):
        members = [f"m{i}" for i in range(count)]
        ring = _HashRing(members, lambda m, i: f"{m}#{i}", want, 50)
        entries = sorted((hash64(f"{m}#{i}"), m) for m in members for i in range(50))
        probes = [rng.getrandbits(64) for _ in range(500)] + [0, 2**64 - 1] + [p for p, _m in entries]
        for h in probes:
            start = bisect_right([p for p, _m in entries], h) % len(entries)
            walk: list[str] = []
            for j in range(len(entries)):
                m = entries[(start + j) % len(entries)][1]
                if m not in walk:
                    walk.append(m)
            assert ring.lookup(h) == tuple(walk[:want]), (count, want, h)


def test_a_ring_at_the_default_limit_stays_small():
    """256 nodes at 3000 entries each: about 13 MiB (a list of positions and a tuple per entry
    took 81 MiB)."""
    import sys

    from essa_anna.ring import _HashRing

    ring = _HashRing([f"node-{i}" for i in range(P.MAX_NODES)], lambda n, i: f"{n}#{i}", 2, VIRTUAL_NODES)
    held = (sys.getsizeof(ring.positions) + sys.getsizeof(ring.index) + sys.getsizeof(ring.table)
            + sum(map(sys.getsizeof, ring.table)))
    assert len(ring.positions) == P.MAX_NODES * VIRTUAL_NODES
    assert held < 16 << 20, f"{held / 2**20:.1f} MiB"


# -- membership: tokens count once their node proves them (an in-process transport) ----------


def _kvs_key(node: str, incarnation: str = "i1", workers: int = 1) -> str:
    return P.kvs_token(NodeInfo(node, incarnation, workers, 2, 1))


class _Nodes:
    """Nodes on a local transport: each answers pings with the tokens it holds."""

    def __init__(self, transport) -> None:
        self.transport = transport
        self.held: dict[str, list[str]] = {}
        self.tokens: dict[str, object] = {}

    def start(self, node: str, incarnation: str = "i1", workers: int = 1) -> str:
        key = _kvs_key(node, incarnation, workers)
        if node not in self.held:
            self.held[node] = []
            self.transport.serve(P.ping_topic("kvs", node), lambda _q, node=node: {"tokens": self.held[node]})
        self.held[node].append(key)
        self.tokens[key] = self.transport.declare_token(key)
        return key

    def stop(self, key: str) -> None:
        self.held[key.split("/")[3]].remove(key)
        self.tokens.pop(key).close()


@pytest.fixture
def local():
    from essa.transport.local import LocalTransport

    from .helpers import wait_until

    transport = LocalTransport()
    memberships = []

    def membership(**kwargs):
        from essa_anna.membership import Membership

        memberships.append(Membership(transport, **kwargs))
        return memberships[-1]

    yield transport, _Nodes(transport), membership, wait_until
    for m in memberships:
        m.close()


def test_a_token_counts_once_its_node_answers_for_it(local):
    transport, nodes, membership, wait_until = local
    m = membership()
    transport.declare_token(_kvs_key("ghost"))  # nobody answers for it
    nodes.start("a")
    assert wait_until(lambda: set(m.kvs) == {"a"})
    # the ghost was asked in the same round (or before) and stays a claim
    assert "ghost" not in m.kvs and m.unproven() == 1
    nodes.start("b")
    assert wait_until(lambda: set(m.kvs) == {"a", "b"})
    assert "ghost" not in m.kvs


def test_no_withdrawal_removes_a_node_that_still_holds_its_token(local):
    transport, nodes, membership, wait_until = local
    m = membership()
    live = nodes.start("a", "live")
    assert wait_until(lambda: "a" in m.kvs)
    # A token of another incarnation comes and goes: it never counted, its withdrawal changes nothing.
    forged = transport.declare_token(_kvs_key("a", "forged", 64))
    forged.close()
    # zenoh tells the session holding a key that it was withdrawn when another session
    # declaring the same key withdraws it (as the transport would report it): the node still
    # lists it, so it stays. The round that proves b began after that report and checked it.
    m._token_changed(live, False)
    nodes.start("b")
    assert wait_until(lambda: "b" in m.kvs)
    assert m.kvs["a"].incarnation == "live" and m.kvs["a"].workers == 1 and "a" not in m.departed
    # A restart: the new incarnation replaces the old one, whose withdrawal then changes nothing.
    restarted = nodes.start("a", "new")
    assert wait_until(lambda: m.kvs["a"].incarnation == "new")
    nodes.stop(live)
    assert m.kvs["a"].incarnation == "new"
    # The node goes: removed.
    nodes.stop(restarted)
    assert wait_until(lambda: "a" not in m.kvs)
    assert "a" in m.departed


def test_limits_refuse_nodes_and_workers_beyond_them_until_there_is_room(local):
    from essa_anna.membership import Limits

    transport, nodes, membership, wait_until = local
    m = membership(limits=Limits(nodes=3, workers=10))
    nodes.start("a", workers=8)
    assert wait_until(lambda: set(m.kvs) == {"a"})
    nodes.start("big", workers=8)  # 16 workers: refused
    b = nodes.start("b")
    nodes.start("c")
    assert wait_until(lambda: set(m.kvs) == {"a", "b", "c"})
    d = nodes.start("d")  # a fourth node: refused
    assert wait_until(lambda: m.unproven() == 2)
    assert set(m.kvs) == {"a", "b", "c"} and sum(n.workers for n in m.kvs.values()) == 10
    # A member leaves: a refused claim that fits takes its place.
    nodes.stop(b)
    assert wait_until(lambda: set(m.kvs) == {"a", "c", "d"})
    nodes.stop(d)


def test_limits_come_from_the_environment():
    from essa_anna.membership import Limits

    assert Limits.from_environment({}) == Limits(P.MAX_NODES, P.MAX_RING_WORKERS)
    assert Limits.from_environment({"ESSA_ANNA_MAX_NODES": "8", "ESSA_ANNA_MAX_WORKERS": " 16 "}) == Limits(8, 16)
    assert Limits(8).claims == 16
    for bad in ({"ESSA_ANNA_MAX_NODES": "many"}, {"ESSA_ANNA_MAX_NODES": "0"},
                {"ESSA_ANNA_MAX_WORKERS": "-1"}, {"ESSA_ANNA_MAX_NODES": "100000"}):
        with pytest.raises(AnnaError):
            Limits.from_environment(bad)


def test_ping_answers_are_checked():
    from essa_anna import inbound

    assert inbound.ping_answer({"tokens": ["anna/live/kvs/a/i/1/2/1"]}) == ["anna/live/kvs/a/i/1/2/1"]
    for bad in ({}, {"tokens": "anna/live/x"}, {"tokens": [5]}, {"tokens": ["essa/live/executor/1"]},
                {"tokens": ["anna/live/" + "x" * 600]}, {"tokens": ["anna/live/kvs/a"] * 5}):
        with pytest.raises(Malformed):
            inbound.ping_answer(bad)
