"""`essa serve` (the http trigger) facing slow clients: connections that trickle a request and never finish it.

Real processes and sockets (issue 19): slow connections must not keep the
server from answering the clients that behave, they are closed at their
deadlines (408 where an answer is possible), and connections and requests
are capped apart. No test depends on how fast anything is.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("essa_http", reason="essa-plugin-http is not installed")
pytest.importorskip("essa_lmdb", reason="essa-plugin-lmdb is not installed")

from essa.testing.resources import sample  # noqa: E402
from essa.testing.slow_clients import SlowClients  # noqa: E402
from essa.util.descriptors import raise_open_files_limit  # noqa: E402

from .helpers import DEADLINE, essa, ok, request, wait_until  # noqa: E402

ECHO = "/v1/functions/memo/echo"
#: A request head that never ends (one more byte of the header every interval).
HEAD = b"POST /v1/functions/memo/echo HTTP/1.1\r\nHost: slow\r\nX-Slow: "
#: A complete head announcing a body of 10 MB (under the message size limit), which then trickles.
BODY = b"POST /v1/functions/memo/echo HTTP/1.1\r\nHost: slow\r\nContent-Length: 10000000\r\n\r\n"


@pytest.fixture
def memo(wasm):
    """Deployment ``memo`` of the test module, in this test's store."""
    ok(essa("deploy", str(wasm), "--name", "memo"))
    return "memo"


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def echo_ok(url: str, i: int) -> None:
    """One well-behaved request on a new connection: it must be answered with its own echo."""
    answer = request(url, "POST", ECHO, f"good {i}".encode())
    assert (answer.status, answer.body) == (200, f"good {i}".encode()), (answer.status, answer.body[:300])


