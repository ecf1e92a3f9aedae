"""Merges that cost the delta give the same bytes as whole-value merges (LMDB, memory and Redis stores).

The LMDB store keeps big sets as one record per member and assembles the
encoding on read; the Redis store keeps sets as Redis sets and merges every
other type on the server, in Lua. Whatever the sequence of merges, every
store must give the bytes and the value that merging whole values gives, and
refuse the same puts.
"""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("essa_lmdb")

from essa.errors import DecodeError, LatticeTypeError  # noqa: E402
from essa.state.bincode import decode_lattice, encode_lattice, merge_encoded  # noqa: E402
from essa.state.lattice import (  # noqa: E402
    BoolLattice,
    LwwLattice,
    MapLattice,
    MaxLattice,
    MultiCausalLattice,
    OrderedSetLattice,
    SetLattice,
    SingleCausalLattice,
)
from essa.state.memory import MemoryStore  # noqa: E402
from essa_lmdb import LmdbStore  # noqa: E402
from essa_lmdb.layout import INLINE_LIMIT, PREFIX, VERBATIM  # noqa: E402

# Long members share their first bytes and straddle the layout's boundaries (PREFIX, VERBATIM).
_LONG = b"L" * (PREFIX - 6)
members = st.one_of(
    st.binary(max_size=6),
    st.builds(lambda tail: _LONG + tail, st.binary(max_size=VERBATIM - PREFIX + 12)),
    st.builds(lambda n: b"%06d" % n + b"x" * 250, st.integers(0, 40)),  # mid-sized: sets outgrow INLINE_LIMIT
)


def _set_of(kind):
    return st.builds(lambda ms: encode_lattice(kind(ms)), st.frozensets(members, max_size=12))


# Clocks over a few nodes, counters near 0 and near the top of u64: comparable and concurrent ones alike.
clocks = st.dictionaries(st.sampled_from(["a", "b", "ab", "é"]), st.sampled_from([0, 1, 2, 2**53 + 1, 2**64 - 1]),
                         max_size=3)
small_values = st.frozensets(st.binary(max_size=3), max_size=3)
# Timestamps whose texts have 0, 3, 6 and 9 fraction digits, and years before 1970.
timestamps = st.sampled_from([0, 1, 1_000_000, 1_001_000, 1_000_000_000, -1, -10**18, 10**18 + 1])
lattices = st.one_of(
    st.builds(LwwLattice, timestamps, st.binary(max_size=3)),
    st.builds(SingleCausalLattice, clocks, small_values),
    st.builds(MultiCausalLattice, clocks, st.dictionaries(st.sampled_from(["k", "j"]), clocks, max_size=2),
              small_values),
    st.builds(MaxLattice, st.sampled_from([0, 3, 2**64 - 1])),
    st.builds(BoolLattice, st.booleans()),
)
maps = st.recursive(
    st.builds(MapLattice, st.dictionaries(st.sampled_from(["x", "y"]), lattices | st.builds(SetLattice, small_values),
                                          max_size=2)),
    lambda inner: st.builds(MapLattice, st.dictionaries(st.sampled_from(["x", "m"]), inner | lattices, max_size=2)),
    max_leaves=4,
)
values = st.one_of(
    _set_of(SetLattice),
    _set_of(SetLattice),
    _set_of(OrderedSetLattice),
    st.builds(lambda ts, v: encode_lattice(LwwLattice(ts, v)), st.integers(0, 5), st.binary(max_size=3)),
    st.builds(lambda n: encode_lattice(MaxLattice(n)), st.integers(0, 3)),
    st.builds(encode_lattice, lattices),
    st.builds(encode_lattice, maps),
    st.sampled_from([b"", b"\x01\x00\x00\x00\x05", b"\xff\xff\xff\xff", b"\xff\xffes" + bytes(20)]),
)


def reference(steps: list[bytes]) -> tuple[bytes | None, list[type | None]]:
    """Whole-value merging: the final bytes, and the error class (or None) of each step."""
    stored = None
    outcomes = []
    for value in steps:
        try:
            stored = merge_encoded(stored, value)
        except (DecodeError, LatticeTypeError) as exc:
            outcomes.append(type(exc))
        else:
            outcomes.append(None)
    return stored, outcomes


