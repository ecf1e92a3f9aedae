"""`GET /v1/logs/{deployment}` and failed calls' bodies, against a real `essa serve` answering a real client.

The server runs an embedded runtime (this test's LMDB store); the test's
client makes calls over HTTP and reads, and follows, what they printed.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading

import pytest

from essa.testing.printing import TALLY_COMPLAINT, printing_module

from .helpers import DEADLINE, essa, ok, request, wait_until

pytest.importorskip("essa_http", reason="essa-plugin-http is not installed")

CALL = "/v1/functions/{}/{}"
LOGS = "/v1/logs/{}"


@pytest.fixture
def printing(tmp_path):
    """Deployment ``p`` of :mod:`essa.testing.printing`, in this test's store."""
    path = tmp_path / "printing.wasm"
    path.write_bytes(printing_module())
    ok(essa("deploy", str(path), "--name", "p"))
    return "p"


def json_lines(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.decode().splitlines()]


def test_logs_of_calls_made_over_http_as_json_lines_an_array_and_by_call(servers, printing):
    server = servers.start(verbose=True)
    url = server.url
    calls = []
    for n in range(5):
        answer = request(url, "POST", CALL.format("p", "say"), b"line %d" % n)
        assert (answer.status, answer.body) == (200, b"line %d" % n)
        calls.append(answer.headers["essa-call"])
    assert len(set(calls)) == 5

    answer = request(url, "GET", LOGS.format("p"))
    assert answer.status == 200 and answer.headers["content-type"] == "application/x-ndjson"
    lines = json_lines(answer.body)
    assert [line["text"] for line in lines] == [f"said line {n}" for n in range(5)]
    assert [line["call"] for line in lines] == calls
    assert set(lines[0]) == {"time", "deployment", "version", "function", "call", "stream", "executor", "text"}
    assert (lines[0]["deployment"], lines[0]["version"], lines[0]["function"], lines[0]["stream"]) == (
        "p", 1, "say", "stdout")

    array = request(url, "GET", LOGS.format("p") + "?format=json")
    assert array.json() == lines
    assert request(url, "GET", LOGS.format("p@1"), headers={"Accept": "application/json"}).json() == lines
    assert json_lines(request(url, "GET", LOGS.format("p") + f"?call={calls[2]}").body) == [lines[2]]
    assert json_lines(request(url, "GET", LOGS.format("p") + "?tail=2").body) == lines[-2:]
    assert json_lines(request(url, "GET", LOGS.format("p") + "?since=10m").body) == lines
    assert request(url, "GET", LOGS.format("p") + "?since=2100-01-01T00:00:00Z").body == b""

    for path, status, kind, fragment in [
        (LOGS.format("nope"), 404, "not-found", "no deployment named 'nope'"),
        (LOGS.format("p") + "?tail=some", 400, "invalid", "tail="),
        (LOGS.format("p") + "?since=yesterday", 400, "invalid", "neither a duration"),
        (LOGS.format("p") + "?format=xml", 400, "invalid", "format="),
    ]:
        answer = request(url, "GET", path)
        assert answer.status == status and answer.json()["kind"] == kind and fragment in answer.json()["error"], path

    # essa serve -v logs the lines calls print.
    wait_until(lambda: "output p say call" in server.log_text() and "stdout: said line 4" in server.log_text(),
               "the server's log to show the output")


def test_a_trapping_calls_answer_names_where_it_trapped_and_carries_its_stderr(servers, printing):
    url = servers.start().url
    answer = request(url, "POST", CALL.format("p", "tally"), b"")
    assert answer.status == 500
    body = answer.json()
    assert body["kind"] == "trap" and body["stderr"] == [TALLY_COMPLAINT]
    assert body["error"] == ("tally trapped: wasm `unreachable` instruction executed (in check_limit <- tally); "
                             f"stderr: {TALLY_COMPLAINT}")
    # The CLI prints the same line; the call's log has its output and why it failed.
    cli = essa("call", "p", "tally")
    assert cli.stderr.strip().splitlines()[-1] == f"essa: error: {body['error']}"
    logged = json_lines(request(url, "GET", LOGS.format("p") + f"?call={body['call']}").body)
    assert [(line["stream"], line["text"]) for line in logged] == [
        ("stdout", "tally: counting"), ("stderr", TALLY_COMPLAINT),
        ("stderr", "essa: tally trapped: wasm `unreachable` instruction executed (in check_limit <- tally)")]


def test_follow_streams_new_lines_until_the_client_leaves_or_the_server_stops(servers, printing):
    server = servers.start()
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    request(server.url, "POST", CALL.format("p", "say"), b"before")
    connection = http.client.HTTPConnection(host, int(port), timeout=DEADLINE)
    connection.request("GET", LOGS.format("p") + "?follow=1")
    response = connection.getresponse()
    assert response.status == 200 and response.headers["content-type"] == "application/x-ndjson"
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(line)) for line in response], daemon=True).start()

    def next_text() -> str:
        return lines.get(timeout=DEADLINE)["text"]

    assert next_text() == "said before"  # what was kept first
    for n in range(3):
        request(server.url, "POST", CALL.format("p", "say"), b"live %d" % n)
        assert next_text() == f"said live {n}"
    request(server.url, "POST", CALL.format("p", "complain"), b"loudly")
    assert next_text() == "complaint loudly"

    # SIGTERM: the followed answer ends (at its next poll), so the server exits 0 (stop() fails after the deadline).
    assert server.stop() == 0
    connection.close()
