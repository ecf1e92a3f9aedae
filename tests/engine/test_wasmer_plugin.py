"""essa-plugin-wasmer beyond the conformance suite: availability, memory cap, WASI table.

Skipped when the plugin is not installed. Where wasmer cannot run (Python
3.11+), the plugin still imports and reports itself unavailable; these tests
check that a user is told so in one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

pytest.importorskip("essa_wasmer")

from essa.testing.conformance.wat import module, wat2wasm  # noqa: E402
from essa_wasmer import memcap, wasi  # noqa: E402
from essa_wasmer.engine import WasmerEngine, _trap_message  # noqa: E402

AVAILABLE = WasmerEngine.unavailable_reason() is None
needs_wasmer = pytest.mark.skipif(not AVAILABLE, reason="wasmer cannot run on this Python")


def essa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "essa", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


# -- availability --------------------------------------------------------------------


@pytest.mark.skipif(AVAILABLE, reason="wasmer runs on this Python")
def test_plugins_shows_wasmer_unavailable_with_the_reason():
    result = essa("plugins")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "wasmer" in text and "unavailable" in text and "Python 3.10" in text


@pytest.mark.skipif(AVAILABLE, reason="wasmer runs on this Python")
def test_engine_wasmer_fails_in_one_line_naming_python_3_10(tmp_path):
    path = tmp_path / "m.wasm"
    path.write_bytes(b"\0asm\x01\0\0\0")
    result = essa("--store", "memory", "--engine", "wasmer", "run", str(path))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("essa: error: engine 'wasmer' is not available here")
    assert "use Python 3.10" in lines[0]


@needs_wasmer
def test_version_names_wasmer_and_the_compiler():
    engine = WasmerEngine()
    assert engine.version.startswith("1.") and "cranelift" in engine.version
    WasmerEngine.name = "wasmer"
    assert engine.artifact_tag == f"wasmer-{engine.version}-maxmem4096p-i3"  # 256 MiB, instrumentation 3


# -- memory cap ------------------------------------------------------------------------


def memory_limits(wasm: bytes) -> list[tuple[int, int | None]]:
    """(minimum, maximum) of each memory a module defines, read back with wasmtime."""
    wasmtime = pytest.importorskip("wasmtime")
    mod = wasmtime.Module(wasmtime.Engine(), wasm)
    return [(e.type.limits.min, e.type.limits.max) for e in mod.exports if isinstance(e.type, wasmtime.MemoryType)]


@pytest.mark.parametrize(
    "declared, cap, expected",
    [("1", 2, (1, 2)), ("1 10", 2, (1, 2)), ("1 2", 4, (1, 2)), ("0", 0, (0, 0)), ("2 2", 2, (2, 2)),
     ("1", 65536, (1, 65536)), ("300 70000", 65536, None)],
    ids=["no-max", "larger-max", "smaller-max", "zero", "equal", "4GiB", "invalid-kept"],
)
def test_cap_memory_lowers_the_maximum(declared, cap, expected):
    if expected is None:
        wasm = bytes.fromhex("0061736d01000000") + bytes([5, 7, 1, 1]) + b"\xac\x02" + b"\xf0\xa2\x04"
        assert memcap.cap_memory(wasm, cap) == wasm  # max above 4 GiB: left for the compiler to refuse
        return
    wasm = wat2wasm(f'(module (memory (export "memory") {declared}) (data (i32.const 0) "x") (func (export "f")))')
    capped = memcap.cap_memory(wasm, cap)
    assert memory_limits(capped) == [expected]


def test_cap_memory_refuses_a_minimum_above_the_cap():
    wasm = wat2wasm('(module (memory (export "memory") 3))')
    with pytest.raises(memcap.MemoryOverLimit, match="3 pages"):
        memcap.cap_memory(wasm, 2)


@pytest.mark.parametrize(
    "wasm",
    [b"", b"\0asm", b"\0asm\x01\0\0\0\x05\x09", b"\0asm\x01\0\0\0\x05\x02\x01\x07", b"(module)"],
    ids=["empty", "header-only", "truncated-section", "unknown-flags", "text"],
)
def test_cap_memory_leaves_what_it_cannot_parse(wasm):
    assert memcap.cap_memory(wasm, 2) == wasm


def test_cap_memory_leaves_modules_without_memory_alone():
    wasm = wat2wasm('(module (func (export "f")))')
    assert memcap.cap_memory(wasm, 2) == wasm


def test_cap_pages():
    assert memcap.cap_pages(1 << 30) == 16384
    assert memcap.cap_pages(65535) == 0
    assert memcap.cap_pages(1 << 40) == 65536


# -- WASI ------------------------------------------------------------------------------


@needs_wasmer
def test_wasi_signatures_match_wasmers_own_wasi():
    import wasmer

    store = wasmer.Store()
    theirs = wasmer.wasi.StateBuilder("x").finalize().generate_imports(store, wasmer.wasi.Version.SNAPSHOT1)
    names = {1: "i32", 2: "i64"}
    for name, function in theirs[wasi.IMPORT_MODULE].items():
        ty = function.type
        expected = (tuple(names[int(t)] for t in ty.params), tuple(names[int(t)] for t in ty.results))
        assert wasi.SIGNATURES.get(name) == expected, name
    assert set(wasi.SIGNATURES) >= set(theirs[wasi.IMPORT_MODULE])
    assert set(wasi.FUNCTIONS) == set(wasi.SIGNATURES)


@needs_wasmer
def test_stdin_reads_wait_for_bytes_and_end_at_the_deadline():
    """A guest blocked reading stdin gets bytes as they arrive, and its time limit still ends it."""
    import time

    from essa.errors import LimitExceeded
    from essa.testing.conformance.support import invocation
    from essa.wasm.limits import Limits
    from essa.wasm.stdin import Stdin

    body = """
  (func (export "__essa_wrapper__read") (param i32)
    (i32.store (i32.const 0x100) (i32.const 0x600)) (i32.store (i32.const 0x104) (i32.const 64))
    (drop (call $fd_read (i32.const 0) (i32.const 0x100) (i32.const 1) (i32.const 0x200)))
    (drop (call $essa_set_result (i32.const 0x600) (i32.load (i32.const 0x200)))))