def apply(store, key: str, steps: list[bytes]) -> list[type | None]:
    outcomes = []
    for value in steps:
        try:
            store.merge_bytes(key, value)
        except (DecodeError, LatticeTypeError) as exc:
            outcomes.append(type(exc))
        else:
            outcomes.append(None)
    return outcomes


@pytest.fixture(scope="module")
def stores(tmp_path_factory, request):
    """LMDB and memory, and a Redis server and a Redis Cluster where essa-plugin-redis and redis-server are here."""
    opened = [LmdbStore({"path": str(tmp_path_factory.mktemp("lmdb"))}), MemoryStore()]
    if importlib.util.find_spec("essa_redis") and shutil.which("redis-server"):
        from essa_redis import RedisStore

        for servers in ("redis_server", "redis_cluster"):
            url = request.getfixturevalue(servers).url
            opened.append(RedisStore({"url": url, "prefix": f"incremental-{servers}:", "timeout": "30"}))
    yield opened
    for store in opened:
        store.close()


_keys = itertools.count()


@settings(max_examples=300)
@given(steps=st.lists(values, min_size=1, max_size=25))
def test_any_sequence_of_merges_gives_the_whole_value_bytes(stores, steps):
    expected, outcomes = reference(steps)
    key = f"k{next(_keys)}"
    for store in stores:
        assert apply(store, key, steps) == outcomes
        got = store.get_bytes(key)
        assert got == expected
        if expected is not None:
            assert decode_lattice(got) == decode_lattice(expected)


def test_a_big_set_reopened_in_another_process_reads_the_same(tmp_path):
    path = tmp_path / "db"
    expected = SetLattice(b"member-%05d" % i for i in range(3000))
    with LmdbStore({"path": str(path)}) as store:
        for i in range(0, 3000, 100):
            store.put("big", SetLattice(b"member-%05d" % j for j in range(i, i + 100)))
        assert store.get_bytes("big") == encode_lattice(expected)
        assert len(encode_lattice(expected)) > INLINE_LIMIT
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import hashlib
        from essa_lmdb import LmdbStore
        with LmdbStore({{"path": {str(path)!r}}}) as s:
            print(hashlib.sha256(s.get_bytes("big")).hexdigest())
        """)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import hashlib

    assert proc.stdout.strip() == hashlib.sha256(encode_lattice(expected)).hexdigest()


def test_a_key_named_like_nothing_special_is_just_a_key(tmp_path):
    # the layout's sub-databases live in the main database under 511-byte names
    with LmdbStore({"path": str(tmp_path / "db")}) as store:
        for key in ("essa-lmdb-layout/members/", "essa-lmdb-layout/members/" + "~" * 486, "next-set-id"):
            store.put(key, SetLattice([b"x"]))
            assert store.get(key) == SetLattice([b"x"])
        store.put("big", SetLattice(b"%05d" % i + b"y" * 100 for i in range(100)))
        assert store.get("big") == SetLattice(b"%05d" % i + b"y" * 100 for i in range(100))


# -- group commit ------------------------------------------------------------------------

WRITER = """
import sys, threading
from essa_lmdb import LmdbStore
from essa.state.lattice import LwwLattice, SetLattice
store = LmdbStore({"path": sys.argv[1]})
lock = threading.Lock()

def work(t):
    for i in range(100000):
        if i % 2:
            store.put(f"lww/{t}/{i}", LwwLattice(i + 1, b"v%d" % i))
        else:
            store.put("shared", SetLattice([b"%d-%d" % (t, i) + b"z" * 40]))
        with lock:
            print(t, i, flush=True)  # acknowledged

for t in range(8):
    threading.Thread(target=work, args=(t,)).start()
