"""Ctrl-C and SIGTERM on `essa run`: the run is cancelled, embedded and on a cluster.

Real signals to real processes. The guests run without a time limit, so only
the cancel can end them: `_start` prints a line (the readiness signal), then
waits for a remote call of a function that computes forever.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from essa.testing.conformance.wat import module

from .test_cli import essa

ESSA = [sys.executable, "-m", "essa"]
#: Generous: other work may keep every core busy.
DEADLINE = 60.0

SPIN_NAME = b"__essa_wrapper__spin"
CALLER = module(
    f"""
  (func (export "__essa_wrapper__spin") (param i32) (loop $l (br $l)))
  (func $call_spin
    (if (call $essa_call (i32.const 0x600) (i32.const {len(SPIN_NAME)}) (i32.const 0) (i32.const 0) (i32.const 0x400))
      (then unreachable))
    (drop (call $essa_get_result_len (i32.load (i32.const 0x400)) (i32.const 0x404))))
""",
    data={0x600: SPIN_NAME, 0x700: b"calling\n"},
    start="""
    (i32.store (i32.const 0x100) (i32.const 0x700))
    (i32.store (i32.const 0x104) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0x100) (i32.const 1) (i32.const 0x108)))
    (call $call_spin)""",
)


@pytest.fixture
def caller_wasm(tmp_path):
    path = tmp_path / "caller.wasm"
    path.write_bytes(CALLER)
    return str(path)


def interrupt_when_started(command: list[str], signum: int, before_signal=lambda: None) -> subprocess.CompletedProcess:
    """Start ``command``, wait for the guest's first line, send ``signum``, and wait for the process to end."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "calling\n", proc.stderr.read() if proc.poll() is not None else ""
        before_signal()
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def assert_interrupted(result: subprocess.CompletedProcess, signum: int) -> None:
    name = signal.Signals(signum).name
    assert result.returncode == 128 + signum, result.stderr
    assert result.stderr.strip().splitlines() == [f"essa: interrupted ({name}): the run was cancelled"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_cancels_an_embedded_run(engine_name, caller_wasm, signum):
    command = [*ESSA, "--store", "memory", "--engine", engine_name, "run", "--time-limit", "none", caller_wasm]
    assert_interrupted(interrupt_when_started(command, signum), signum)


@pytest.fixture
def cluster(engine_name, tmp_path):
    pytest.importorskip("zenoh")
    pytest.importorskip("essa_lmdb")
    from .test_cluster import Cluster

    c = Cluster(engine_name, tmp_path)
    yield c
    c.stop()


def _status(cluster) -> list[dict]:
    result = essa("status", "--connect", cluster.endpoint, "--json", timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _wait_for(cluster, condition, what: str) -> list[dict]:
    deadline = time.monotonic() + DEADLINE
    while True:
        status = _status(cluster)
        if condition(status):
            return status
        assert time.monotonic() < deadline, f"not within {DEADLINE:g} s: {what}: {status}\n{cluster.log_text()}"
        time.sleep(0.2)


def _executors(status: list[dict]) -> list[dict]:
    return [a for a in status if a["role"] == "executor"]


def test_a_signal_cancels_a_cluster_run_and_the_remote_calls_it_started(cluster, caller_wasm):
    from essa.testing.ports import free_port

    cluster.scheduler()
    for executor_id in ("0", "1"):
        cluster._spawn(f"executor-{executor_id}", "executor", executor_id, "--connect", cluster.endpoint,
                       "--listen", f"tcp/127.0.0.1:{free_port()}", "--time-limit", "none")
    cluster.wait_for_executors(2)

    def both_calls_running() -> None:
        _wait_for(cluster, lambda s: sum(e["running"] for e in _executors(s)) == 2, "the run and its remote call running")

    command = [*ESSA, "run", "--connect", cluster.endpoint, "--timeout", str(DEADLINE), caller_wasm]
    assert_interrupted(interrupt_when_started(command, signal.SIGINT, both_calls_running), signal.SIGINT)

    def stopped(status: list[dict]) -> bool:
        executors = _executors(status)
        scheduler = next(a for a in status if a["role"] == "scheduler")
        return (scheduler["in_flight"] == 0 and sum(e["running"] for e in executors) == 0
                and sum(e["cancelled"] for e in executors) == 2)

    _wait_for(cluster, stopped, "the cluster stopped the run and its remote call")
    cluster.stop()
    assert "Traceback" not in cluster.log_text()
