"""``essa run FILE.wasm [--] [ARGS]...`` with stdin, as a user runs it: embedded and on a cluster.

The guest (WAT, below) writes its argv, then what a remote call of its own
saw (the same argv, an empty stdin), then copies its stdin to stdout chunk by
chunk as it arrives, so the tests can tell streaming from reading everything
first.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time

import pytest
from e2e.test_cli import assert_one_line_error

from essa.testing.conformance.wat import module

ESSA = [sys.executable, "-m", "essa"]

WASI_IMPORTS = "\n".join(
    f'  (import "wasi_snapshot_preview1" "{name}" (func ${name} (param {params}) (result i32)))'
    for name, params in (("args_sizes_get", "i32 i32"), ("args_get", "i32 i32"), ("fd_read", "i32 i32 i32 i32"))
)

#: Memory: 0x100 iovec, 0x200 counts, 0x300 argv pointers, 0x1000 argv bytes, 0x2000 stdin buffer,
#: 0x3000 labels, 0x6000 remote result.
DATA = {0x3000: b"argv:", 0x3010: b"\nremote:", 0x3020: b"\nstdin:\n", 0x3030: b"__essa_wrapper__remote"}

HELPERS = """
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0x100) (local.get $ptr))
    (i32.store (i32.const 0x104) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0x100) (i32.const 1) (i32.const 0x204))))
  ;; argv's bytes at 0x1000; returns their length
  (func $argv (result i32)
    (drop (call $args_sizes_get (i32.const 0x200) (i32.const 0x208)))
    (drop (call $args_get (i32.const 0x300) (i32.const 0x1000)))
    (i32.load (i32.const 0x208)))
  ;; one fd_read of stdin into 0x2000; returns the bytes read
  (func $read_stdin (result i32)
    (i32.store (i32.const 0x100) (i32.const 0x2000))
    (i32.store (i32.const 0x104) (i32.const 0x1000))
    (drop (call $fd_read (i32.const 0) (i32.const 0x100) (i32.const 1) (i32.const 0x20c)))
    (i32.load (i32.const 0x20c)))
  ;; a remote call's answer: its argv bytes, then one byte: how many bytes its stdin gave
  (func (export "__essa_wrapper__remote") (param i32)
    (local $n i32)
    (local.set $n (call $argv))
    (i32.store8 (i32.add (i32.const 0x1000) (local.get $n)) (call $read_stdin))
    (drop (call $essa_set_result (i32.const 0x1000) (i32.add (local.get $n) (i32.const 1)))))
"""

START = """
    (local $n i32)
    (call $print (i32.const 0x3000) (i32.const 5))
    (call $print (i32.const 0x1000) (call $argv))
    (call $print (i32.const 0x3010) (i32.const 8))
    (drop (call $essa_call (i32.const 0x3030) (i32.const 22) (i32.const 0) (i32.const 0) (i32.const 0x210)))
    (drop (call $essa_get_result (i32.load (i32.const 0x210)) (i32.const 0x6000) (i32.const 0x1000)
      (i32.const 0x214)))
    (call $print (i32.const 0x6000) (i32.load (i32.const 0x214)))
    (call $print (i32.const 0x3020) (i32.const 8))
    (block $done (loop $more
      (local.set $n (call $read_stdin))
      (br_if $done (i32.eqz (local.get $n)))
      (call $print (i32.const 0x2000) (local.get $n))
      (br $more)))
"""


@pytest.fixture
def echo(tmp_path):
    path = tmp_path / "echo.wasm"
    path.write_bytes(module(HELPERS, DATA, start=START, imports=WASI_IMPORTS))
    return str(path)


def run(engine_name, *args: str, stdin: bytes | None = b"", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*ESSA, "--store", "memory", "--engine", engine_name, "run", *args], input=stdin,
                          capture_output=True, timeout=timeout, env=dict(os.environ))


def parts(stdout: bytes) -> tuple[list[str], list[str], int, bytes]:
    """argv, the remote call's argv, the bytes its stdin gave, and the echoed stdin."""
    head, _, echoed = stdout.partition(b"\nstdin:\n")
    argv, _, remote = head.removeprefix(b"argv:").partition(b"\nremote:")
    split = lambda raw: raw.decode().split("\0")[:-1]  # noqa: E731
    return split(argv), split(remote[:-1]), remote[-1], echoed


def test_arguments_and_stdin_reach_the_module(engine_name, echo):
    result = run(engine_name, echo, "one", "two words", "--flag", "", stdin=b"line one\nline two\n")
    assert result.returncode == 0, result.stderr
    argv, remote_argv, remote_stdin, echoed = parts(result.stdout)
    assert argv == [echo, "one", "two words", "--flag", ""]
    assert remote_argv == argv, "remote calls see the run's arguments"
    assert remote_stdin == 0, "remote calls read an empty stdin"
    assert echoed == b"line one\nline two\n"


