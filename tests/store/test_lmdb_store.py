"""Behaviour of the embedded LMDB store (essa-plugin-lmdb).

Skipped when the plugin is not installed, so the core runs its tests alone.
"""

from __future__ import annotations

import importlib.metadata
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

pytest.importorskip("essa_lmdb")

import pluggy  # noqa: E402

import essa.hookspecs  # noqa: E402
from essa.errors import DecodeError, LatticeTypeError, StoreError  # noqa: E402
from essa.state.bincode import decode_lattice, encode_lattice  # noqa: E402
from essa.state.lattice import LwwLattice, SetLattice  # noqa: E402
from essa_lmdb import LmdbStore  # noqa: E402
from essa_lmdb.store import KEY_LIMIT  # noqa: E402


def open_store(path: Path, **options: str) -> LmdbStore:
    return LmdbStore({"path": str(path), **options})


def members(*names: str) -> SetLattice:
    return SetLattice(values=frozenset(n.encode() for n in names))


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "db")
    yield s
    s.close()


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


# -- durability ----------------------------------------------------------------------


def test_value_survives_close_and_reopen(tmp_path):
    with open_store(tmp_path / "db") as s:
        s.put("k", LwwLattice(timestamp=7, value=b"seven"))
    with open_store(tmp_path / "db") as s:
        assert s.get("k") == LwwLattice(timestamp=7, value=b"seven")


def test_write_from_another_process_is_readable(tmp_path):
    path = tmp_path / "db"
    proc = run_python(
        f"""
        from essa_lmdb import LmdbStore
        from essa.state.lattice import SetLattice
        with LmdbStore({{"path": {str(path)!r}}}) as s:
            s.put("shared", SetLattice(values=frozenset([b"from-child"])))
        """
    )
    assert proc.returncode == 0, proc.stderr
    with open_store(path) as s:
        assert s.get("shared") == members("from-child")


def test_acknowledged_write_survives_a_killed_writer(tmp_path):
    # The writer never closes its store: it is killed right after put()
    # returned, so the value must already be committed.
    path = tmp_path / "db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from essa_lmdb import LmdbStore
                from essa.state.lattice import LwwLattice
                s = LmdbStore({{"path": {str(path)!r}}})
                s.put("acked", LwwLattice(timestamp=1, value=b"durable"))
                print("acked", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)  # a child that never answers fails the test, never hangs it
    watchdog.start()
    try:
        assert proc.stdout.readline().strip() == "acked"
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    with open_store(path) as s:
        assert s.get("acked") == LwwLattice(timestamp=1, value=b"durable")


def test_puts_acknowledged_by_concurrent_threads_survive_a_killed_writer(tmp_path):
    # 8 threads put distinct keys and a set member each, printing each put once it
    # returned; the writer is killed (-9) mid-stream, with group commits in flight.
    # (A change to how commits are flushed, such as the ones the README's "One flush
    # per commit" measures, must keep this passing.)
    path = tmp_path / "db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, threading
                from essa_lmdb import LmdbStore
                from essa.state.lattice import LwwLattice, SetLattice
                s = LmdbStore({{"path": {str(path)!r}}})
                out = threading.Lock()
                def work(t):
                    for i in range(1_000_000):
                        s.put(f"k/{{t}}/{{i}}", LwwLattice(timestamp=1, value=b"v"))
                        s.put("set", SetLattice(frozenset([f"{{t}}/{{i}}".encode()])))
                        with out:
                            print(t, i, flush=True)
                for t in range(8):
                    threading.Thread(target=work, args=(t,), daemon=True).start()
                threading.Event().wait()
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)  # a child that never answers fails the test, never hangs it
    watchdog.start()
    acked: list[tuple[int, int]] = []
    try:
        while len(acked) < 400:
            line = proc.stdout.readline()
            assert line, "the writer died before acknowledging 400 puts"
            t, i = map(int, line.split())
            acked.append((t, i))
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    with open_store(path) as s:
        stored = s.get("set")
        for t, i in acked:
            assert s.get(f"k/{t}/{i}") == LwwLattice(timestamp=1, value=b"v")
            assert f"{t}/{i}".encode() in stored.values


# -- merge semantics -------------------------------------------------------------------


def test_get_missing_key_is_none(store):
    assert store.get_bytes("nothing") is None
    assert store.get("nothing") is None


def test_set_merges_union(store):
    store.put("s", members("a", "b"))
    store.put("s", members("b", "c"))
    assert store.get("s") == members("a", "b", "c")