def metric(url: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels, if any) in ``url``'s /metrics."""
    for line in request(url, "GET", "/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def wait_accepted(url: str, clients: list[SlowClients]) -> None:
    """Wait until the server has accepted every slow connection still open (/metrics counts them).

    It takes one more connection, which asks.
    """
    def accepted() -> bool:
        return metric(url, "essa_http_connections") - 1 >= sum(c.open for c in clients)

    wait_until(accepted, "the server to accept the slow connections")


def read_until_closed(sock: socket.socket) -> bytes:
    """What the server sends on ``sock`` until it closes it (a reset ends it too)."""
    sock.settimeout(DEADLINE)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def error_of(answer: bytes, status: int) -> dict:
    """The JSON error of a raw answer with ``status``, which closes its connection."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"connection: close" in head.lower(), head
    return json.loads(body)


# -- issue 19: slow clients and the clients that behave ------------------------------------


def test_slow_clients_do_not_keep_well_behaved_ones_from_being_served(servers, memo):
    """1,000 trickled bodies and 100 trickled heads, over the 1,000 the server once served at once.

    Before: uvicorn's concurrency limit counted every connection, so they made
    every other request 503 until they left.
    """
    slow_bodies, slow_heads = 1000, 100
    if raise_open_files_limit(slow_bodies + slow_heads + 256) < slow_bodies + slow_heads + 256:
        pytest.skip("the limit of open descriptors is too low for this test")
    server = servers.start()
    url = server.url
    before = sample(server.proc.pid)
    host, port = address(url)
    with SlowClients(host, port, BODY, slow_bodies, interval=0.5) as bodies, \
            SlowClients(host, port, HEAD, slow_heads, interval=0.5) as heads:
        # Every one accepted (a descriptor), or answered: as the server was before, or is now.
        wait_until(lambda: sample(server.proc.pid).fds - before.fds + bodies.closed_count + heads.closed_count
                   >= slow_bodies + slow_heads, "the server to accept the slow connections")
        for i in range(100):  # each on a new connection
            echo_ok(url, i)
        with socket.create_connection(address(url), timeout=DEADLINE) as keep_alive:  # and on one kept alive
            for i in range(20):
                body = f"kept {i}".encode()
                keep_alive.sendall(b"POST " + ECHO.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                   + str(len(body)).encode() + b"\r\n\r\n" + body)
                answer = b""
                while not answer.endswith(body):
                    chunk = keep_alive.recv(4096)
                    assert chunk, answer
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200 "), answer
        during = sample(server.proc.pid)
    # None was closed to serve the others; some may have reached their deadlines meanwhile.
    assert set(bodies.closed) | set(heads.closed) <= {"HTTP/1.1 408", "ConnectionRes"}, (bodies.closed, heads.closed)
    # A slow connection costs a bounded amount of memory (its head is at most 64 KiB), and its descriptor
    # is given back when it closes.
    assert during.rss - before.rss <= (slow_bodies + slow_heads) * (64 << 10), (before, during)
    wait_until(lambda: sample(server.proc.pid).fds <= before.fds + 2, "the server to close the slow connections")
    assert server.stop() == 0
    assert "Traceback" not in server.log_text()


def test_a_trickled_request_head_is_answered_408_at_the_header_timeout_and_closed(servers, memo):
    server = servers.start("--trigger-option", "header-timeout=1")
    host, port = address(server.url)

    # Half a head, then nothing: 408 with the line, and the connection closes.
    with socket.create_connection((host, port), timeout=DEADLINE) as stalled:
        stalled.sendall(HEAD)
        answer = read_until_closed(stalled)
    error = error_of(answer, 408)
    assert error == {"error": "the request's line and headers did not arrive within 1 s (header-timeout)",
                     "kind": "timeout"}

    # A byte at a time, for ever: closed all the same (what it read before, if anything, is the 408:
    # a server closing a connection whose bytes keep arriving may reset it instead).
    with SlowClients(host, port, HEAD, 3, interval=0.2) as trickled:
        assert trickled.wait_closed(3, DEADLINE), trickled.closed
    assert set(trickled.closed) <= {"HTTP/1.1 408", "ConnectionRes"}, trickled.closed

    # A connection that sends nothing at all is closed without an answer.
    with socket.create_connection((host, port), timeout=DEADLINE) as silent:
        assert read_until_closed(silent) == b""

    echo_ok(server.url, 0)  # the others are served all along
    assert server.stop() == 0
    log = server.log_text()
    assert "Traceback" not in log
    assert log.count("did not arrive within 1 s (header-timeout)") == 1  # one line, rate-limited
    assert "sent no request within 1 s (header-timeout)" in log


def test_a_trickled_body_is_answered_408_at_the_body_timeout_and_closed(servers, memo):
    server = servers.start("--trigger-option", "body-timeout=1")
    host, port = address(server.url)

    with socket.create_connection((host, port), timeout=DEADLINE) as stalled:
        stalled.sendall(BODY + b"a few bytes")
        answer = read_until_closed(stalled)
    error = error_of(answer, 408)
    assert error["kind"] == "timeout" and error["error"].startswith("the request's body arrived too slowly: 11 bytes")

    with SlowClients(host, port, BODY, 3, interval=0.2) as trickled:
        assert trickled.wait_closed(3, DEADLINE), trickled.closed
    assert set(trickled.closed) <= {"HTTP/1.1 408", "ConnectionRes"}, trickled.closed

    # A body that keeps coming at a fair rate may take longer than body-timeout: 16 KiB over about 2 s.
    with socket.create_connection((host, port), timeout=DEADLINE) as steady:
        steady.sendall(b"POST " + ECHO.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 16384\r\n\r\n")
        for _ in range(8):
            time.sleep(0.25)  # paces the client (nothing waits on it): 8 KiB/s
            steady.sendall(b"z" * 2048)
        answer = read_until_closed_or(steady, b"z" * 16384)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"z" * 16384), answer[:200]

    metrics = request(server.url, "GET", "/metrics").body.decode()
    timed_out = [line for line in metrics.splitlines() if line.startswith("essa_http_requests_total{")
                 and 'status="408"' in line]
    assert timed_out and float(timed_out[0].split()[-1]) >= 4, timed_out  # the stalled one and the 3 trickled
    assert server.stop() == 0
    log = server.log_text()
    assert "Traceback" not in log and "error answering" not in log
    assert log.count("answered 408 to a request whose body arrived too slowly") == 1


def test_pipelined_requests_are_each_answered_and_a_slow_last_head_still_times_out(servers, memo):
    server = servers.start("--trigger-option", "header-timeout=1")
    with socket.create_connection(address(server.url), timeout=DEADLINE) as pipelined:
        pipelined.sendall(b"".join(b"POST " + ECHO.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"
                                   + f"p{i}".encode() for i in range(3)) + HEAD)
        answer = read_until_closed(pipelined)
    answers = answer.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200", b"200", b"200", b"408"], answer
    assert [a[-2:] for a in answers[:3]] == [b"p0", b"p1", b"p2"]
    assert server.stop() == 0 and "Traceback" not in server.log_text()


def read_until_closed_or(sock: socket.socket, end: bytes) -> bytes:
    """What the server sends on ``sock`` until it closes it or what it sent ends with ``end``."""
    sock.settimeout(DEADLINE)
    answer = b""
    while not answer.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


# -- connections and requests are capped apart ---------------------------------------------


def test_requests_being_served_are_capped_not_connections(servers, memo):
    """max-requests=1: idle and slow connections take no request's place; a second request in progress is 503."""
    server = servers.start("--trigger-option", "max-requests=1,header-timeout=600,body-timeout=600")
    host, port = address(server.url)
    with SlowClients(host, port, b"", 20, interval=5, drip=b"") as idle, \
            SlowClients(host, port, BODY, 5, interval=0.5) as bodies:
        wait_accepted(server.url, [idle, bodies])
        echo_ok(server.url, 0)
        assert request(server.url, "GET", "/healthz").status == 200

        answers = []
        gate = threading.Thread(target=lambda: answers.append(request(server.url, "POST", "/v1/functions/memo/gate")))
        gate.start()
        try:
            wait_until(lambda: essa("state", "get", "-d", "memo", "started").returncode == 0, "the gate call to start")
            busy = request(server.url, "GET", "/healthz")
            assert busy.status == 503 and busy.json() == {
                "error": "the server is busy: it serves at most 1 requests at once (max-requests); try again",
                "kind": "busy"}
            refused = request(server.url, "POST", ECHO, b"x" * 1000)  # refused before its body is read
            assert refused.status == 503 and refused.headers["connection"] == "close"
        finally:
            ok(essa("state", "put", "-d", "memo", "release", "--type", "set", "go"))
            gate.join()
        assert [(a.status, a.body) for a in answers] == [(200, b"released")]
        echo_ok(server.url, 1)
        assert (idle.open, bodies.open) == (20, 5)
    assert server.stop() == 0
    log = server.log_text()
    assert "Traceback" not in log and "max-requests (1) being served: answered 503" in log


def test_a_new_connection_over_max_connections_closes_the_one_waiting_longest(servers, memo):
    server = servers.start("--trigger-option", "max-connections=20,header-timeout=600")
    host, port = address(server.url)
    for prefix, closed in ((b"", "(nothing)"), (HEAD, "HTTP/1.1 503")):  # idle; halfway through a head
        with SlowClients(host, port, prefix, 19, drip=b"") as first:
            wait_accepted(server.url, [first])  # on a 20th connection
            with SlowClients(host, port, prefix, 1, drip=b""):
                echo_ok(server.url, 0)  # over 20: the oldest waiting (one of the first 19) is closed to make room
                assert first.wait_closed(1, DEADLINE)
        assert set(first.closed) == {closed}, first.closed
    assert server.stop() == 0
    log = server.log_text()
    assert "Traceback" not in log
    assert "20 connections open (max-connections): closed the one waiting longest for a request" in log


def test_max_connections_fits_the_descriptor_limit_which_serve_raises_first(servers, memo):
    """Soft limit 100, hard 400: serve raises the soft one to 400, and max-connections to 400 - 128 = 272."""
    limited = [sys.executable, "-c", "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
               "(100, 400)); os.execv(sys.executable, [sys.executable, '-m', 'essa', *sys.argv[1:]])"]
    server = servers.start("--trigger-option", "max-connections=1000,header-timeout=600", command=limited)
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    assert re.search(r"Max open files +400 +400 ", limits), limits
    assert "max-connections lowered from 1000 to 272: the limit of open descriptors (ulimit -n)" in server.log_text()
    host, port = address(server.url)
    with SlowClients(host, port, b"", 450, interval=0.2, drip=b"") as idle:  # more than 400 descriptors
        wait_until(lambda: idle.closed_count >= 450 - 272, "the oldest idle connections to be closed for room")
        echo_ok(server.url, 0)  # the server's descriptors never ran out
    assert set(idle.closed) == {"(nothing)"}
    assert server.stop() == 0 and "Traceback" not in server.log_text()


def test_a_new_connection_is_refused_with_503_when_every_one_has_a_request_under_way(servers, memo):
    server = servers.start("--trigger-option", "max-connections=1")
    answers = []
    gate = threading.Thread(target=lambda: answers.append(request(server.url, "POST", "/v1/functions/memo/gate")))
    gate.start()
    try:
        wait_until(lambda: essa("state", "get", "-d", "memo", "started").returncode == 0, "the gate call to start")
        with socket.create_connection(address(server.url), timeout=DEADLINE) as refused:
            error = error_of(read_until_closed(refused), 503)
        assert error["kind"] == "busy" and "max-connections" in error["error"]
    finally:
        ok(essa("state", "put", "-d", "memo", "release", "--type", "set", "go"))
        gate.join()
    assert [(a.status, a.body) for a in answers] == [(200, b"released")]
    echo_ok(server.url, 0)
    assert server.stop() == 0
    log = server.log_text()
    assert "Traceback" not in log and "each with a request under way: refused a new one with 503" in log