def test_a_double_dash_after_the_module_separates_arguments(engine_name, echo):
    result = run(engine_name, echo, "--", "--", "-x")
    assert result.returncode == 0, result.stderr
    assert parts(result.stdout)[0] == [echo, "--", "-x"]


def test_stdin_from_a_file_or_none(engine_name, echo, tmp_path):
    data = tmp_path / "input.bin"
    data.write_bytes(bytes(range(256)) * 300)  # more than one chunk, every byte value
    result = run(engine_name, "--stdin", str(data), echo, stdin=b"ignored")
    assert result.returncode == 0, result.stderr
    assert parts(result.stdout)[3] == data.read_bytes()
    result = run(engine_name, "--no-stdin", echo, stdin=b"ignored")
    assert result.returncode == 0, result.stderr
    assert parts(result.stdout)[3] == b""
    result = run(engine_name, "--no-stdin", "--stdin", str(data), echo)
    assert result.returncode == 2 and "--stdin and --no-stdin exclude each other" in result.stderr.decode()


def test_plugins_shows_what_each_engine_gives_guests():
    from essa.plugins import get_plugin_manager

    engines = get_plugin_manager().engine_support
    assert engines, "no engine plugin installed"
    result = subprocess.run([*ESSA, "plugins"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    table = result.stdout[result.stdout.index("engines: what guests can be given"):]
    for name, cls in engines.items():
        row = next(line for line in table.splitlines() if f" {name} " in line)
        assert "--dir" in row, row
        for feature in cls.wasi_features:
            assert feature in table, feature
    assert "argv" in table and "stdin (streamed)" in table


def test_arguments_wasi_cannot_carry_are_refused_in_one_line(engine_name, echo):
    result = subprocess.run([*ESSA, "--store", "memory", "--engine", engine_name, "run", echo, b"\xff\xfe"],
                            capture_output=True, text=True, timeout=120)
    assert_one_line_error(result, "argument 1 is not valid UTF-8")


def test_a_module_waiting_for_stdin_ends_at_its_time_limit(engine_name, echo):
    with subprocess.Popen([*ESSA, "--store", "memory", "--engine", engine_name, "run", "--time-limit", "1", echo],
                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            proc.wait(120)  # stdin stays open and silent
            err = proc.stderr.read()  # type: ignore[union-attr]
        finally:
            proc.kill()
    assert proc.returncode == 1
    assert "time limit exceeded (1 s)" in err.decode()


class Interactive:
    """``essa run`` as a child process whose stdin the test writes line by line."""

    def __init__(self, *command: str) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line)

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(data)  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def expect(self, line: bytes, timeout: float = 60) -> None:
        """Wait for ``line`` on stdout (a readiness signal, with a generous deadline)."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                got = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(got)
            if got.endswith(line):
                return
        raise AssertionError(f"no {line!r} within {timeout} s; saw {seen!r}; stderr: {self._stderr()}")

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode()  # type: ignore[union-attr]

    def finish(self, timeout: float = 60) -> int:
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc.kill()


def converse(*command: str) -> None:
    """Each line reaches the module (and comes back) before the next one is typed."""
    session = Interactive(*command)
    try:
        session.expect(b"stdin:\n")
        session.send(b"first\n")
        session.expect(b"first\n")
        session.send(b"second\n")
        session.expect(b"second\n")
        assert session.finish() == 0
    finally:
        session.proc.kill()


def test_stdin_is_streamed_as_the_module_reads_it(engine_name, echo):
    converse(*ESSA, "--store", "memory", "--engine", engine_name, "run", echo)


def test_arguments_and_stdin_travel_to_a_cluster(engine_name, echo, tmp_path):
    pytest.importorskip("zenoh")
    pytest.importorskip("essa_lmdb")
    from e2e.test_cluster import Cluster

    cluster = Cluster(engine_name, tmp_path)
    try:
        cluster.scheduler()
        cluster.executor("0")
        cluster.wait_for_executors(1)
        result = subprocess.run([*ESSA, "run", "--connect", cluster.endpoint, "--timeout", "60", echo, "a", "b c"],
                                input=b"over the wire\n", capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr.decode() + cluster.log_text()
        argv, remote_argv, remote_stdin, echoed = parts(result.stdout)
        assert argv == remote_argv == [echo, "a", "b c"]
        assert remote_stdin == 0 and echoed == b"over the wire\n"
        converse(*ESSA, "run", "--connect", cluster.endpoint, "--timeout", "60", echo)
    finally:
        cluster.stop()
