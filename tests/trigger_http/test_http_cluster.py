"""`essa serve` against a cluster: `essa up --http`, a second `essa serve --connect`, and no executors at all.

Real processes over zenoh on loopback, free ports, readiness by polling
with generous deadlines.
"""

from __future__ import annotations

import signal
import subprocess
import threading

import pytest

pytest.importorskip("essa_http", reason="essa-plugin-http is not installed")
pytest.importorskip("essa_lmdb", reason="essa-plugin-lmdb is not installed")
pytest.importorskip("zenoh", reason="eclipse-zenoh is not installed")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from essa.testing.ports import free_port  # noqa: E402

from .helpers import DEADLINE, ESSA, essa, ok, request, wait_until  # noqa: E402

CALL = "/v1/functions/{}/{}"


def test_up_with_http_serves_the_cluster_and_a_second_server_stops_gracefully(servers, wasm):
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    http = f"127.0.0.1:{free_port()}"
    up = servers.up("--executors", "2", "--listen", endpoint, "--http", http)
    assert up.url == f"http://{http}"
    wait_until(lambda: request(up.url, "GET", "/healthz").status == 200, "the cluster to answer /healthz")
    c = ("--connect", endpoint, "--timeout", "60")
    ok(essa("deploy", str(wasm), "--name", "memo", *c))

    for i in range(8):  # calls land on both executors
        answer = request(up.url, "POST", CALL.format("memo", "echo"), f"call {i}".encode())
        assert (answer.status, answer.body) == (200, f"call {i}".encode())
    trap = request(up.url, "POST", CALL.format("memo", "trap"))
    assert trap.status == 500 and trap.json()["kind"] == "trap"
    missing = request(up.url, "POST", CALL.format("memo", "nope"))
    assert missing.status == 404 and "no function 'nope'" in missing.json()["error"]
    put = request(up.url, "PUT", "/v1/state/memo/k", b'{"type": "Set", "values": ["a"]}')
    assert put.json() == {"type": "Set", "values": ["a"]}
    assert "Set {\"a\"}" in ok(essa("state", "get", "-d", "memo", "k", *c))
    assert [d["name"] for d in request(up.url, "GET", "/v1/deployments").json()] == ["memo"]
    # The server is a client of the cluster: its /metrics has the cluster's totals, and no scheduler's or
    # executor's own counters (it runs neither: they would all read 0).
    text = request(up.url, "GET", "/metrics").body.decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    assert [s.value for s in samples if s.name == "essa_cluster_executors"] == [2]
    assert sum(s.value for s in samples if s.name == "essa_cluster_executor_calls_total") == 9  # 8 echo, 1 trap
    assert not [s.name for s in samples if s.name.startswith(("essa_scheduler_", "essa_calls", "essa_call_"))]

    # A second server for the same cluster; SIGTERM while a call is in flight.
    second = servers.start("--connect", endpoint, "--timeout", "60")
    answers = []
    caller = threading.Thread(target=lambda: answers.append(request(second.url, "POST", CALL.format("memo", "gate"))))
    caller.start()
    wait_until(lambda: request(up.url, "GET", "/v1/state/memo/started").status == 200, "the gate call to start")
    second.proc.send_signal(signal.SIGTERM)
    ok(essa("state", "put", "-d", "memo", "release", "--type", "set", "go", *c))
    caller.join()
    assert [(a.status, a.body) for a in answers] == [(200, b"released")]
    assert second.stop(None) == 0 and "Traceback" not in second.log_text()

    assert up.stop() == 0, up.log_text()
    log = up.log_text()
    assert "Traceback" not in log and "http trigger stopped" in log
    leftover = subprocess.run(["pgrep", "-s", str(up.proc.pid)], capture_output=True, text=True).stdout.split()
    assert leftover == [], "processes of essa up still running"


def test_up_passes_http_options_to_its_server(servers, wasm):
    """`essa up --http-option max-requests=1`: while one call is served, the next request is answered 503."""
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    up = servers.up("--executors", "1", "--listen", endpoint, "--http", f"127.0.0.1:{free_port()}",
                    "--http-option", "max-requests=1")
    c = ("--connect", endpoint, "--timeout", "60")
    ok(essa("deploy", str(wasm), "--name", "memo", *c))
    answers = []
    gate = threading.Thread(target=lambda: answers.append(request(up.url, "POST", CALL.format("memo", "gate"))))
    gate.start()
    try:
        wait_until(lambda: essa("state", "get", "-d", "memo", "started", *c).returncode == 0, "the gate call to start")
        busy = request(up.url, "GET", "/healthz")
        assert busy.status == 503 and "at most 1 requests at once (max-requests)" in busy.json()["error"]
    finally:
        ok(essa("state", "put", "-d", "memo", "release", "--type", "set", "go", *c))
        gate.join()
    assert [(a.status, a.body) for a in answers] == [(200, b"released")]
    assert up.stop() == 0 and "Traceback" not in up.log_text()


@pytest.mark.parametrize(("args", "problem"), [
    (("--http-option", "max-requests=1"), "--http-option needs --http"),
    (("--http", "127.0.0.1:1", "--http-option", "nope=1"),
     "the http trigger has no option 'nope' (options: max-requests, max-connections,"),
    (("--http", "127.0.0.1:1", "--http-option", "max-requests"), "'max-requests' is not KEY=VALUE"),
])
def test_up_refuses_http_options_it_cannot_pass_before_starting_anything(args, problem):
    refused = essa("up", "--listen", f"tcp/127.0.0.1:{free_port()}", *args)
    assert refused.returncode == 2 and problem in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_without_executors_health_and_calls_are_503(servers, tmp_path):
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    with open(tmp_path / "scheduler.log", "w") as log:
        scheduler = subprocess.Popen([*ESSA, "scheduler", "--listen", endpoint], stderr=log, start_new_session=True)
    try:
        server = servers.start("--connect", endpoint, "--timeout", "60")
        health = request(server.url, "GET", "/healthz")
        assert health.status == 503 and health.json()["kind"] == "unavailable", health.body
        answer = request(server.url, "POST", CALL.format("memo", "echo"), b"x")
        assert answer.status == 503 and answer.json()["kind"] == "unavailable", answer.body
        assert "no executor answered" in answer.json()["error"]
        assert server.stop() == 0
    finally:
        scheduler.terminate()
        scheduler.wait(DEADLINE)
