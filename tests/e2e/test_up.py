"""`essa up` for operators: --detach and `essa down`, --metrics, the context it writes (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import essa
from essa.testing.ports import free_port

from .test_cli import assert_one_line_error
from .test_cli import essa as run_essa
from .test_service import STATEFUL, ok

pytest.importorskip("zenoh")
pytest.importorskip("essa_lmdb")

DEADLINE = 90.0


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def state(essa_home, name: str = "local") -> dict:
    return json.loads((essa_home / "clusters" / f"{name}.json").read_text())


@pytest.fixture
def downed(essa_home):
    """Whatever `essa up --detach` a test started is stopped at its end, even if the test failed."""
    yield
    for path in (essa_home / "clusters").glob("*.json"):
        run_essa("down", path.stem, timeout=DEADLINE)


def test_a_detached_cluster_is_ready_current_and_leaves_nothing_behind(essa_home, tmp_path, downed):
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    started = run_essa("up", "--detach", "--metrics", "--listen", endpoint, timeout=DEADLINE + 60)
    out = ok(started)
    assert f"essa cluster local up: 2 executors\n  scheduler      {endpoint}\n" in out
    assert "essa up: running in the background (pid " in out and "stop with: essa down local" in out
    cluster = state(essa_home)
    pids = [cluster["pid"], *(p["pid"] for p in cluster["processes"])]
    assert [p["name"] for p in cluster["processes"]] == ["scheduler", "executor 0", "executor 1"]
    assert all(alive(pid) for pid in pids)

    # Ready means ready: the scheduler sees both executors, every metrics endpoint answers.
    assert "* local" in ok(run_essa("context", "ls"))
    schedulers = [a for a in json.loads(ok(run_essa("status", "--json"))) if a["role"] == "scheduler"]
    assert len(schedulers[0]["executors"]) == 2
    for process, url in cluster["metrics"].items():
        assert f"  {process:<14} {url}" in out
        with urllib.request.urlopen(url, timeout=DEADLINE) as answer:
            text = answer.read().decode()
        assert {"scheduler": "essa_scheduler_executors 2.0", "essa up": "# TYPE essa_up_restarts_total counter"}.get(
            process, "essa_calls_running") in text

    # The current context takes commands and Python to the cluster.
    wasm = tmp_path / "memo.wasm"
    wasm.write_bytes(STATEFUL)
    assert ok(run_essa("deploy", str(wasm), "--name", "memo")).startswith("deployed memo@1")
    with essa.connect(timeout=DEADLINE) as es:
        assert es.where == f"{endpoint} (context local)"
        assert es.call("memo", "remember", b"apple") == b"apple"

    assert_one_line_error(run_essa("up", "--detach", "--listen", f"tcp/127.0.0.1:{free_port()}"),
                          "a cluster named local is running already", "`essa down local` stops it")
    assert ok(run_essa("down", timeout=DEADLINE + 30)) == (
        f"stopped cluster local: scheduler, executor 0, executor 1 (essa up, pid {cluster['pid']})\n")
    assert [pid for pid in pids if alive(pid)] == []
    assert not (essa_home / "clusters" / "local.json").exists()
    assert "* embedded" in ok(run_essa("context", "ls"))  # the context it wrote is current no more
    assert_one_line_error(run_essa("down"), "no cluster started by `essa up` is running here")


def test_down_stops_a_cluster_running_in_another_terminal(essa_home):
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    ok(run_essa("context", "add", "mine", "--connect", "tcp/127.0.0.1:1", "--use"))
    up = subprocess.Popen([sys.executable, "-m", "essa", "up", "--executors", "1", "--listen", endpoint,
                           "--name", "dev"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE + 60
        while not (essa_home / "clusters" / "dev.json").exists():
            assert up.poll() is None and time.monotonic() < deadline, up.communicate()[0]
            time.sleep(0.2)
        assert "* dev" in ok(run_essa("context", "ls"))
        assert_one_line_error(run_essa("down", "other"), "no cluster named other is running (running: dev)")
        assert ok(run_essa("down", "dev", timeout=DEADLINE + 30)).startswith("stopped cluster dev: scheduler, ")
        assert up.wait(DEADLINE) == 0
        output = up.stdout.read()
        assert "essa cluster dev up: 1 executors" in output and "Traceback" not in output
        assert "* mine" in ok(run_essa("context", "ls"))  # the one current before is again
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


def test_down_stops_what_a_killed_essa_up_left_running(essa_home, downed):
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    up = subprocess.Popen([sys.executable, "-m", "essa", "up", "--executors", "1", "--listen", endpoint],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE + 60
        while not (essa_home / "clusters" / "local.json").exists():
            assert up.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        pids = [p["pid"] for p in state(essa_home)["processes"]]
        up.kill()  # SIGKILL: no cleaning up; its scheduler and executor go on
        up.wait()
        assert all(alive(pid) for pid in pids)
        assert ok(run_essa("down", timeout=DEADLINE + 30)).startswith("stopped cluster local: scheduler, executor 0")
        assert [pid for pid in pids if alive(pid)] == []
        assert "* embedded" in ok(run_essa("context", "ls"))
    finally:  # (downed stops what is left, if the test failed before essa down)
        if up.poll() is None:
            up.kill()
            up.wait()


def test_a_detached_secure_cluster_needs_no_environment(essa_home, tmp_path, downed):
    pytest.importorskip("essa_http")
    endpoint, http = f"tcp/127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESSA_TLS_", "ESSA_TOKEN"))}
    up = subprocess.run([sys.executable, "-m", "essa", "up", "--secure", "--detach", "--listen", endpoint,
                         "--http", http], capture_output=True, text=True, timeout=DEADLINE + 90, env=env)
    out = ok(up)
    assert "essa cluster local-secure up: 2 executors, mutual TLS, access tokens" in out
    assert (f'curl -H "Authorization: Bearer $ESSA_TOKEN" -H \'content-type: application/json\' -d \'[ARG, ...]\' '
            f'http://{http}/v1/functions/') in out
    shown = ok(run_essa("context", "show"))
    assert shown.startswith("local-secure (current)") and "tls cert:" in shown and "deployments *" in shown
    wasm = tmp_path / "memo.wasm"
    wasm.write_bytes(STATEFUL)
    plain = subprocess.run([sys.executable, "-m", "essa", "deploy", str(wasm), "--name", "memo"],
                           capture_output=True, text=True, timeout=DEADLINE, env=env)
    assert plain.returncode == 0, plain.stderr  # the context's certificate and token, nothing in the environment
    assert ok(run_essa("call", "memo", "remember", "x")) == "x"
    assert ok(run_essa("down", timeout=DEADLINE + 30)).startswith("stopped cluster local-secure: scheduler")