"""
    imports = '  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))'
    engine = WasmerEngine(Limits(time_limit=30))
    program = engine.prepare(engine.compile(module(body, imports=imports)))
    stdin = Stdin()
    threading.Timer(0.2, stdin.feed, (b"late bytes",)).start()
    inv = invocation()
    inv.stdin = stdin
    program.run(inv, "__essa_wrapper__read", 0)
    assert inv.result == b"late bytes"

    engine = WasmerEngine(Limits(time_limit=0.3))
    program = engine.prepare(engine.compile(module(body, imports=imports)))
    inv = invocation()
    inv.stdin = Stdin()  # nothing ever arrives
    started = time.monotonic()
    with pytest.raises(LimitExceeded, match="time limit exceeded"):
        program.run(inv, "__essa_wrapper__read", 0)
    assert time.monotonic() - started < 20  # ended by the limit, not by a hang


# -- wasmer specifics ------------------------------------------------------------------


def test_trap_message_is_one_short_line_even_for_a_deep_stack():
    frames = "\n".join("    at rec (<module>[10]:0x155)" for _ in range(100_000))
    message = _trap_message(RuntimeError(f"RuntimeError: call stack exhausted\n{frames}"))
    assert message == "call stack exhausted (in rec)"
    assert _trap_message(RuntimeError("RuntimeError: unreachable\n    at <unnamed> (<module>[7]:0x13b)")) == (
        "wasm `unreachable` instruction executed (in <wasm function 7>)"
    )
    assert _trap_message(RuntimeError("RuntimeError: integer divide by zero")) == "integer divide by zero"
    frames = "\n".join(f"    at {name} (<module>[{i}]:0x1{i})" for i, name in enumerate(["abort", "check", "tally", "main"]))
    assert _trap_message(RuntimeError(f"RuntimeError: unreachable\n{frames}")) == (
        "wasm `unreachable` instruction executed (in abort <- check <- tally <- ...)"
    )


@needs_wasmer
def test_objects_made_on_one_thread_are_dropped_safely_on_another():
    """wasmer's objects are unsendable; a program used on many threads must not panic when freed."""
    import gc

    from essa.testing.conformance.support import invocation

    engine = WasmerEngine()
    program = engine.prepare(engine.compile(module()))

    def use() -> None:
        inv = invocation(b"x")
        program.run(inv, "__essa_wrapper__echo", 1)
        assert inv.result == b"x"

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    use()
    program = None  # the last reference goes, on this thread
    gc.collect()


# -- granted directories (essa_wasmer.wasi_fs): pure Python, no wasmer needed -----------


