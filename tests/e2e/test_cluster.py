"""Cluster mode with real processes talking over zenoh on loopback.

Every test starts its own scheduler and executors on free ports, with the
test's own ESSA_HOME (so they share one LMDB store), and stops them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from essa.testing.ports import free_port

from .test_cli import EXPECTED_TEST_FUNCTION_OUTPUT, TEST_FUNCTION, essa

pytest.importorskip("zenoh")
pytest.importorskip("essa_lmdb")

ESSA = [sys.executable, "-m", "essa"]
RUST_TEST_FUNCTION = TEST_FUNCTION.with_name("test-function-rust.wasm")


class Cluster:
    """A scheduler and executors as child processes; stopped by :meth:`stop`."""

    def __init__(self, engine: str, tmp_path: Path) -> None:
        self.engine = engine
        self.endpoint = f"tcp/127.0.0.1:{free_port()}"
        self.logs = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "a")  # an executor started again appends
        proc = subprocess.Popen([*ESSA, "-v", "--engine", self.engine, *args], stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def scheduler(self) -> None:
        self._spawn("scheduler", "scheduler", "--listen", self.endpoint)

    def executor(self, executor_id: str, workers: int = 2, extra: tuple[str, ...] = ()) -> None:
        self._spawn(
            f"executor-{executor_id}", "executor", executor_id, "--connect", self.endpoint,
            "--listen", f"tcp/127.0.0.1:{free_port()}", "--workers", str(workers), *extra,
        )

    def status(self) -> list[dict]:
        result = essa("status", "--connect", self.endpoint, "--json", timeout=30)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_for_executors(self, n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = essa("status", "--connect", self.endpoint, "--json", timeout=30)
            if result.returncode == 0:
                schedulers = [a for a in json.loads(result.stdout) if a["role"] == "scheduler"]
                if schedulers and len(schedulers[0]["executors"]) >= n:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{n} executors did not join; logs: {self.log_text()}")

    def run(self, path: Path | str, timeout: float = 120) -> subprocess.CompletedProcess:
        return essa("run", "--connect", self.endpoint, "--timeout", "60", str(path), timeout=timeout)

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(self.logs.glob("*.log")))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster(engine_name, tmp_path):
    c = Cluster(engine_name, tmp_path)
    yield c
    c.stop()


def executor_counters(status: list[dict]) -> dict[str, int]:
    return {a["id"]: a["calls"] + a["runs"] for a in status if a["role"] == "executor"}


@pytest.mark.parametrize("module", [TEST_FUNCTION, RUST_TEST_FUNCTION], ids=["c", "rust"])
def test_test_function_runs_on_two_executors(cluster, module):
    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    result = cluster.run(module)
    assert result.returncode == 0, result.stderr + cluster.log_text()
    assert result.stdout == EXPECTED_TEST_FUNCTION_OUTPUT
    served = executor_counters(cluster.status())
    assert set(served) == {"0", "1"}
    assert all(n > 0 for n in served.values()), served  # both executors served calls
    assert sum(served.values()) == 133  # the run + its 132 remote calls


def test_any_start_order_and_a_second_executor_loads_the_artifact(cluster):
    cluster.executor("a")  # executors first: the scheduler still learns them
    cluster.executor("b")
    time.sleep(1)
    cluster.scheduler()
    cluster.wait_for_executors(2)
    for _ in range(2):
        result = cluster.run(TEST_FUNCTION)
        assert result.returncode == 0, result.stderr + cluster.log_text()
    served = executor_counters(cluster.status())
    assert all(n > 0 for n in served.values()), served
    cluster.stop()
    logs = cluster.log_text()
    assert logs.count("compiled with") == 1, logs  # one executor compiled ...
    assert "artifact from the store" in logs  # ... the other loaded its artifact


def test_one_executor_with_one_worker_does_not_deadlock_on_nested_calls(cluster):
    cluster.scheduler()
    cluster.executor("solo", workers=1)
    cluster.wait_for_executors(1)
    result = cluster.run(TEST_FUNCTION)
    assert result.returncode == 0, result.stderr + cluster.log_text()
    assert result.stdout == EXPECTED_TEST_FUNCTION_OUTPUT


def test_run_survives_or_fails_clearly_when_an_executor_is_killed(cluster, tmp_path):
    wasmtime = pytest.importorskip("wasmtime")
    slow_fan = tmp_path / "slow-fan.wasm"
    slow_fan.write_bytes(wasmtime.wat2wasm(SLOW_FAN_WAT))
    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    run = subprocess.Popen([*ESSA, "run", "--connect", cluster.endpoint, "--timeout", "60", str(slow_fan)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)
    assert run.poll() is None, "the run ended before the kill; make the leaves slower"
    cluster.procs["executor-1"].send_signal(signal.SIGKILL)
    try:
        stdout, stderr = run.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        run.kill()
        pytest.fail("the run hung after an executor was killed:\n" + cluster.log_text())
    assert "Traceback" not in stderr
    if run.returncode == 0:
        assert stdout == "DONE\n"
    else:
        assert "executor 1 went away" in stderr or "trapped" in stderr, stderr


def test_connect_to_nothing_fails_fast_naming_the_endpoint():
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = essa("run", "--connect", endpoint, str(TEST_FUNCTION), timeout=60)
    assert time.monotonic() - started < 15
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert endpoint in result.stderr
    assert result.stderr.startswith("essa: error: ")


def test_up_starts_a_cluster_and_stops_it_on_sigterm(engine_name, tmp_path, essa_home):
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    up = subprocess.Popen([*ESSA, "--engine", engine_name, "up", "--executors", "2", "--listen", endpoint],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while not (essa_home / "clusters" / "local.json").exists():  # written once up says it is up
            assert up.poll() is None and time.monotonic() < deadline, "essa up did not get ready"
            time.sleep(0.3)
        assert len(executor_counters(json.loads(essa("status", "--connect", endpoint, "--json").stdout))) == 2
        result = essa("run", "--connect", endpoint, "--timeout", "60", str(TEST_FUNCTION))
        assert result.returncode == 0, result.stderr
        assert result.stdout.endswith("DONE\n")
    finally:
        up.send_signal(signal.SIGTERM)
        stdout, stderr = up.communicate(timeout=90)
    assert up.returncode == 0, stderr
    assert f"  scheduler      {endpoint}\n" in stdout
    assert "context:            local (current until the cluster stops)" in stdout  # so no --connect is needed:
    assert "run a module with:  essa run FILE.wasm" in stdout
    assert "served" in stderr  # each executor reported its counters on the way out
    leftover = subprocess.run(["pgrep", "-s", str(up.pid)], capture_output=True, text=True).stdout.split()
    assert leftover == [], "processes of essa up still running"


#: ``_start`` fans out over [0, 32) with remote calls; each leaf busy-waits
#: 250 ms of wall-clock time (WASI clock), so the run lasts about 2 s on any
#: machine and killing an executor hits calls in flight. Prints DONE if every
#: leaf answered.
SLOW_FAN_WAT = """
(module
  (import "host" "essa_get_args" (func $get_args (param i32 i32) (result i32)))
  (import "host" "essa_set_result" (func $set_result (param i32 i32) (result i32)))
  (import "host" "essa_call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (import "host" "essa_get_result" (func $get_result (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x600) "__essa_wrapper__fan")
  (data (i32.const 0x700) "DONE\\n")
  (func $now (result i64)
    (drop (call $clock (i32.const 1) (i64.const 1000) (i32.const 0x800)))
    (i64.load (i32.const 0x800)))
  (func $fan (export "__essa_wrapper__fan") (param $len i32) (local $s i32) (local $e i32) (local $m i32) (local $until i64)
    (drop (call $get_args (i32.const 0x100) (i32.const 8)))
    (local.set $s (i32.load (i32.const 0x100)))
    (local.set $e (i32.load (i32.const 0x104)))
    (if (i32.eq (i32.sub (local.get $e) (local.get $s)) (i32.const 1))
      (then
        (local.set $until (i64.add (call $now) (i64.const 250000000)))
        (loop $spin (br_if $spin (i64.lt_u (call $now) (local.get $until))))
        (i32.store (i32.const 0x200) (i32.const 1))
        (drop (call $set_result (i32.const 0x200) (i32.const 4)))
        (return)))
    (local.set $m (i32.add (local.get $s) (i32.div_u (i32.sub (local.get $e) (local.get $s)) (i32.const 2))))
    (i32.store (i32.const 0x300) (local.get $s))
    (i32.store (i32.const 0x304) (local.get $m))
    (i32.store (i32.const 0x308) (local.get $m))
    (i32.store (i32.const 0x30c) (local.get $e))
    (if (call $call (i32.const 0x600) (i32.const 19) (i32.const 0x300) (i32.const 8) (i32.const 0x400)) (then unreachable))
    (if (call $call (i32.const 0x600) (i32.const 19) (i32.const 0x308) (i32.const 8) (i32.const 0x404)) (then unreachable))
    (if (call $get_result (i32.load (i32.const 0x400)) (i32.const 0x500) (i32.const 4) (i32.const 0x510)) (then unreachable))
    (if (call $get_result (i32.load (i32.const 0x404)) (i32.const 0x504) (i32.const 4) (i32.const 0x510)) (then unreachable))
    (i32.store (i32.const 0x200) (i32.add (i32.load (i32.const 0x500)) (i32.load (i32.const 0x504))))
    (drop (call $set_result (i32.const 0x200) (i32.const 4))))
  (func (export "_start")
    (i32.store (i32.const 0x300) (i32.const 0))
    (i32.store (i32.const 0x304) (i32.const 32))
    (if (call $call (i32.const 0x600) (i32.const 19) (i32.const 0x300) (i32.const 8) (i32.const 0x400)) (then unreachable))
    (if (call $get_result (i32.load (i32.const 0x400)) (i32.const 0x500) (i32.const 4) (i32.const 0x510)) (then unreachable))
    (if (i32.ne (i32.load (i32.const 0x500)) (i32.const 32)) (then unreachable))
    (i32.store (i32.const 0x100) (i32.const 0x700))
    (i32.store (i32.const 0x104) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 0x100) (i32.const 1) (i32.const 0x108)))))
"""
