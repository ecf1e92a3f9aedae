"""`essa up` supervises its processes: each kind killed with SIGKILL comes back, one that keeps dying is given up on.

Real processes: an `essa up --detach` with the anna store and an HTTP server; the kills are `kill -9` of the
pids its state file names.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest

import essa
from essa.testing.ports import free_port

from .test_cli import essa as run_essa
from .test_service import STATEFUL, ok
from .test_up import DEADLINE, alive, state

pytest.importorskip("zenoh")
pytest.importorskip("essa_lmdb")


@pytest.fixture
def downed(essa_home):
    """The cluster a test started is stopped at its end, even if the test failed."""
    yield
    for path in (essa_home / "clusters").glob("*.json"):
        run_essa("down", path.stem, timeout=DEADLINE)


def pid_of(essa_home, name: str, process: str) -> int:
    return next(p["pid"] for p in state(essa_home, name)["processes"] if p["name"] == process)


def kill_and_wait_for_restart(essa_home, name: str, process: str) -> int:
    """SIGKILL ``process`` of the cluster; return its new pid once essa up restarted it."""
    old = pid_of(essa_home, name, process)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + DEADLINE
    while True:
        new = pid_of(essa_home, name, process)
        if new != old and alive(new):
            return new
        assert time.monotonic() < deadline, f"{process} was not restarted: {log(essa_home, name)}"
        time.sleep(0.1)


def log(essa_home, name: str) -> str:
    return (essa_home / "clusters" / f"{name}.log").read_text()


def call_until_answered(es, argument: bytes) -> bytes:
    """Call remember(argument) until the cluster answers (a restarted scheduler takes a moment to be found)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return es.call("memo", "remember", argument, timeout=10.0)
        except essa.EssaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_every_kind_of_process_killed_with_sigkill_is_restarted_and_the_cluster_stays_up(essa_home, tmp_path,
                                                                                          downed):
    pytest.importorskip("essa_anna")
    pytest.importorskip("essa_http")
    endpoint, http = f"tcp/127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    ok(run_essa("--store", "anna", "--store-option", "kvs_nodes=2", "up", "--detach", "--metrics", "--name", "sup",
                "--listen", endpoint, "--http", http, timeout=DEADLINE + 60))
    wasm = tmp_path / "memo.wasm"
    wasm.write_bytes(STATEFUL)
    ok(run_essa("deploy", str(wasm), "--name", "memo", timeout=DEADLINE))
    kinds = ["executor 1", "scheduler", "anna routing", "anna kvs 0", "http", "executor 0"]
    written = []
    with essa.connect(timeout=DEADLINE) as es:
        assert es.call("memo", "remember", b"before") == b"before"
        written.append(b"before")
        for process in kinds:
            kill_and_wait_for_restart(essa_home, "sup", process)
            argument = f"after {process}".encode()
            assert call_until_answered(es, argument) == argument
            written.append(argument)
        # No acknowledged write was lost: replication 2 kept anna kvs 0's keys on kvs 1.
        assert es.state("memo").get("seen") == essa.SetLattice(set(written))
    deadline = time.monotonic() + DEADLINE
    while True:  # the restarted HTTP server answers
        try:
            with urllib.request.urlopen(urllib.request.Request(f"http://{http}/v1/functions/memo/remember",
                                                               data=b"over http"), timeout=10) as answer:
                assert answer.read() == b"over http"
                break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)

    cluster = state(essa_home, "sup")
    assert {p["name"]: p["restarts"] for p in cluster["processes"]} == {
        "scheduler": 1, "anna routing": 1, "anna kvs 0": 1, "anna kvs 1": 0, "executor 0": 1, "executor 1": 1,
        "http": 1}
    text = log(essa_home, "sup")
    for process in kinds:  # one line per restart
        assert text.count(f"essa up: {process} (pid ") == 1, text
        assert f"essa up: {process} (pid " in text and "exited with signal 9 (SIGKILL); restarting it in 0.5 s" in text
    assert "Traceback" not in text
    with urllib.request.urlopen(cluster["metrics"]["essa up"], timeout=DEADLINE) as answer:
        metrics = answer.read().decode()
    for process in kinds:
        assert f'essa_up_restarts_total{{process="{process}"}} 1.0' in metrics

    pids = [cluster["pid"], *(p["pid"] for p in cluster["processes"])]
    assert ok(run_essa("down", "sup", timeout=DEADLINE + 30)).startswith("stopped cluster sup: scheduler, ")
    assert [pid for pid in pids if alive(pid)] == []


def test_a_process_that_keeps_dying_is_given_up_on_and_the_others_run_on(essa_home, tmp_path, downed):
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    ok(run_essa("up", "--detach", "--max-restarts", "1", "--name", "loop", "--listen", endpoint,
                timeout=DEADLINE + 60))
    wasm = tmp_path / "memo.wasm"
    wasm.write_bytes(STATEFUL)
    ok(run_essa("deploy", str(wasm), "--name", "memo", timeout=DEADLINE))
    kill_and_wait_for_restart(essa_home, "loop", "executor 1")
    os.kill(pid_of(essa_home, "loop", "executor 1"), signal.SIGKILL)  # again, at once: the second in a row
    deadline = time.monotonic() + DEADLINE
    while "given up on it" not in log(essa_home, "loop"):
        assert time.monotonic() < deadline, log(essa_home, "loop")
        time.sleep(0.1)
    text = log(essa_home, "loop")
    assert ("essa up: executor 1 (pid " in text
            and "exited with signal 9 (SIGKILL), 2 times in a row within 30 s of its start: given up on it "
                "(the rest of the cluster runs on)" in text), text
    assert "Traceback" not in text
    while not state(essa_home, "loop")["processes"][-1].get("given_up"):  # saved just after the line is printed
        assert time.monotonic() < deadline, state(essa_home, "loop")
        time.sleep(0.1)
    cluster = state(essa_home, "loop")
    assert cluster["processes"][-1]["name"] == "executor 1" and cluster["processes"][-1]["given_up"]
    assert alive(cluster["pid"]) and all(alive(p["pid"]) for p in cluster["processes"][:-1])
    with essa.connect(timeout=DEADLINE) as es:  # executor 0 serves on
        assert call_until_answered(es, b"still up") == b"still up"
        status = [a for a in es.status(complete_within=3.0) if a.get("role") == "executor"]
        assert [a["id"] for a in status] == ["0"]
    assert ok(run_essa("down", "loop", timeout=DEADLINE + 30)).startswith("stopped cluster loop: scheduler, ")
    assert not alive(cluster["pid"])

