"""One flush per commit in the LMDB store, and acknowledgements that wait for it (essa-plugin-lmdb).

With ``sync=on`` the store opens LMDB with ``metasync`` off: a commit flushes
its data pages but writes its meta page unflushed, and its puts are
acknowledged only after a later flush of ``data.mdb`` (the next group's
commit, or an explicit flush when no put waits). These tests count the
store's own commits and flushes (``_Env.commits``, ``_Env.flushes``) and log
them next to the acknowledgements; nothing here depends on timing.
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
from essa.state.bincode import encode_lattice  # noqa: E402
from essa.state.lattice import LwwLattice, SetLattice  # noqa: E402
from essa_lmdb import LmdbStore  # noqa: E402

DEADLINE = 90  # seconds: generous, the machine may be busy


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_the_next_groups_commit_flushes_the_previous_commit(tmp_path, monkeypatch):
    # One put commits alone while 7 others queue; the 7 then commit as one group,
    # whose data flush also flushes the first commit's meta page (acknowledging
    # it), and one explicit flush acknowledges the 7: 3 flushes for 2 commits
    # (LMDB's default, a flush of data and one of the meta page, would take 4).
    commit = essa_lmdb.store._Env._commit
    entered = threading.Event()

    def first_commit_waits_for_seven(self, batch):
        if not entered.is_set():
            entered.set()
            wait_until(lambda: len(self.queue) == 7, "7 queued puts")
        return commit(self, batch)

    monkeypatch.setattr(essa_lmdb.store._Env, "_commit", first_commit_waits_for_seven)
    with LmdbStore({"path": str(tmp_path / "db")}) as store:
        env = store._live()
        commits, flushes = env.commits, env.flushes

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
        assert (env.commits - commits, env.flushes - flushes) == (2, 1)
        assert [store.get(f"k/{t}") for t in range(8)] == [LwwLattice(1, b"v%d" % t) for t in range(8)]
        assert not env.queue and not env.unflushed and not env.leading


def test_every_acknowledgement_waits_for_a_flush_after_its_commit(tmp_path, monkeypatch):
    # 8 threads put distinct keys, repeat puts that change nothing, grow one set and
    # delete keys; a log records each commit (its puts), each explicit flush and each
    # acknowledgement in order. Every acknowledged put must follow a flush that came
    # after the last commit that wrote it (a commit that wrote something flushed
    # the data pages, and so the meta page of every commit before it).
    log: list[tuple] = []
    log_lock = threading.Lock()
    commit, flush = essa_lmdb.store._Env._commit, essa_lmdb.store._Env._flush

    def logged_commit(self, batch):
        changed = commit(self, batch)
        with log_lock:
            log.append(("commit", changed, {(put.key, put.value) for put in batch}))
        return changed

    def logged_flush(self):
        flush(self)
        with log_lock:
            log.append(("flush",))

    monkeypatch.setattr(essa_lmdb.store._Env, "_commit", logged_commit)
    monkeypatch.setattr(essa_lmdb.store._Env, "_flush", logged_flush)
    with LmdbStore({"path": str(tmp_path / "db")}) as store:

        def work(t: int) -> None:
            for i in range(150):
                key = f"k/{t}/{i}"
                value = LwwLattice(1, b"v")
                store.put(key, value)
                with log_lock:
                    log.append(("ack", (key.encode(), encode_lattice(value))))
                store.put(key, value)  # changes nothing, still waits for a flush
                with log_lock:
                    log.append(("ack", (key.encode(), encode_lattice(value))))
                if i % 10 == 0:
                    member = SetLattice([key.encode()])
                    store.put("set", member)
                    with log_lock:
                        log.append(("ack", (b"set", encode_lattice(member))))
                if i % 15 == 0:
                    assert store.delete(key)
                    with log_lock:
                        log.append(("deleted", key.encode()))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
            assert not thread.is_alive()
        env = store._live()
        assert not env.queue and not env.unflushed and not env.leading

    last_write: dict[tuple[bytes, bytes], int] = {}  # (key, value) -> index of the last commit writing it
    last_flush = -1  # index of the last event that flushed data.mdb
    acks = 0
    for n, event in enumerate(log):
        if event[0] == "flush" or (event[0] == "commit" and event[1]):
            last_flush = n
        if event[0] == "commit" and event[1]:
            for put in event[2]:
                last_write[put] = n
        elif event[0] == "ack":
            acks += 1
            written = last_write[event[1]]
            assert last_flush > written, f"{event[1]!r} acknowledged before a flush after its commit (event {n})"
    assert acks == 8 * (300 + 15)
    groups = [len(event[2]) for event in log if event[0] == "commit"]
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
        assert (env.commits, env.flushes) == (21, 0)
        assert not env.unflushed
