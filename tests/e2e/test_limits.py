"""Limits and grants from the command line: embedded runs, executors, ``essa up``.

Engine-level and runtime-level behaviour is in the conformance suite
(``test_limits``, ``test_sandbox``); here a user meets it: flags, one-line
errors, exit statuses, output that streams, and executors that apply their
own limits whatever a client sends them, also over zenoh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from .test_cli import (
    EXPECTED_TEST_FUNCTION_OUTPUT,
    TEST_FUNCTION,
    assert_one_line_error,
    essa,
)

wasmtime = pytest.importorskip("wasmtime")

ESSA = [sys.executable, "-m", "essa"]

SPIN = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'
BOMB = """(module (memory (export "memory") 1)
  (func (export "_start") (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))))"""


def flood(chunks: int) -> str:
    """A module that writes ``chunks`` times 64 KiB to stdout."""
    return f"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start") (local $n i32)
    (i32.store (i32.const 0) (i32.const 0x10000))
    (i32.store (i32.const 4) (i32.const 0x10000))
    (local.set $n (i32.const {chunks}))
    (loop $l
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n)))))"""


#: Prints its environment, then hello.txt of the first preopened directory; exits 5 without one.
CAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x100) "hello.txt")
  (func (export "_start")
    (drop (call $environ_sizes_get (i32.const 0x200) (i32.const 0x204)))
    (drop (call $environ_get (i32.const 0x300) (i32.const 0x400)))
    (i32.store (i32.const 0x208) (i32.const 0x400))
    (i32.store (i32.const 0x20c) (i32.load (i32.const 0x204)))
    (drop (call $fd_write (i32.const 1) (i32.const 0x208) (i32.const 1) (i32.const 0x210)))
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 0x100) (i32.const 9) (i32.const 0)
          (i64.const 0x200026) (i64.const 0x200026) (i32.const 0) (i32.const 0x220))
      (then (call $proc_exit (i32.const 5))))
    (i32.store (i32.const 0x228) (i32.const 0x800))
    (i32.store (i32.const 0x22c) (i32.const 256))
    (drop (call $fd_read (i32.load (i32.const 0x220)) (i32.const 0x228) (i32.const 1) (i32.const 0x230)))
    (i32.store (i32.const 0x238) (i32.const 0x800))
    (i32.store (i32.const 0x23c) (i32.load (i32.const 0x230)))
    (drop (call $fd_write (i32.const 1) (i32.const 0x238) (i32.const 1) (i32.const 0x240)))))"""


@pytest.fixture
def wat_file(tmp_path):
    def make(wat: str, name: str = "m.wasm") -> str:
        path = tmp_path / name
        path.write_bytes(wasmtime.wat2wasm(wat))
        return str(path)

    return make


def run(engine_name: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return essa("--store", "memory", "--engine", engine_name, "run", *args, **kwargs)


# -- embedded runs ----------------------------------------------------------------------


def test_a_time_limit_ends_the_run_in_one_line(engine_name, wat_file):
    result = run(engine_name, "--time-limit", "0.5", wat_file(SPIN))
    assert_one_line_error(result, "the module's _start: time limit exceeded (0.5 s)")
    assert result.returncode == 1


def test_the_time_limit_comes_from_the_environment_too(engine_name, wat_file):
    result = subprocess.run([*ESSA, "--store", "memory", "--engine", engine_name, "run", wat_file(SPIN)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "ESSA_TIME_LIMIT": "300ms"})
    assert_one_line_error(result, "time limit exceeded (0.3 s)")


def test_a_memory_limit_ends_the_run_in_one_line(engine_name, wat_file):
    result = run(engine_name, "--memory-limit", "1M", wat_file(BOMB))
    assert_one_line_error(result, "the module's _start: memory limit exceeded (1 MiB)")
    assert run(engine_name, "--memory-limit", "16M", wat_file(BOMB)).returncode == 0


def test_output_stops_at_the_output_limit(engine_name, wat_file, tmp_path):
    stdout = tmp_path / "stdout"
    with open(stdout, "wb") as out:
        result = subprocess.run([*ESSA, "--store", "memory", "--engine", engine_name, "run", "--output-limit", "1M",
                                 wat_file(flood(100))], stdout=out, stderr=subprocess.PIPE, text=True, timeout=120)
    assert_one_line_error(result, "the module's _start: output limit exceeded (1 MiB)")
    assert stdout.stat().st_size == 1 << 20


def test_a_hundred_megabytes_of_output_stream_through_without_piling_up(engine_name, wat_file):
    # The peak RSS comes from a small wrapper process: Linux counts the RSS a
    # process had before exec into its maximum, and this test process is big.
    measure = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
               "_, status, usage = os.wait4(p.pid, 0); print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", measure, *ESSA, "--store", "memory", "--engine", engine_name, "run",
                             "--output-limit", "none", wat_file(flood(1600))], capture_output=True, text=True,
                            timeout=300)
    status, maxrss_kib = map(int, result.stdout.split())
    assert status == 0, result.stderr
    assert maxrss_kib < 100 * 1024, f"the runner grew to {maxrss_kib // 1024} MiB for 100 MiB of output"


@pytest.mark.parametrize(
    "flag, value, expected",
    [("--time-limit", "soon", "not a duration"), ("--memory-limit", "lots", "not a size"),
     ("--max-message-size", "0", "not a positive size"), ("--dir", "/no/such/dir", "not a directory"),
     ("--env", "=x", "not KEY=VALUE")],
)
def test_bad_limit_values_are_usage_errors(flag, value, expected, wat_file):
    result = essa("--store", "memory", "run", flag, value, wat_file(SPIN))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"essa: error: invalid value for {flag}") and expected in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_guests_see_no_directory_and_no_environment_unless_granted(engine_name, wat_file, tmp_path):
    granted = tmp_path / "granted"
    granted.mkdir()
    (granted / "hello.txt").write_text("hello from the host")
    cat = wat_file(CAT)
    denied = run(engine_name, cat)
    assert denied.returncode == 5 and denied.stdout == ""
    allowed = run(engine_name, "--dir", f"{granted}:/data:ro", "--env", "GREETING=hi", cat)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout == "GREETING=hi\0hello from the host"


def test_local_limits_do_not_apply_to_a_cluster_run(wat_file):
    result = essa("run", "--connect", "tcp/127.0.0.1:9", "--time-limit", "5", wat_file(SPIN))
    assert_one_line_error(result, "--time-limit does not apply with --connect", "essa executor")
    result = essa("run", "--connect", "tcp/127.0.0.1:9", "--dir", "/tmp", wat_file(SPIN))
    assert_one_line_error(result, "--dir does not apply with --connect")


# -- cluster: executors apply their own limits ------------------------------------------


@pytest.fixture
def cluster(engine_name, tmp_path):
    pytest.importorskip("zenoh")
    pytest.importorskip("essa_lmdb")
    from .test_cluster import Cluster

    c = Cluster(engine_name, tmp_path)
    yield c
    c.stop()


def test_an_executor_applies_its_limits_and_refuses_oversized_and_garbage_messages(cluster, wat_file):
    from essa.testing.ports import free_port

    cluster.scheduler()
    # 5 s: enough for every call of the test function below on a machine whose cores are busy.
    cluster._spawn("executor-0", "executor", "0", "--connect", cluster.endpoint, "--listen",
                   f"tcp/127.0.0.1:{free_port()}", "--time-limit", "5", "--max-message-size", "256K")
    cluster.wait_for_executors(1)

    result = cluster.run(wat_file(SPIN, "spin.wasm"))
    assert_one_line_error(result, "the module's _start: time limit exceeded (5 s)")

    # A module far larger than the executor reads: refused from its header, in one line.
    big = wat_file(f'(module (memory 40) (data (i32.const 0) "{"x" * (2 << 20)}") (func (export "_start")))',
                   "big.wasm")
    result = cluster.run(big)
    assert_one_line_error(result, "exceeds the executor's message size limit")

    # Bytes that are no message at all, or a message that is no call: dropped with a warning.
    from essa.cluster.processes import open_transport

    transport = open_transport(connect=[cluster.endpoint], connect_timeout=60)
    log = cluster.logs / "executor-0.log"
    try:
        seen = threading.Event()
        transport.watch_tokens("essa/live/executor", lambda key, alive: seen.set())
        assert seen.wait(90), "the executor's token did not reach this session"
        deadline = time.monotonic() + 90
        while not all(w in log.read_text() for w in ("dropped a call request", "dropped an undecodable message")):
            # zenoh routes may take a moment, and not every path at the same moment
            assert time.monotonic() < deadline, log.read_text()
            transport._session.put("essa/executor/0/calls", b"\xc1 not msgpack")
            transport._session.put("essa/executor/0/calls", bytes([0x05]))
            transport.publish("essa/executor/0/calls", {"id": 7, "reply_to": None})
            time.sleep(0.3)
    finally:
        transport.close()

    result = cluster.run(TEST_FUNCTION)  # a 54 KB module, a 165 KB result: under the 256 KiB limit
    assert result.returncode == 0, result.stderr + cluster.log_text()
    assert result.stdout == EXPECTED_TEST_FUNCTION_OUTPUT
    cluster.stop()
    logs = log.read_text()
    assert "dropped an undecodable message" in logs
    assert "dropped a call request" in logs
    assert "Traceback" not in logs


def test_up_passes_limits_and_grants_to_its_executors(engine_name, wat_file, tmp_path):
    pytest.importorskip("zenoh")
    pytest.importorskip("essa_lmdb")
    from essa.testing.ports import free_port

    from .test_cluster import executor_counters

    granted = tmp_path / "granted"
    granted.mkdir()
    (granted / "hello.txt").write_text("from the operator")
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    up = subprocess.Popen([*ESSA, "--engine", engine_name, "up", "--executors", "1", "--listen", endpoint,
                           "--time-limit", "2", "--dir", f"{granted}::ro", "--env", "WHO=operator"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = essa("status", "--connect", endpoint, "--json", timeout=30)
            if status.returncode == 0 and len(executor_counters(json.loads(status.stdout))) == 1:
                break
            time.sleep(0.3)
        executor = next(a for a in json.loads(status.stdout) if a["role"] == "executor")
        assert executor["limits"]["time_limit"] == 2
        assert executor["grants"] == {"dirs": [f"{granted}:{granted}:ro"], "env": ["WHO"]}
        spin = essa("run", "--connect", endpoint, "--timeout", "60", wat_file(SPIN, "spin.wasm"))
        assert_one_line_error(spin, "time limit exceeded (2 s)")
        cat = essa("run", "--connect", endpoint, "--timeout", "60", wat_file(CAT, "cat.wasm"))
        assert cat.returncode == 0, cat.stderr
        assert cat.stdout == "WHO=operator\0from the operator"
    finally:
        up.send_signal(signal.SIGTERM)
        up.communicate(timeout=90)
    assert up.returncode == 0