def test_lww_keeps_larger_timestamp(store):
    store.put("l", LwwLattice(timestamp=20, value=b"new"))
    store.put("l", LwwLattice(timestamp=10, value=b"old"))
    assert store.get("l") == LwwLattice(timestamp=20, value=b"new")
    store.put("l", LwwLattice(timestamp=30, value=b"newer"))
    assert store.get("l") == LwwLattice(timestamp=30, value=b"newer")


def test_get_bytes_returns_the_encoding(store):
    store.put("k", members("x"))
    data = store.get_bytes("k")
    assert type(data) is bytes
    assert decode_lattice(data) == members("x")
    assert data == encode_lattice(members("x"))


def test_type_mismatch_raises_and_leaves_value_byte_identical(store):
    store.put("k", members("a"))
    before = store.get_bytes("k")
    with pytest.raises(LatticeTypeError):
        store.put("k", LwwLattice(timestamp=1, value=b"x"))
    assert store.get_bytes("k") == before
    store.put("k", members("b"))  # the store still works afterwards
    assert store.get("k") == members("a", "b")


@pytest.mark.parametrize("bad", [b"", b"\xff\xff\xff\xff", b"\x01\x00\x00\x00\x05"])
def test_undecodable_bytes_raise_and_change_nothing(store, bad):
    store.put("k", members("a"))
    before = store.get_bytes("k")
    with pytest.raises(DecodeError):
        store.merge_bytes("k", bad)
    with pytest.raises(DecodeError):
        store.merge_bytes("absent", bad)
    assert store.get_bytes("k") == before
    assert store.get_bytes("absent") is None


# -- concurrency -------------------------------------------------------------------------


def _merge_members(path: str, tag: str, threads: int, per_thread: int) -> None:
    store = LmdbStore({"path": path})
    errors = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                store.put("union", SetLattice(values=frozenset([f"{tag}-{t}-{i}".encode()])))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    store.close()
    if errors:
        raise errors[0]


def test_processes_and_threads_converge_to_the_full_union(tmp_path):
    path = str(tmp_path / "db")
    open_store(tmp_path / "db").close()  # create it once, before the race
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_merge_members, args=(path, f"p{n}", 2, 25)) for n in range(4)]
    for p in procs:
        p.start()
    _merge_members(path, "parent", 4, 25)  # the parent merges at the same time
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    expected = {f"p{n}-{t}-{i}".encode() for n in range(4) for t in range(2) for i in range(25)}
    expected |= {f"parent-{t}-{i}".encode() for t in range(4) for i in range(25)}
    with open_store(tmp_path / "db") as s:
        assert s.get("union").values == expected
    assert len(expected) == 300


