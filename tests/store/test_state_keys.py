"""Every key a guest or the API can write lists, reads and deletes back exactly, on every store.

Property tests over key bytes and lengths (0 to several KB, invalid UTF-8 and
lone surrogates, "/" characters, long keys sharing their first 479 bytes)
on the memory store and the LMDB store (real LMDB in a temporary
directory); tests/anna/test_anna_keys.py runs the same properties on a real
Anna cluster. A key that is not UTF-8 text is refused by every store with
the same one-line :class:`~essa.errors.InvalidKey`, and never breaks the
listing of the others. Plus LMDB's read compatibility with databases written
before full keys were recorded.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from essa.errors import InvalidKey
from essa.state.keys import KeyList, record_key
from essa.state.lattice import SetLattice
from essa.state.memory import MemoryStore
from essa.testing.store_keys import KEYS, STEMS, check_round_trip, value

STORES = ["memory", "lmdb"]


@pytest.fixture(scope="module")
def lmdb_store(tmp_path_factory):
    pytest.importorskip("essa_lmdb")
    from essa_lmdb import LmdbStore

    with LmdbStore({"path": str(tmp_path_factory.mktemp("lmdb")), "sync": "off"}) as store:
        yield store


@pytest.fixture(scope="module")
def memory_store():
    with MemoryStore() as store:
        yield store


@pytest.fixture(scope="module", params=STORES)
def store(request):
    return request.getfixturevalue(f"{request.param}_store")


@settings(max_examples=200)
@given(keys=st.lists(KEYS, max_size=6, unique=True), cut=st.integers(0, 700))
def test_keys_round_trip_exactly(store, keys, cut):
    check_round_trip(store, keys, keys[0][:cut] if keys else "")


@settings(max_examples=50)
@given(tails=st.lists(st.text(max_size=30), min_size=1, max_size=6, unique=True),
       stem=st.sampled_from(STEMS))
def test_long_keys_that_share_their_first_479_bytes_stay_apart(store, tails, stem):
    keys = [stem + tail for tail in tails]
    check_round_trip(store, keys, stem + tails[0][:3])


@pytest.mark.parametrize("key", ["", "\ud800", "a\udcff", "x" * 600 + "\udc80", b"bytes", 7])
def test_every_store_refuses_the_same_keys_in_one_line(store, key):
    with pytest.raises(InvalidKey) as info:
        store.put(key, value(0))
    assert "\n" not in str(info.value)


def test_a_big_set_under_a_long_key_lists_reads_and_deletes_its_members(store):
    key = f"{uuid.uuid4().hex}/data/" + "big" * 300
    members = SetLattice(b"member-%05d" % i + b"." * 40 for i in range(400))  # over the 4 KiB inline limit
    store.put(key, members)
    store.put(key, SetLattice([b"one more"]))
    assert store.keys(key[:20]) == [key]
    assert store.get(key) == SetLattice([*members.values, b"one more"])
    assert store.delete(key) is True
    assert store.get(key) is None and store.keys(key[:20]) == []
    store.put(key, SetLattice([b"fresh"]))  # no member of the deleted set comes back
    assert store.get(key) == SetLattice([b"fresh"])


# -- LMDB: databases written before full keys were recorded ---------------------------------


def old_database(path, records: dict[bytes, bytes]) -> None:
    """An LMDB environment as an older essa left it: records under their record keys, no full keys."""
    import lmdb

    from essa_lmdb.layout import MEMBERS_DB, META_DB

    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), max_dbs=2, subdir=True)
    env.open_db(MEMBERS_DB)
    env.open_db(META_DB)
    with env.begin(write=True) as txn:
        for rkey, encoded in records.items():
            txn.put(rkey, encoded)
    env.close()


def test_lmdb_reads_a_database_written_before_full_keys_were_recorded(tmp_path):
    pytest.importorskip("essa_lmdb")
    from essa.state.bincode import encode_lattice
    from essa_lmdb import LmdbStore

    long_key = "old/data/" + "L" * 600
    old_database(tmp_path / "db", {
        b"old/data/short": encode_lattice(value(1)),
        record_key(long_key.encode()): encode_lattice(value(2)),
        b"old/data/bad\xff": encode_lattice(value(3)),  # an older `essa state put` took such keys
    })
    with LmdbStore({"path": str(tmp_path / "db")}) as store:
        listed = store.keys("old/data/")
        assert isinstance(listed, KeyList)
        assert listed == ["old/data/short"] and listed.unlisted == 2
        assert "did not record their full keys" in listed.why and "not UTF-8" in listed.why
        assert store.get(long_key) == value(2)  # by its full key, as before
        store.put(long_key, value(0))  # a merge (even one that changes nothing) records the full key
        assert store.get(long_key) == value(2)
        listed = store.keys("old/data/")
        assert listed == [long_key, "old/data/short"] and listed.unlisted == 1
        assert store.delete(long_key) is True
        assert store.keys("old/data/") == ["old/data/short"]


def test_lmdb_keys_named_like_the_layout_are_just_keys(tmp_path):
    pytest.importorskip("essa_lmdb")
    from essa_lmdb import LmdbStore

    keys = ["essa-lmdb-layout/keys/" + "~" * 489, "essa-lmdb-layout/members/" + "x" * 700]
    with LmdbStore({"path": str(tmp_path / "db")}) as store:
        for n, key in enumerate(keys):
            store.put(key, value(n))
        assert store.keys("essa-lmdb-layout/") == sorted(keys)


def test_lmdb_deleting_a_long_key_drops_its_recorded_full_key(tmp_path):
    pytest.importorskip("essa_lmdb")
    from essa_lmdb import LmdbStore

    with LmdbStore({"path": str(tmp_path / "db")}) as store:
        keys = [f"ns/data/{n}" + "y" * 600 for n in range(10)]
        for n, key in enumerate(keys):
            store.put(key, value(n))
        env = store._live()

        def names() -> int:
            with env.env.begin() as txn:
                return txn.stat(env.layout.names)["entries"]

        assert names() == 10
        for key in keys:
            store.delete(key)
        assert names() == 0 and store.keys("ns/") == []


def test_essa_state_ls_of_an_old_database_lists_what_it_can_and_says_what_it_left_out(essa_home):
    pytest.importorskip("essa_lmdb")
    from essa.state.bincode import encode_lattice

    old_database(essa_home / "lmdb", {
        b"old/data/short": encode_lattice(value(1)),
        record_key(("old/data/" + "L" * 600).encode()): encode_lattice(value(2)),
        b"old/data/bad\xff": encode_lattice(value(3)),
    })
    result = subprocess.run([sys.executable, "-m", "essa", "state", "ls", "-n", "old"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "short\n", result.stderr
    assert result.stderr.startswith("essa: warning: 2 keys of namespace old are not listed: 1 of 511 bytes or more")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
