"""Durable puts in the LMDB store with one flush on their path (essa-plugin-lmdb).

With ``sync=on`` the store opens LMDB with ``metasync`` off: a commit flushes
its data pages but writes its meta page unflushed. A group's puts go to this
process's commit log (:mod:`essa_lmdb.wal`) before it commits, the log is
flushed while the commit flushes, and the group is acknowledged once both are
done. These tests count the store's own commits and flushes and log them next
to the acknowledgements; nothing here depends on timing.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytest.importorskip("essa_lmdb")

import essa_lmdb.store  # noqa: E402
import essa_lmdb.wal  # noqa: E402
from essa.state.bincode import encode_lattice  # noqa: E402
from essa.state.lattice import LwwLattice, SetLattice  # noqa: E402
from essa_lmdb import LmdbStore  # noqa: E402

DEADLINE = 90  # seconds: generous, the machine may be busy


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_a_group_is_acknowledged_by_its_own_commit_and_log_flush(tmp_path, monkeypatch):
    # One put commits alone while 7 others queue; the 7 then commit as one group.
    # Each commit flushes its data pages and, at the same time, its record in the
    # commit log: 2 commits, 2 log flushes, and no other flush of data.mdb.
    commit = essa_lmdb.store._Env._commit
    entered = threading.Event()

    def first_commit_waits_for_seven(self, batch):
        if not entered.is_set():
            entered.set()
            wait_until(lambda: len(self.queue) == 7, "7 queued puts")
        return commit(self, batch)

    flushes = []
    finish = essa_lmdb.wal.CommitLog.finish_flush

    def counted_finish(self):
        finish(self)
        flushes.append(self.path)

    monkeypatch.setattr(essa_lmdb.store._Env, "_commit", first_commit_waits_for_seven)
    monkeypatch.setattr(essa_lmdb.wal.CommitLog, "finish_flush", counted_finish)
    with LmdbStore({"path": str(tmp_path / "db")}) as store:
        env = store._live()
        commits, data_flushes = env.commits, env.flushes

        def put(t: int) -> None:
            store.put(f"k/{t}", LwwLattice(1, b"v%d" % t))

        first = threading.Thread(target=put, args=(0,))
        first.start()
        assert entered.wait(DEADLINE)
        others = [threading.Thread(target=put, args=(t,)) for t in range(1, 8)]
        for thread in others:
            thread.start()
        for thread in [first, *others]:
            thread.join(DEADLINE)
            assert not thread.is_alive()
        assert (env.commits - commits, env.flushes - data_flushes, len(flushes)) == (2, 0, 2)
        assert [store.get(f"k/{t}") for t in range(8)] == [LwwLattice(1, b"v%d" % t) for t in range(8)]
        assert not env.queue and not env.leading


def test_every_acknowledgement_follows_its_commit_and_a_flush_of_its_log_record(tmp_path, monkeypatch):
    # 8 threads put distinct keys, repeat puts that change nothing, grow one set and
    # delete keys; a log records each commit that returned, each record written to
    # the commit log, each flush of it that finished and each acknowledgement, in
    # order. Every acknowledged put must follow a commit that wrote it (or found it
    # written) and a log flush that finished after a record holding it was written.
    log: list[tuple] = []
    log_lock = threading.Lock()
    commit = essa_lmdb.store._Env._commit
    append, finish = essa_lmdb.wal.CommitLog.append, essa_lmdb.wal.CommitLog.finish_flush

    def logged_commit(self, batch):
        changed = commit(self, batch)
        with log_lock:
            log.append(("commit", {(put.key, put.value) for put in batch}))
        return changed

    def logged_append(self, txn_id, kind, puts=()):
        append(self, txn_id, kind, puts)
        with log_lock:
            log.append(("record", {(key, value) for key, value, _name in puts}))

    def logged_finish(self):
        finish(self)
        with log_lock:
            log.append(("flushed",))

    monkeypatch.setattr(essa_lmdb.store._Env, "_commit", logged_commit)
    monkeypatch.setattr(essa_lmdb.wal.CommitLog, "append", logged_append)
    monkeypatch.setattr(essa_lmdb.wal.CommitLog, "finish_flush", logged_finish)
    with LmdbStore({"path": str(tmp_path / "db")}) as store:

        def work(t: int) -> None:
            for i in range(150):
                key = f"k/{t}/{i}"
                value = LwwLattice(1, b"v")
                store.put(key, value)
                with log_lock:
                    log.append(("ack", (key.encode(), encode_lattice(value))))
                store.put(key, value)  # changes nothing, still logged and flushed
                with log_lock:
                    log.append(("ack", (key.encode(), encode_lattice(value))))
                if i % 10 == 0:
                    member = SetLattice([key.encode()])
                    store.put("set", member)
                    with log_lock:
                        log.append(("ack", (b"set", encode_lattice(member))))
                if i % 15 == 0:
                    assert store.delete(key)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
            assert not thread.is_alive()
        env = store._live()
        assert not env.queue and not env.leading

    committed: set[tuple[bytes, bytes]] = set()
    recorded: dict[tuple[bytes, bytes], int] = {}  # put -> index of the last record holding it
    flushed = -1  # index of the last finished log flush
    acks = 0
    for n, event in enumerate(log):
        if event[0] == "commit":
            committed |= event[1]
        elif event[0] == "record":
            for put in event[1]:
                recorded[put] = n
        elif event[0] == "flushed":
            flushed = n
        elif event[0] == "ack":
            acks += 1
            assert event[1] in committed, f"{event[1]!r} acknowledged before its commit (event {n})"
            assert flushed > recorded[event[1]], f"{event[1]!r} acknowledged before its log record was flushed"
    assert acks == 8 * (300 + 15)
    groups = [len(event[1]) for event in log if event[0] == "commit"]
    assert max(groups) > 1  # puts were grouped at all (how much depends on timing: not asserted)


KILLED_WRITER = """
import sys, threading
from essa_lmdb import LmdbStore
from essa.state.lattice import LwwLattice, SetLattice
s = LmdbStore({"path": sys.argv[1]})
out = threading.Lock()
def ack(*words):
    with out:
        print(*words, flush=True)