def test_threads_on_two_stores_of_one_path_lose_nothing(tmp_path):
    a = open_store(tmp_path / "db")
    b = open_store(tmp_path / "db")  # same environment, not opened twice

    def work(s: LmdbStore, t: int) -> None:
        for i in range(50):
            s.put("u", members(f"{t}-{i}"))

    workers = [threading.Thread(target=work, args=(a if t % 2 else b, t)) for t in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(a.get("u").values) == 400
    a.close()
    assert len(b.get("u").values) == 400  # closing one store leaves the other open
    b.close()
    with open_store(tmp_path / "db") as c:  # and the last close really closed it
        assert len(c.get("u").values) == 400


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_store_inherited_through_fork_is_refused_in_the_child(tmp_path):
    s = open_store(tmp_path / "db")
    s.put("k", members("parent"))
    # A read transaction the parent holds across the fork: the child must not
    # clear its slot in the shared reader table (closing an inherited
    # environment would, since the slot carries the parent's pid).
    env = s._entry.env
    held = env.begin()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into pytest
        code = 1
        try:
            try:
                s.get("k")
                report = "inherited store was usable"
            except StoreError as exc:
                report = "refused: " + str(exc)
                if "fork" in str(exc):
                    code = 0
            s.close()  # must not close the parent's environment
            try:
                fresh = open_store(tmp_path / "db")
            except StoreError as exc:
                if "fork" not in str(exc):
                    code = 1
                    report = "bad error: " + str(exc)
            else:  # older py-lmdb allows a second handle in the child
                if fresh.get("k") != members("parent"):
                    code = 1
                fresh.put("k", members("child"))
        except BaseException as exc:
            code, report = 1, f"{type(exc).__name__}: {exc}"
        os.write(write_fd, report.encode()[:4000])
        os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    report = os.read(read_fd, 4096).decode()
    os.close(read_fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, report
    # The parent's store is unharmed.
    assert f"{os.getpid()} " in env.readers(), env.readers()
    held.abort()
    s.put("k", members("parent-2"))
    assert {b"parent", b"parent-2"} <= s.get("k").values
    s.close()


def test_map_grown_by_another_process_is_adopted(tmp_path):
    path = tmp_path / "db"
    small = open_store(path, map_size="256K")
    small.put("first", LwwLattice(timestamp=1, value=b"x"))
    proc = run_python(
        f"""
        from essa_lmdb import LmdbStore
        from essa.state.lattice import LwwLattice
        with LmdbStore({{"path": {str(path)!r}, "map_size": "64M"}}) as s:
            for i in range(30):
                s.put(f"big{{i}}", LwwLattice(timestamp=1, value=bytes(100_000)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert small.get("big29") == LwwLattice(timestamp=1, value=bytes(100_000))
    small.put("more", LwwLattice(timestamp=1, value=bytes(100_000)))
    assert small.get("first") == LwwLattice(timestamp=1, value=b"x")
    small.close()


# -- options and errors -----------------------------------------------------------------------


def test_unknown_option_names_it_and_lists_valid_ones(tmp_path):
    with pytest.raises(StoreError) as info:
        LmdbStore({"path": str(tmp_path), "mapsize": "1G"})
    message = str(info.value)
    assert "mapsize" in message
    for valid in ("path", "map_size", "sync"):
        assert valid in message


@pytest.mark.parametrize(
    "options, word",
    [
        ({"map_size": "lots"}, "map_size"),
        ({"map_size": "1K"}, "map_size"),
        ({"sync": "maybe"}, "sync"),
        ({"max_readers": "0"}, "max_readers"),
        ({"path": ""}, "path"),
    ],
)
def test_invalid_option_values(tmp_path, options, word):
    opts = {"path": str(tmp_path / "db"), **options}
    with pytest.raises(StoreError, match=word):
        LmdbStore(opts)


def test_path_that_is_a_file_is_named(tmp_path):
    f = tmp_path / "not-a-dir"
    f.write_text("hello")
    with pytest.raises(StoreError) as info:
        open_store(f)
    assert str(f) in str(info.value)
    assert "not a directory" in str(info.value)
    assert f.read_text() == "hello"


def test_path_that_cannot_be_created_is_named(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    target = f / "sub" / "db"
    with pytest.raises(StoreError) as info:
        open_store(target)
    assert str(target) in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_directory_is_named(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(StoreError) as info:
            open_store(d)
        assert str(d) in str(info.value)
    finally:
        d.chmod(0o755)


def test_garbage_data_file_gives_store_error(tmp_path):
    d = tmp_path / "db"
    d.mkdir()
    (d / "data.mdb").write_bytes(b"this is not an lmdb file" * 1000)
    with pytest.raises(StoreError) as info:
        open_store(d)
    assert str(d) in str(info.value)


def test_tiny_map_fills_up_with_a_clear_error_and_keeps_acked_values(tmp_path):
    path = tmp_path / "db"
    s = open_store(path, map_size="64K")
    acked = []
    with pytest.raises(StoreError) as info:
        for i in range(1000):
            s.put(f"k{i}", LwwLattice(timestamp=i, value=bytes([i % 256]) * 1000))
            acked.append(i)
    message = str(info.value)
    assert "full" in message and str(s.path) in message
    assert "map_size=" in message and str(64 * 1024) in message
    assert acked, "nothing fitted at all"
    for i in acked:
        assert s.get(f"k{i}") == LwwLattice(timestamp=i, value=bytes([i % 256]) * 1000)
    s.close()
    with open_store(path, map_size="1M") as bigger:  # raising map_size lets writes go on
        bigger.put("after", members("ok"))
        assert bigger.get(f"k{acked[-1]}") is not None


@pytest.fixture(params=["1m"])
def tiny_filesystem(request, tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(mnt)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_gives_a_clear_error_and_keeps_acked_values(tiny_filesystem):
    path = tiny_filesystem / "db"
    s = open_store(path, map_size="64M")
    acked = []
    with pytest.raises(StoreError) as info:
        for i in range(100):
            s.put(f"k{i}", LwwLattice(timestamp=i, value=bytes(50_000)))
            acked.append(i)
    assert f"the disk holding {s.path} is full (" in str(info.value) and "bytes free)" in str(info.value)
    assert acked
    for i in acked:
        assert s.get(f"k{i}") == LwwLattice(timestamp=i, value=bytes(50_000))
    s.close()


@pytest.mark.parametrize("tiny_filesystem", ["2m"], indirect=True)
def test_a_full_disk_reported_as_eio_is_named_as_full(tiny_filesystem):
    # LMDB reports a write the filesystem cut short as EIO ("Input/output error")
    path = tiny_filesystem / "db"
    s = open_store(path, map_size="64M")
    acked = {}
    errors = []
    for i in range(400):
        value = LwwLattice(timestamp=i, value=os.urandom(8192))
        try:
            s.put(f"k{i}", value)
        except StoreError as exc:
            errors.append(str(exc))
        else:
            acked[f"k{i}"] = value
    s.close()
    assert errors and acked
    assert all(f"the disk holding {s.path} is full (" in e for e in errors), errors[:3]
    assert not any("Input/output error" in e for e in errors)
    # every acknowledged put is there, read by another process
    proc = run_python(f"""
        from essa_lmdb import LmdbStore
        with LmdbStore({{"path": {str(path)!r}}}) as s:
            print(sum(s.get_bytes(f"k{{i}}") is not None for i in range(400)))
        """)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(acked)
    with open_store(path) as s:
        assert all(s.get(k) == v for k, v in acked.items())


def test_full_disk_message_only_for_a_full_disk(tmp_path):
    import errno

    from essa_lmdb import full_disk_message

    assert full_disk_message(tmp_path, errno.EACCES) is None
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    if free > 1 << 30:  # a roomy disk: EIO is an I/O error, not a full disk
        assert full_disk_message(tmp_path, errno.EIO) is None
    assert full_disk_message(tmp_path, errno.ENOSPC).startswith(f"the disk holding {tmp_path} is full (")


def test_default_path_honours_essa_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ESSA_HOME", str(tmp_path / "home"))
    with LmdbStore() as s:
        s.put("k", members("a"))
        assert s.describe() == f"lmdb at {os.path.realpath(tmp_path / 'home' / 'lmdb')}"
    assert (tmp_path / "home" / "lmdb" / "data.mdb").is_file()


def test_closed_store_refuses_operations(tmp_path):
    s = open_store(tmp_path / "db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.get("k")
    with pytest.raises(StoreError, match="closed"):
        s.put("k", members("a"))


def test_sync_off_works_and_conflicting_sync_is_refused(tmp_path):
    with open_store(tmp_path / "db", sync="off") as fast:
        fast.put("k", members("a"))
        with pytest.raises(StoreError, match="sync"):
            open_store(tmp_path / "db", sync="on")
    with open_store(tmp_path / "db") as s:
        assert s.sync is True
        assert s.get("k") == members("a")


# -- keys -----------------------------------------------------------------------------------


def test_long_keys_are_distinct_and_stable(tmp_path):
    prefix = "p" * 600
    keys = ["a" * (KEY_LIMIT - 1), "a" * KEY_LIMIT, "a" * (KEY_LIMIT + 1), prefix + "x", prefix + "y", "é" * 400]
    with open_store(tmp_path / "db") as s:
        for n, key in enumerate(keys):
            s.put(key, LwwLattice(timestamp=1, value=str(n).encode()))
    with open_store(tmp_path / "db") as s:
        for n, key in enumerate(keys):
            assert s.get(key) == LwwLattice(timestamp=1, value=str(n).encode())


def test_empty_key_is_refused(store):
    with pytest.raises(StoreError):
        store.put("", members("a"))


def test_unicode_keys(store):
    store.put("módulo/data/ключ", members("v"))
    assert store.get("módulo/data/ключ") == members("v")
    assert store.get("modulo/data/ключ") is None


# -- plugin discovery ------------------------------------------------------------------------------


def test_entry_point_is_discoverable_and_registers_the_store():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="essa")}
    assert "lmdb" in eps
    module = eps["lmdb"].load()
    pm = pluggy.PluginManager("essa")
    pm.add_hookspecs(essa.hookspecs)
    pm.register(module, name="lmdb")
    registered = {}
    pm.hook.essa_register_stores(register=lambda name, cls: registered.setdefault(name, cls))
    assert registered == {"lmdb": LmdbStore}


def test_readers_exhausted_gives_a_clear_error(tmp_path):
    s = open_store(tmp_path / "db", max_readers="2")
    s.put("k", members("a"))
    env = s._entry.env
    held = [env.begin(), env.begin()]  # every reader slot taken
    try:
        with pytest.raises(StoreError) as info:
            s.get("k")
        assert "reader" in str(info.value) and str(s.path) in str(info.value)
    finally:
        for txn in held:
            txn.abort()
        held.clear()  # py-lmdb frees a reader slot when the transaction object goes
    assert s.get("k") == members("a")
    s.close()
