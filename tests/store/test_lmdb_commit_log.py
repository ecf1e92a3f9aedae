"""The LMDB store's commit log (essa_lmdb.wal): records, and puts an OS crash undid merged again.

An OS crash is played by restoring ``data.mdb`` from a copy the writer made
(``env.copy``) before its last commits, after the writer was killed: what a
crash leaves when the meta pages of the last commits never reached the disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("essa_lmdb")

import lmdb  # noqa: E402

import essa_lmdb.store  # noqa: E402
from essa.state.lattice import LwwLattice, SetLattice  # noqa: E402
from essa_lmdb import LmdbStore  # noqa: E402
from essa_lmdb.wal import CANCEL, LOG_DIRECTORY, PUTS, CommitLog, decode_log, encode_record  # noqa: E402

DEADLINE = 90  # seconds: generous, the machine may be busy
KEY = bytes(16)


def log_file(key: bytes, *records: bytes) -> bytes:
    return b"ESSALOG1" + key + b"".join(records)


# -- records ------------------------------------------------------------------------------------


def test_records_read_back_with_their_transaction_ids():
    puts = [(b"k", b"\x01value", None), (b"long" * 130, b"v", b"the full key")]
    data = log_file(KEY, encode_record(KEY, 1, 7, PUTS, puts), encode_record(KEY, 1, 8, PUTS, puts[:1]))
    assert decode_log(data) == [(7, puts), (8, puts[:1])]


def test_a_torn_record_ends_the_log():
    first, second = encode_record(KEY, 1, 7, PUTS, [(b"a", b"1", None)]), encode_record(KEY, 1, 8, PUTS, [(b"b", b"2", None)])
    for cut in range(1, len(second)):
        assert decode_log(log_file(KEY, first, second[:cut])) == [(7, [(b"a", b"1", None)])]
    damaged = bytearray(second)
    damaged[-1] ^= 1
    assert decode_log(log_file(KEY, first, bytes(damaged), first)) == [(7, [(b"a", b"1", None)])]


def test_a_cancel_withdraws_the_last_record_of_its_transaction():
    a, b = [(b"a", b"1", None)], [(b"b", b"2", None)]
    data = log_file(KEY, encode_record(KEY, 1, 7, PUTS, a), encode_record(KEY, 1, 7, CANCEL),
                    encode_record(KEY, 1, 7, PUTS, b))
    assert decode_log(data) == [(7, b)]


def test_records_of_another_key_or_an_earlier_generation_end_the_log():
    a = [(b"a", b"1", None)]
    forged = encode_record(bytes(range(16)), 1, 9, PUTS, a)  # as a guest's value could hold it, without the key
    assert decode_log(log_file(KEY, encode_record(KEY, 1, 7, PUTS, a), forged)) == [(7, a)]
    stale = encode_record(KEY, 1, 3, PUTS, a)  # left behind after the log was emptied
    assert decode_log(log_file(KEY, encode_record(KEY, 2, 7, PUTS, a), stale)) == [(7, a)]
    assert decode_log(log_file(KEY) + bytes(4096)) == []


def test_an_emptied_log_starts_over_with_the_next_generation(tmp_path):
    log = CommitLog(str(tmp_path))
    try:
        log.append(1, PUTS, [(b"old", b"x" * 100, None)])
        log.append(2, PUTS, [(b"old", b"x" * 100, None)])
        log.empty()
        log.append(3, PUTS, [(b"new", b"y", None)])
        log.start_flush()
        log.finish_flush()
        assert decode_log(open(log.path, "rb").read()) == [(3, [(b"new", b"y", None)])]
    finally:
        log.close(remove=True)
    assert not os.path.exists(log.path)


# -- recovery -----------------------------------------------------------------------------------

WRITER = """
import sys
from essa_lmdb import LmdbStore
from essa.state.lattice import LwwLattice, SetLattice
path, copy = sys.argv[1], sys.argv[2]
s = LmdbStore({"path": path})
for i in range(50):
    s.put(f"k/{i}", LwwLattice(1, b"before"))