"""


def test_kill_9_during_group_commits_loses_no_acknowledged_put(tmp_path):
    path = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    acked = []
    watchdog = threading.Timer(300, proc.kill)  # a writer that stops answering fails the test, never hangs it
    watchdog.start()
    try:
        for line in proc.stdout:
            acked.append(tuple(map(int, line.split())))
            if len(acked) >= 3000:
                break
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        rest = proc.stdout.read()  # with the lines proc.stdout buffered (communicate() reads past them)
        proc.stdout.close()
    # the kill may cut the last line short: only whole lines count
    acked += [tuple(map(int, line.split())) for line in rest.split("\n")[:-1] if line.strip()]
    assert len(acked) >= 3000
    with LmdbStore({"path": str(path)}) as store:
        shared = store.get("shared")
        for t, i in acked:
            if i % 2:
                assert store.get(f"lww/{t}/{i}") == LwwLattice(i + 1, b"v%d" % i)
            else:
                assert b"%d-%d" % (t, i) + b"z" * 40 in shared.values
        # and the big set reads back as the canonical encoding of what it holds
        assert store.get_bytes("shared") == encode_lattice(shared)


def test_a_refused_merge_fails_only_its_own_put_in_a_group(tmp_path):
    with LmdbStore({"path": str(tmp_path / "db")}) as store:
        store.put("typed", SetLattice([b"a"]))
        errors: dict[int, BaseException] = {}

        def work(t: int) -> None:
            for i in range(200):
                try:
                    if t == 0 and i % 3 == 0:
                        store.merge_bytes("typed", encode_lattice(LwwLattice(1, b"x")))  # refused
                    elif t == 1 and i % 3 == 0:
                        store.merge_bytes("typed", b"\x01\x00\x00\x00\x09")  # undecodable
                    else:
                        store.put("typed", SetLattice([b"%d-%d" % (t, i)]))
                except (LatticeTypeError, DecodeError) as exc:
                    errors[t * 1000 + i] = exc

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected_refused = {t * 1000 + i for t in (0, 1) for i in range(0, 200, 3)}
        assert set(errors) == expected_refused
        got = store.get("typed")
        assert got == SetLattice([b"a", *(b"%d-%d" % (t, i) for t in range(6) for i in range(200)
                                        if t * 1000 + i not in expected_refused)])


def test_a_leader_interrupted_mid_commit_hands_the_lead_on(tmp_path, monkeypatch):
    """Ctrl-C in the thread leading a group commit fails that group alone; later puts still commit."""
    import essa_lmdb.store

    commit = essa_lmdb.store._Env._commit
    calls = itertools.count()

    def interrupted_once(self, batch):
        if next(calls) == 20:
            raise KeyboardInterrupt
        return commit(self, batch)

    monkeypatch.setattr(essa_lmdb.store._Env, "_commit", interrupted_once)
    with LmdbStore({"path": str(tmp_path / "db")}) as store:
        acked: list[bytes] = []
        interrupted: list[str] = []

        def work(name: str) -> None:
            try:
                for i in range(100):
                    store.put("shared", SetLattice([b"%s-%d" % (name.encode(), i)]))
                    acked.append(b"%s-%d" % (name.encode(), i))
            except KeyboardInterrupt:
                interrupted.append(name)

        def in_threads(names: list[str]) -> None:
            threads = [threading.Thread(target=work, args=(name,), daemon=True) for name in names]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 120  # a stranded lead would leave puts waiting forever
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            assert not any(thread.is_alive() for thread in threads)

        in_threads([f"a{t}" for t in range(8)])
        assert interrupted  # the interrupted group learnt it
        in_threads([f"b{t}" for t in range(8)])  # and the store still commits groups afterwards
        assert all(name.startswith("a") for name in interrupted)
        assert sum(b.startswith(b"b") for b in acked) == 800
        assert set(acked) <= store.get("shared").values


def test_a_merge_that_changes_nothing_writes_nothing(tmp_path):
    from essa.state.lattice import SingleCausalLattice

    with LmdbStore({"path": str(tmp_path / "db")}) as store:
        store.put("lww", LwwLattice(5, b"new"))
        store.put("causal", SingleCausalLattice({"a": 2}, [b"x"]))
        store.put("big", SetLattice(b"%05d" % i + b"b" * 100 for i in range(100)))
        last_commit = store._entry.env.info()["last_txnid"]  # the environment's commit counter
        store.put("lww", LwwLattice(3, b"old"))  # loses to the stored value
        store.put("causal", SingleCausalLattice({"a": 1}, [b"y"]))  # dominated
        store.put("big", SetLattice([b"00007" + b"b" * 100]))  # already a member
        assert store._entry.env.info()["last_txnid"] == last_commit
        store.put("big", SetLattice([b"new member"]))
        assert store._entry.env.info()["last_txnid"] == last_commit + 1