def work(t):
    for i in range(1_000_000):
        s.put(f"k/{t}/{i}", LwwLattice(1, b"v"))
        s.put(f"k/{t}/{i}", LwwLattice(1, b"v"))  # changes nothing, acknowledged all the same
        s.put("set", SetLattice([f"{t}/{i}".encode()]))
        ack("put", t, i)
        if i % 7 == 6:
            s.delete(f"k/{t}/{i - 1}")
            ack("deleted", t, i - 1)
for t in range(8):
    threading.Thread(target=work, args=(t,), daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.parametrize("attempt", range(3))
def test_acknowledged_puts_and_deletes_survive_kill_9_at_a_random_moment(tmp_path, attempt):
    # A writer of 8 threads acknowledges each put (and each delete) on its stdout
    # only once the call returned; it is killed (-9) after a random number of
    # acknowledgements, with groups committed and waiting for their flush. The
    # reopened store holds every acknowledged put (but those of keys the writer
    # deletes: the kill may fall between a delete and its acknowledgement) and
    # none of the keys whose delete was acknowledged.
    kill_after = random.randrange(1, 1500)
    path = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, proc.kill)  # a writer that stops answering fails the test, never hangs it
    watchdog.start()
    lines: list[str] = []
    try:
        while len(lines) < kill_after:
            line = proc.stdout.readline()
            if not line.endswith("\n"):
                break  # the writer died: said below
            lines.append(line)
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        # read what proc.stdout holds, buffered lines included (communicate() would read past them)
        rest, errors = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert len(lines) >= kill_after, (f"the writer died (status {proc.returncode}) after {len(lines)} "
                                      f"acknowledgements: {errors.strip()[-2000:]}")
    lines += rest.split("\n")[:-1]  # the kill may cut the last line short: only whole lines count
    puts, deleted = set(), set()
    for line in lines:
        assert len(line.split()) == 3, f"unexpected line {line!r} (the writer said: {errors.strip()[-2000:]})"
        word, t, i = line.split()
        (puts if word == "put" else deleted).add((int(t), int(i)))
    assert len(puts) >= min(kill_after, 1)
    with LmdbStore({"path": str(path)}) as store:
        members = store.get("set").values
        for t, i in puts:
            assert f"{t}/{i}".encode() in members, f"acknowledged member {t}/{i} lost (killed after {kill_after})"
            if i % 7 != 5:  # the keys the writer deletes may be gone before their delete is acknowledged
                assert store.get(f"k/{t}/{i}") == LwwLattice(1, b"v"), f"acknowledged put k/{t}/{i} lost"
        for t, i in deleted:
            assert store.get(f"k/{t}/{i}") is None, f"acknowledged delete of k/{t}/{i} undone"


def test_sync_off_never_flushes(tmp_path):
    with LmdbStore({"path": str(tmp_path / "db"), "sync": "off"}) as store:
        env = store._live()
        for i in range(20):
            store.put(f"k/{i}", LwwLattice(1, b"v"))
        assert store.delete("k/0")
        assert (env.commits, env.flushes, env.log) == (21, 0, None)
    assert not (tmp_path / "db" / essa_lmdb.wal.LOG_DIRECTORY).exists()