s.put("gone", LwwLattice(1, b"x"))
assert s.delete("gone")
if copy != "-":
    s._live().env.copy(copy)  # what an OS crash leaves: every commit after this one undone
for i in range(50, 120):
    s.put(f"k/{i}", LwwLattice(1, b"after"))
    s.put("set", SetLattice([b"%d" % i]))
print("acknowledged", flush=True)
sys.stdin.read()
"""


def run_writer_and_kill_it(path, copy) -> None:
    """The writer acknowledges its puts, then dies by SIGKILL (its commit log stays behind)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path), str(copy)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line == "acknowledged\n", proc.stderr.read() if proc.poll() is not None else line
    finally:
        proc.kill()
        proc.communicate(timeout=DEADLINE)
    assert [f for f in os.listdir(path / LOG_DIRECTORY) if f.endswith(".log")], "the killed writer left no log"


def replays(monkeypatch) -> list[int]:
    counts: list[int] = []
    replay = essa_lmdb.store.replay_dead_logs

    def counted(*args):
        counts.append(replay(*args))
        return counts[-1]

    monkeypatch.setattr(essa_lmdb.store, "replay_dead_logs", counted)
    return counts


def test_puts_an_os_crash_undid_are_merged_again_from_the_dead_writers_log(tmp_path, monkeypatch):
    path, copy = tmp_path / "db", tmp_path / "copy"
    copy.mkdir()
    run_writer_and_kill_it(path, copy)
    shutil.copy(copy / "data.mdb", path / "data.mdb")
    os.remove(path / "lock.mdb")
    with lmdb.open(str(path), readonly=True, lock=False, max_dbs=8) as env, env.begin() as txn:
        assert txn.get(b"k/49") is not None and txn.get(b"k/50") is None  # the crash undid the last commits
    counts = replays(monkeypatch)
    with LmdbStore({"path": str(path)}) as store:
        assert store.get("gone") is None  # deleted before the copy: its put's record is not merged again
        for i in range(120):
            assert store.get(f"k/{i}") == LwwLattice(1, b"before" if i < 50 else b"after"), f"k/{i}"
        assert store.get("set") == SetLattice([b"%d" % i for i in range(50, 120)])
        assert counts == [70 * 2]
        assert not [f for f in os.listdir(path / LOG_DIRECTORY) if f.endswith(".log") and
                    not f.startswith(f"{os.getpid()}-")]


def test_after_kill_9_alone_nothing_is_merged_again_and_the_dead_log_goes(tmp_path, monkeypatch):
    path = tmp_path / "db"
    run_writer_and_kill_it(path, "-")
    counts = replays(monkeypatch)
    with LmdbStore({"path": str(path)}) as store:
        assert counts == [0]  # every commit was in the page cache
        assert store.get("k/119") == LwwLattice(1, b"after") and store.get("gone") is None
        logs = [f for f in os.listdir(path / LOG_DIRECTORY) if f.endswith(".log")]
        assert len(logs) == 1 and logs[0].startswith(f"{os.getpid()}-")  # this process's own
    assert not [f for f in os.listdir(path / LOG_DIRECTORY) if f.endswith(".log")]  # a clean close removes it


def test_a_live_processes_log_is_left_alone(tmp_path):
    path = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path), "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "acknowledged\n"
        theirs = [f for f in os.listdir(path / LOG_DIRECTORY) if f.endswith(".log")]
        with LmdbStore({"path": str(path)}) as store:
            assert store.get("k/119") == LwwLattice(1, b"after")
            assert set(theirs) <= set(os.listdir(path / LOG_DIRECTORY))
    finally:
        proc.stdin.close()  # the writer ends without closing its store: its log stays for the next opener
        proc.wait(DEADLINE)
    with LmdbStore({"path": str(path)}) as store:
        assert store.get("k/119") == LwwLattice(1, b"after")
        assert not set(theirs) & set(os.listdir(path / LOG_DIRECTORY))