@pytest.fixture
def granted(tmp_path):
    wasi_fs = pytest.importorskip("essa_wasmer.wasi_fs")
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "file").write_bytes(b"inside")
    (tmp_path / "outside").write_bytes(b"secret")
    os.symlink(tmp_path, root / "a" / "up")  # a directory link pointing out
    os.symlink(tmp_path / "outside", root / "leak")
    directory = wasi_fs.Directory.preopen(str(root), "/r", writable=True)
    yield wasi_fs, directory
    directory.close()


@pytest.mark.parametrize(
    "path, errno",
    [
        ("/etc/passwd", 63), ("..", 63), ("a/../..", 63), ("a/b/../../../outside", 63),
        ("a/up/outside", 63),  # a link to an absolute path: followed, it would lead out
        ("leak", 32),  # a link at the end, not followed: ELOOP
        ("", 44), ("nope/file", 44), ("a/file/x", 54), ("a/\0", 28),
    ],
    ids=["absolute", "dotdot", "dotdot-deep", "dotdot-after-descent", "dir-symlink-out", "file-symlink", "empty",
         "missing", "through-a-file", "nul"],
)
def test_paths_never_leave_the_granted_directory(granted, path, errno):
    wasi_fs, directory = granted
    with pytest.raises(wasi_fs.FsError) as info:
        entry = wasi_fs.open_at(directory, path, 0, 0, 1 << 1, 0)
        entry.close()
    assert info.value.errno == errno


def test_paths_that_stay_inside_resolve(granted, tmp_path):
    wasi_fs, directory = granted
    for path in ("a/file", "./a/./file", "a/b/../file", "a//file"):
        entry = wasi_fs.open_at(directory, path, 0, 0, 1 << 1, 0)
        assert os.read(entry.fd, 100) == b"inside"
        entry.close()
    below = wasi_fs.open_at(directory, "a/b", 0, 2, 1 << 14, 0)  # O_DIRECTORY
    assert isinstance(below, wasi_fs.Directory)
    with pytest.raises(wasi_fs.FsError) as info:  # every directory descriptor is a root of its own
        wasi_fs.open_at(below, "../file", 0, 0, 1 << 1, 0)
    assert info.value.errno == 63
    directory.close()  # the preopen goes; what was opened below it still resolves through its own handle
    (tmp_path / "root" / "a" / "b" / "c").mkdir()
    assert isinstance(wasi_fs.open_at(below, "c", 0, 2, 1 << 14, 0), wasi_fs.Directory)
    below.close()


def test_manual_resolution_agrees_with_openat2(granted, monkeypatch):
    """Where the kernel has no openat2, paths are resolved one component at a time, with the same answers."""
    wasi_fs, directory = granted
    from essa_wasmer import wasi_paths

    cases = ["a/file", "./a/./file", "a/b/../file", "a//file", "a/b/", "a/b/.", "a/b/..", "a/up/outside", "leak",
             "..", "a/../..", "nope/file", "a/file/x", "a/file/", "/etc"]
    def outcomes():
        found = {}
        for path in cases:
            for follow in (0, 1):
                try:
                    entry = wasi_fs.open_at(directory, path, follow, 0, 1 << 1, 0)
                except wasi_fs.FsError as exc:
                    found[path, follow] = exc.errno
                else:
                    found[path, follow] = type(entry).__name__
                    entry.close()
        return found

    with_openat2 = outcomes()
    monkeypatch.setattr(wasi_paths, "use_openat2", False)
    assert outcomes() == with_openat2


def test_fifos_and_devices_cannot_be_opened(granted, tmp_path):
    wasi_fs, directory = granted
    os.mkfifo(tmp_path / "root" / "fifo")
    with pytest.raises(wasi_fs.FsError) as info:
        wasi_fs.open_at(directory, "fifo", 0, 0, 1 << 1, 0)  # would block the host without O_NONBLOCK
    assert info.value.errno == 2



@needs_wasmer
def test_a_thread_that_ends_leaves_no_copy_of_the_program_behind():
    """Each thread links its own copy; when an executor's pool ends the thread, wasmer frees the copy's code."""
    from essa.testing.conformance.support import invocation

    engine = WasmerEngine()
    program = engine.prepare(engine.compile(module()))

    def use() -> None:
        inv = invocation(b"x")
        program.run(inv, "__essa_wrapper__echo", 1)
        assert inv.result == b"x"

    def mappings() -> int:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)

    def threads(count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=use)
            thread.start()
            thread.join()

    threads(20)  # allocators warm
    before = mappings()
    threads(200)
    # With one engine for all threads, each thread's copy stayed: 2+ mappings per thread.
    assert mappings() - before < 40
