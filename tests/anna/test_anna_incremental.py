"""Anna KVS nodes merge big sets at the cost of the delta, with the bytes of whole-value merges.

Real processes: a routing node and two KVS nodes (replication 2), shared by
the tests of this module (each test uses keys of its own).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("zenoh")
pytest.importorskip("essa_anna")

from essa.errors import DecodeError, LatticeTypeError  # noqa: E402
from essa.state.bincode import (  # noqa: E402
    decode_lattice,
    encode_lattice,
    merge_encoded,  # noqa: E402
)
from essa.state.lattice import LwwLattice, OrderedSetLattice, SetLattice
from essa_anna.values import INLINE_LIMIT  # noqa: E402

from .helpers import READY_TIMEOUT, AnnaCluster, wait_until  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = AnnaCluster(tmp_path_factory.mktemp("anna-incremental") / "logs", replication=2)
    cluster.start(2)
    yield cluster
    cluster.stop()


members = st.one_of(st.binary(max_size=6), st.builds(lambda n: b"%06d" % n + b"x" * 300, st.integers(0, 60)))
values = st.one_of(
    st.builds(lambda ms: encode_lattice(SetLattice(ms)), st.frozensets(members, max_size=10)),
    st.builds(lambda ms: encode_lattice(SetLattice(ms)), st.frozensets(members, max_size=10)),
    st.builds(lambda ms: encode_lattice(OrderedSetLattice(ms)), st.frozensets(members, max_size=10)),
    st.builds(lambda ts: encode_lattice(LwwLattice(ts, b"x")), st.integers(0, 3)),
    st.just(b"\x01\x00\x00\x00\x07"),
)
_keys = itertools.count()


@settings(max_examples=40)
@given(steps=st.lists(values, min_size=1, max_size=20))
def test_any_sequence_of_merges_gives_the_whole_value_bytes_on_every_replica(cluster, steps):
    client = cluster.watcher
    key = f"inc/{next(_keys)}"
    expected = None
    for value in steps:
        try:
            expected = merge_encoded(expected, value)
            refused = None
        except (DecodeError, LatticeTypeError) as exc:
            refused = type(exc)
        if refused is None:
            client.put(key, value)
        else:
            with pytest.raises(refused):
                client.put(key, value)
    assert client.get(key) == expected
    if expected is not None:
        # every replica converges to the same bytes (the put's delta went out at once, gossip brings the rest)
        owners = client.owners(key)
        assert len(owners) == 2
        assert wait_until(lambda: all(client.fetch(o, [key])[key] == expected for o in owners)), \
            {o: client.fetch(o, [key])[key] == expected for o in owners}
        assert decode_lattice(client.get(key)) == decode_lattice(expected)


WRITER = """
import sys
from essa_anna import AnnaClient
from essa.state.bincode import encode_lattice
from essa.state.lattice import SetLattice
from essa_anna.protocol import PUT
tag = sys.argv[2]
with AnnaClient([sys.argv[1]], timeout=60, connect_timeout=60) as client:
    futures = [client.submit(PUT, "shared-set", encode_lattice(SetLattice([b"%s-%05d" % (tag.encode(), i)])))
               for i in range(1500)]  # all in flight at once
    for f in futures:
        f.result(120)
print("done")
"""


def test_concurrent_writers_in_several_processes_converge_on_a_big_set(cluster):
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), cluster.endpoint, f"p{n}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out == "done\n", err
    expected = encode_lattice(SetLattice(b"p%d-%05d" % (n, i) for n in range(4) for i in range(1500)))
    assert len(expected) > INLINE_LIMIT
    client = cluster.watcher
    assert client.get("shared-set") == expected
    owners = client.owners("shared-set")
    assert wait_until(lambda: all(client.fetch(o, ["shared-set"])["shared-set"] == expected for o in owners),
                      READY_TIMEOUT)


def test_twenty_thousand_requests_at_once_stay_within_the_message_bounds(cluster):
    """Clients and nodes split what they send into messages of bounded size; nothing is dropped."""
    from essa_anna.protocol import PUT

    client = cluster.client(timeout=300)  # 40,000 requests at once: a busy machine needs more than 30 s
    keys = [f"many/{i}" for i in range(20000)]  # > inbound.MAX_ITEMS keys to resolve at once
    value = encode_lattice(SetLattice([b"v"]))
    futures = [client.submit(PUT, key, value) for key in keys]
    futures += [client.submit(PUT, "many-adds", encode_lattice(SetLattice([b"%05d" % i]))) for i in range(20000)]
    for future in futures:
        future.result(300)
    assert client.get_many(keys[::97]) == [value] * len(keys[::97])
    assert client.get("many-adds") == encode_lattice(SetLattice(b"%05d" % i for i in range(20000)))
    assert "malformed" not in cluster.log_text()
