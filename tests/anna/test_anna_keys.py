"""The key properties of tests/store/test_state_keys.py, on the Anna store.

Real processes: a routing node and two durable KVS nodes (replication 2,
each keeping its data in LMDB), shared by the tests of this module (each
example uses a namespace of its own). Any UTF-8 key (0 to several KB, "/",
line breaks, long keys sharing their first 479 bytes) lists, reads and
deletes back exactly, also after the nodes restart from their disks; a key
that is not UTF-8 text is refused in one line, as by every store.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("zenoh")
pytest.importorskip("essa_anna")

from essa.errors import InvalidKey  # noqa: E402
from essa.state.bincode import encode_lattice  # noqa: E402
from essa.testing.store_keys import KEYS, STEMS, check_round_trip, value  # noqa: E402
from essa_anna.errors import AnnaError  # noqa: E402
from essa_anna.inbound import MAX_KEY_CHARS  # noqa: E402
from essa_anna.storage import LmdbBackend  # noqa: E402
from essa_anna.store import AnnaStore  # noqa: E402

from .helpers import CLIENT_TIMEOUT, READY_TIMEOUT, AnnaCluster  # noqa: E402

NODES = ("k0", "k1")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("anna-keys")
    cluster = AnnaCluster(root / "logs", replication=2)
    cluster.data = root  # type: ignore[attr-defined]
    try:
        cluster.routing()
        for node in NODES:
            cluster.kvs(node, "--path", str(root / node))
        cluster.wait_for_nodes(len(NODES))
        yield cluster
    finally:
        cluster.stop()


def open_store(cluster: AnnaCluster) -> AnnaStore:
    return AnnaStore({"routing": cluster.endpoint, "timeout": str(CLIENT_TIMEOUT),
                      "connect_timeout": str(READY_TIMEOUT)})


@pytest.fixture(scope="module")
def store(cluster):
    store = open_store(cluster)
    store.client.wait_for_nodes(len(NODES), timeout=READY_TIMEOUT)
    yield store
    store.close()


@settings(max_examples=80)
@given(keys=st.lists(KEYS, max_size=5, unique=True), cut=st.integers(0, 700))
def test_keys_round_trip_exactly(store, keys, cut):
    check_round_trip(store, keys, keys[0][:cut] if keys else "")


@settings(max_examples=30)
@given(tails=st.lists(st.text(max_size=30), min_size=1, max_size=5, unique=True), stem=st.sampled_from(STEMS))
def test_long_keys_that_share_their_first_479_bytes_stay_apart(store, tails, stem):
    check_round_trip(store, [stem + tail for tail in tails], stem + tails[0][:3])


@pytest.mark.parametrize("key", ["", "\ud800", "a\udcff", b"bytes"])
def test_keys_every_store_refuses_are_refused_in_one_line(store, key):
    with pytest.raises(InvalidKey) as info:
        store.put(key, value(0))
    assert "\n" not in str(info.value)


def test_the_clients_table_of_key_owners_stays_bounded_and_forgotten_owners_are_asked_again(cluster):
    bounded = open_store(cluster)
    try:
        bounded.client.wait_for_nodes(len(NODES), timeout=READY_TIMEOUT)
        bounded.client.max_owners = 40
        keys = [f"owners/{i}" for i in range(200)]
        for i, key in enumerate(keys):
            bounded.put(key, value(i))
            assert len(bounded.client._cache) <= 40
        assert [bounded.get_bytes(key) for key in keys] == [encode_lattice(value(i)) for i in range(200)]
        assert len(bounded.client._cache) <= 40
        for key in keys:
            assert bounded.delete(key)
    finally:
        bounded.close()


def test_a_key_longer_than_anna_carries_is_refused_in_one_line(store):
    with pytest.raises(AnnaError, match=f"at most {MAX_KEY_CHARS} characters"):
        store.put("x" * (MAX_KEY_CHARS + 1), value(0))
    store.put("x" * MAX_KEY_CHARS, value(1))
    assert store.keys("x" * 100) == ["x" * MAX_KEY_CHARS]
    assert store.delete("x" * MAX_KEY_CHARS)


def test_the_durable_record_keys_keep_long_keys_apart_and_exact(tmp_path):
    keys = [stem + tail for stem in STEMS for tail in ("", "-a", "-b" * 300)] + ["short", "/"]
    backend = LmdbBackend(tmp_path / "node")
    backend.write({key: [("merge", encode_lattice(value(n)))] for n, key in enumerate(keys)})
    backend.close()
    backend = LmdbBackend(tmp_path / "node")
    try:
        assert dict(backend.load()) == {key: encode_lattice(value(n)) for n, key in enumerate(keys)}
    finally:
        backend.close()


def test_long_keys_come_back_exactly_after_the_nodes_restart_from_disk(cluster):
    keys = {"restart/data/" + stem + tail: n for n, (stem, tail) in enumerate(
        (stem, tail) for stem in STEMS for tail in ("", "-one", "-two"))}
    first = open_store(cluster)
    try:
        for key, n in keys.items():
            first.put(key, value(n))
    finally:
        first.close()
    for node in NODES:  # SIGKILL: only their disks survive
        cluster.kill(f"kvs-{node}")
    for node in NODES:
        cluster.kvs(node, "--path", str(cluster.data / node), wait=False)
    for node in NODES:
        cluster.wait_kvs(node)
    cluster.wait_for_nodes(len(NODES))
    again = open_store(cluster)
    try:
        again.client.wait_for_nodes(len(NODES), timeout=READY_TIMEOUT)
        assert again.keys("restart/data/") == sorted(keys)
        for key, n in keys.items():
            assert again.get(key) == value(n)
    finally:
        again.close()
