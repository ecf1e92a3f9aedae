"""`essa serve` (the http trigger) on an embedded runtime, as HTTP clients meet it.

Real processes: `essa deploy` stores a module in the test's ESSA_HOME (LMDB),
`essa serve --listen 127.0.0.1:0` serves it, and http.client or raw sockets
talk to it. No test depends on how fast anything is.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import threading

import pytest

pytest.importorskip("essa_http", reason="essa-plugin-http is not installed")
pytest.importorskip("essa_lmdb", reason="essa-plugin-lmdb is not installed")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from essa.testing.conformance.wat import module  # noqa: E402

from .helpers import FUNCTIONS, essa, ok, raw_exchange, request, wait_until  # noqa: E402

CALL = "/v1/functions/{}/{}"


@pytest.fixture
def memo(wasm):
    """Deployment ``memo`` of the test module, in this test's store."""
    ok(essa("deploy", str(wasm), "--name", "memo"))
    return "memo"


def cli_error(*args: str) -> str:
    """The one-line message `essa ARGS` fails with (without its ``essa: error: `` prefix)."""
    result = essa(*args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert line.startswith("essa: error: ") and "\n" not in line, result.stderr
    return line.removeprefix("essa: error: ")


def assert_error(answer, status: int, kind: str, *fragments: str) -> str:
    assert answer.status == status, (answer.status, answer.body)
    body = answer.json()
    # A failed call's body also names the call and carries its stderr's last lines.
    assert {"error", "kind"} <= set(body) <= {"error", "kind", "call", "stderr"} and body["kind"] == kind, body
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    for fragment in fragments:
        assert fragment in body["error"], body
    return body["error"]


# -- calls ------------------------------------------------------------------------------


def test_a_call_answers_its_result_and_passes_the_content_type_through(servers, memo):
    url = servers.start().url
    answer = request(url, "POST", CALL.format("memo", "echo"), b'{"x": 1}',
                     {"Content-Type": "application/json; charset=utf-8"})
    assert (answer.status, answer.body) == (200, b'{"x": 1}')
    assert answer.headers["content-type"] == "application/json; charset=utf-8"

    answer = request(url, "POST", CALL.format("memo", "echo"), bytes(range(256)))
    assert (answer.status, answer.body) == (200, bytes(range(256)))
    assert answer.headers["content-type"] == "application/octet-stream"

    answer = request(url, "POST", CALL.format("memo@1", "echo"))  # no body: empty arguments
    assert (answer.status, answer.body) == (200, b"")

    # An iterable body: http.client sends it chunked.
    chunked = request(url, "POST", CALL.format("memo", "echo"), iter([b"chunked ", b"body"]))
    assert (chunked.status, chunked.body) == (200, b"chunked body")


def test_call_errors_have_statuses_and_the_line_the_cli_prints(servers, memo):
    url = servers.start().url

    def post(deployment: str, function: str):
        return request(url, "POST", CALL.format(deployment, function), b"x")

    line = assert_error(post("memo", "echoo"), 404, "not-found", "did you mean 'echo'")
    assert line == cli_error("call", "memo", "echoo", "x")
    line = assert_error(post("nope", "echo"), 404, "not-found", "no deployment named 'nope'")
    assert line == cli_error("call", "nope", "echo", "x")
    assert_error(post("memo@7", "echo"), 404, "not-found", "has no version 7")
    assert_error(post("-bad-", "echo"), 400, "invalid", "is not a valid deployment name")
    assert_error(post("memo@-x", "echo"), 400, "invalid", "a version is a positive number")
    assert_error(post("memo@x", "echo"), 404, "not-found", "has no tag 'x'")

    line = assert_error(post("memo", "trap"), 500, "trap", "trap trapped: ")
    assert line == cli_error("call", "memo", "trap", "x")
    assert_error(post("memo", "exits"), 500, "exit", "exited with status 3")
    assert_error(post("memo", "no_result"), 500, "no-result", "without essa_set_result")

    assert_error(request(url, "POST", CALL.format("memo", "echo") + "?consistency=linearizable", b"x"), 400,
                 "invalid", "unknown consistency level 'linearizable'")
    answer = request(url, "POST", CALL.format("memo", "echo") + "?consistency=repeatable-read", b"rr")
    assert (answer.status, answer.body) == (200, b"rr")

    # After all that, it still answers.
    assert request(url, "POST", CALL.format("memo", "echo"), b"still here").body == b"still here"


def test_a_call_over_the_time_limit_is_504(servers, memo):
    url = servers.start("--time-limit", "0.5").url
    assert_error(request(url, "POST", CALL.format("memo", "spin")), 504, "time-limit", "time limit")


def test_bodies_over_the_message_size_limit_are_413_before_they_are_read(servers, memo):
    url = servers.start("--max-message-size", "1K").url
    fits = request(url, "POST", CALL.format("memo", "echo"), b"x" * 1024)
    assert (fits.status, fits.body) == (200, b"x" * 1024)

    # 10 GB announced, none sent: the answer comes at once, and the connection closes.
    head = (b"POST /v1/functions/memo/echo HTTP/1.1\r\nHost: essa\r\nContent-Length: 10000000000\r\n\r\n")
    answer = raw_exchange(url, head)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b'"kind": "message-size"' in answer and b"exceed the message size limit (1 KiB)" in answer

    # Chunked: refused once the chunks read exceed the limit.
    chunks = b"".join(b"200\r\n" + b"y" * 0x200 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
    answer = raw_exchange(url, b"POST /v1/functions/memo/echo HTTP/1.1\r\nHost: essa\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    assert answer.startswith(b"HTTP/1.1 413 "), answer

    # A state value too.
    big = b'{"type": "Set", "values": ["' + b"z" * 2000 + b'"]}'
    assert_error(request(url, "PUT", "/v1/state/memo/k", big), 413, "message-size")


def test_many_concurrent_requests_each_get_their_own_answer(servers, memo):
    url = servers.start().url

    def echo(i: int) -> bytes:
        return request(url, "POST", CALL.format("memo", "echo"), f"request {i}".encode()).body

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(echo, range(256)))
    assert answers == [f"request {i}".encode() for i in range(256)]


# -- state, deployments, health -----------------------------------------------------


def test_state_reads_merges_and_refuses(servers, memo):
    url = servers.start().url
    assert_error(request(url, "GET", "/v1/state/memo/fruits"), 404, "not-found", "no key 'fruits' in namespace memo")

    answer = request(url, "PUT", "/v1/state/memo/fruits", b'{"type": "Set", "values": ["pear", "apple"]}')
    assert (answer.status, answer.json()) == (200, {"type": "Set", "values": ["apple", "pear"]})
    answer = request(url, "PUT", "/v1/state/memo/fruits", b'{"type": "Set", "values": ["fig", {"base64": "AP8="}]}')
    assert answer.json() == {"type": "Set", "values": [{"base64": "AP8="}, "apple", "fig", "pear"]}
    assert request(url, "GET", "/v1/state/memo/fruits").json() == answer.json()
    assert "Set {" in ok(essa("state", "get", "-d", "memo", "fruits"))  # the same store as the CLI's

    # Keys may hold slashes; Lww and Max values round-trip.
    lww = {"type": "Lww", "timestamp": "2026-11-30T20:15:27.123Z", "value": "v1"}
    assert request(url, "PUT", "/v1/state/memo/a/b/c", json_bytes(lww)).json() == lww
    assert request(url, "GET", "/v1/state/memo/a/b/c").json() == lww
    assert ok(essa("state", "ls", "-d", "memo")).split() == ["a/b/c", "fruits"]

    assert_error(request(url, "PUT", "/v1/state/memo/fruits", b'{"type": "Max", "value": 3}'), 409,
                 "type-mismatch", "lattice types differ")
    assert request(url, "GET", "/v1/state/memo/fruits").json()["type"] == "Set"  # unchanged
    assert_error(request(url, "PUT", "/v1/state/memo/k", b'{"type": "Sett"}'), 400, "invalid", "unknown lattice type")
    assert_error(request(url, "PUT", "/v1/state/memo/k", b'{"type": '), 400, "invalid", "not JSON")
    assert_error(request(url, "PUT", "/v1/state/memo/k", b"\xff\xfe"), 400, "invalid", "not JSON")
    assert_error(request(url, "PUT", "/v1/state/memo/k", b'{"type": "Set", "values": "ab"}'), 400, "invalid")
    assert_error(request(url, "GET", "/v1/state/nope/k"), 404, "not-found", "no deployment named 'nope'")
    # Any UTF-8 key a guest can write, long ones too; a key that is not UTF-8 is refused, not replaced.
    assert request(url, "PUT", "/v1/state/memo/" + "k" * 5000, json_bytes(lww)).json() == lww
    assert request(url, "GET", "/v1/state/memo/" + "k" * 5000).json() == lww
    assert request(url, "PUT", "/v1/state/memo/%C3%A9t%C3%A9%0A", json_bytes(lww)).json() == lww
    assert request(url, "PUT", "/v1/state/memo/two%0Alines", json_bytes(lww)).json() == lww
    assert json.loads(ok(essa("state", "ls", "-d", "memo", "--json"))) == [
        "a/b/c", "fruits", "k" * 5000, "two\nlines", "été\n"]
    assert_error(request(url, "GET", "/v1/state/memo/%C3%A9t%C3%A9"), 404, "not-found", "no key 'été'")
    assert_error(request(url, "GET", "/v1/state/memo/bad%FF"), 400, "invalid", "not UTF-8")
    assert_error(request(url, "PUT", "/v1/state/memo/bad%FF", json_bytes(lww)), 400, "invalid", "not UTF-8")


def json_bytes(data) -> bytes:
    import json

    return json.dumps(data).encode()


def test_deployments_and_health(servers, memo, wasm, tmp_path):
    url = servers.start().url
    [deployment] = request(url, "GET", "/v1/deployments").json()
    assert (deployment["name"], deployment["version"], deployment["functions"]) == ("memo", 1, FUNCTIONS)
    plain = tmp_path / "plain.wasm"
    plain.write_bytes(module())
    ok(essa("deploy", str(plain), "--name", "memo"))
    ok(essa("tag", "memo@1", "stable"))
    [deployment] = request(url, "GET", "/v1/deployments").json()
    assert (deployment["version"], deployment["tags"], deployment["current"]) == (2, [], True)
    versions = request(url, "GET", "/v1/deployments/memo").json()
    assert [(v["version"], v["tags"], v["current"]) for v in versions] == [(1, ["stable"], False), (2, [], True)]
    # memo@stable is memo@1, which has gate; memo (memo@2) has not
    assert_error(request(url, "POST", "/v1/functions/memo/gate", b"x"), 404, "not-found", "memo@2 has no function")
    assert_error(request(url, "POST", "/v1/functions/memo@stable/nope", b"x"), 404, "not-found", "memo@1 has no")
    assert_error(request(url, "GET", "/v1/deployments/nope"), 404, "not-found", "no deployment named 'nope'")
    health = request(url, "GET", "/healthz")
    assert health.status == 200 and health.json()["ok"] is True and "embedded" in health.json()["where"]


def test_metrics_count_the_requests_made(servers, memo):
    url = servers.start().url

    def counters() -> dict[tuple, float]:
        answer = request(url, "GET", "/metrics")
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/plain")
        found = {}
        for family in text_string_to_metric_families(answer.body.decode()):
            for sample in family.samples:
                if sample.name == "essa_http_requests_total":
                    labels = sample.labels
                    found[(labels["route"], labels["method"], labels["status"])] = sample.value
                elif sample.name in ("essa_cluster_executor_calls_total", "essa_cluster_executor_failures_total"):
                    found[sample.name] = found.get(sample.name, 0) + sample.value  # summed over executors
                    continue
                found.setdefault(sample.name, sample.value)
        return found

    before = counters()
    assert "process_cpu_seconds_total" in before  # the process's own registry is there too
    for _ in range(7):
        request(url, "POST", CALL.format("memo", "echo"), b"x")
    for _ in range(3):
        request(url, "POST", CALL.format("memo", "trap"))
    request(url, "GET", "/nowhere")
    after = counters()
    route = "/v1/functions/{deployment}/{function}"
    assert after[(route, "POST", "200")] - before.get((route, "POST", "200"), 0) == 7
    assert after[(route, "POST", "500")] - before.get((route, "POST", "500"), 0) == 3
    assert after[("other", "GET", "404")] - before.get(("other", "GET", "404"), 0) == 1
    assert after[("/metrics", "GET", "200")] - before.get(("/metrics", "GET", "200"), 0) == 1
    assert "essa_http_request_duration_seconds_count" in after and "essa_http_requests_in_flight" in after
    # The cluster's totals: the calls behind those requests, exactly.
    assert after["essa_cluster_executor_calls_total"] - before["essa_cluster_executor_calls_total"] == 10
    assert after["essa_cluster_executor_failures_total"] - before["essa_cluster_executor_failures_total"] == 3
    assert after["essa_cluster_executors"] >= 1


# -- bad input --------------------------------------------------------------------------


def test_bad_requests_get_one_line_answers_and_no_traceback(servers, memo):
    server = servers.start()
    url = server.url
    assert_error(request(url, "GET", "/nowhere"), 404, "not-found", "no route GET /nowhere")
    answer = request(url, "DELETE", CALL.format("memo", "echo"))
    assert_error(answer, 405, "invalid", "DELETE is not allowed here")
    assert answer.headers["allow"] == "POST"

    for garbage in (b"\x00\x01\x02 not http\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                    b"POST /v1/functions/memo/echo HTTP/1.1\r\nContent-Length: x1\r\n\r\n"):
        answer = raw_exchange(url, garbage)
        assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(
            b'{"error": "malformed HTTP request", "kind": "invalid"}'), answer[:200]
    # Heads over 64 KiB: refused once that much is read (a client still sending may see a reset instead).
    for huge in (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"b" * 100_000 + b"\r\n\r\n"):
        answer = raw_exchange(url, huge)
        assert answer == b"" or (answer.startswith(b"HTTP/1.1 400 ") and b"exceed 64 KiB" in answer), answer[:200]
    assert request(url, "POST", CALL.format("memo", "echo"), b"fine").body == b"fine"
    assert server.stop() == 0
    log = server.log_text()
    assert "Traceback" not in log
    assert log.count("Invalid HTTP request received") == 1  # rate-limited: one line per kind of problem


def test_an_access_log_line_per_request_only_with_verbose(servers, memo):
    quiet = servers.start()
    request(quiet.url, "POST", CALL.format("memo", "echo"), b"x")
    request(quiet.url, "GET", "/healthz")
    assert quiet.stop() == 0
    assert "POST /v1/functions" not in quiet.log_text()

    loud = servers.start(verbose=True)
    request(loud.url, "POST", CALL.format("memo", "echo"), b"x")
    request(loud.url, "GET", "/v1/state/memo/nothing")
    assert loud.stop() == 0
    lines = [line for line in loud.log_text().splitlines() if line.startswith("essa: http ")]
    assert len(lines) == 2, loud.log_text()
    assert "POST /v1/functions/memo/echo 200" in lines[0] and "GET /v1/state/memo/nothing 404" in lines[1]


def test_essa_plugins_and_serve_help_list_the_trigger_and_its_options():
    listing = ok(essa("plugins"))
    assert "trigger http" in listing
    help_text = ok(essa("serve", "--help"))
    assert "Trigger options (--trigger-option KEY=VALUE)" in help_text
    for key in ("max-requests", "max-connections", "header-timeout", "body-timeout", "keep-alive", "threads"):
        assert key in listing and f"http: {key}" in help_text, key


def test_an_unknown_trigger_or_a_taken_address_fail_in_one_line(servers, monkeypatch):
    assert "unknown trigger 'nosuch'" in cli_error("serve", "--trigger", "nosuch")
    monkeypatch.setenv("ESSA_BLOCK_PLUGINS", "http")
    assert "pip install -e plugins/trigger_http" in cli_error("serve")
    monkeypatch.delenv("ESSA_BLOCK_PLUGINS")

    taken = servers.start().url.removeprefix("http://")
    assert f"cannot listen on {taken}" in cli_error("serve", "--listen", taken)
    assert "give HOST:PORT" in cli_error("serve", "--listen", "nowhere")
    assert "no option 'colour'" in cli_error("serve", "--trigger-option", "colour=blue")
    for bad in ("header-timeout=0", "body-timeout=soon", "max-requests=1.5", "max-connections=-3"):
        assert f"--trigger-option {bad.split('=')[0]}=" in cli_error("serve", "--trigger-option", bad)
    assert "limits and grants" in cli_error("serve", "--connect", "tcp/127.0.0.1:1", "--time-limit", "1")


# -- shutdown -----------------------------------------------------------------------------


def test_sigterm_lets_a_request_in_flight_finish_then_exits_0(servers, memo):
    server = servers.start()
    answers = []
    caller = threading.Thread(target=lambda: answers.append(request(server.url, "POST", CALL.format("memo", "gate"))))
    caller.start()
    wait_until(lambda: request(server.url, "GET", "/v1/state/memo/started").status == 200, "the gate call to start")

    server.proc.send_signal(signal.SIGTERM)
    # The call is still waiting: let it finish (a process of its own writes the key it waits for).
    ok(essa("state", "put", "-d", "memo", "release", "--type", "set", "go"))
    caller.join()
    assert [(a.status, a.body) for a in answers] == [(200, b"released")]
    assert server.stop(None) == 0
    assert "Traceback" not in server.log_text() and "http trigger stopped" in server.log_text()


def test_ctrl_c_stops_it(servers, memo):
    server = servers.start()
    assert request(server.url, "POST", CALL.format("memo", "echo"), b"x").status == 200
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.log_text()


def test_a_request_still_running_after_the_shutdown_timeout_is_answered_503(servers, memo):
    server = servers.start("--shutdown-timeout", "1")
    answers = []
    caller = threading.Thread(target=lambda: answers.append(request(server.url, "POST", CALL.format("memo", "gate"))))
    caller.start()
    wait_until(lambda: request(server.url, "GET", "/v1/state/memo/started").status == 200, "the gate call to start")
    assert server.stop() == 0  # nobody releases the gate: the call is cancelled after 1 s
    caller.join()
    [answer] = answers
    assert_error(answer, 503, "cancelled", "the server is stopping")
    assert "Traceback" not in server.log_text()


# -- long-running ---------------------------------------------------------------------


def test_threads_descriptors_and_memory_stay_flat_over_many_requests(servers, memo):
    import http.client

    from essa.testing.resources import sample

    server = servers.start("--trigger-option", "threads=4")  # a pool that the warm-up fills
    host, port = server.url.removeprefix("http://").rsplit(":", 1)

    def burst(n: int) -> None:
        """``n`` requests of every kind from 16 clients: keep-alive ones, and a new connection each time."""
        def client(i: int) -> None:
            connection = http.client.HTTPConnection(host, int(port), timeout=60)
            for j in range(n // 16):
                path, body = [(CALL.format("memo", "echo"), b"x" * j), (CALL.format("memo", "trap"), b""),
                              (CALL.format("memo", "nope"), b""), ("/v1/state/memo/none", None),
                              ("/healthz", None)][j % 5]
                connection.request("GET" if body is None else "POST", path, body=body)
                response = connection.getresponse()
                response.read()
                assert response.status in (200, 404, 500), response.status
                if i % 2:  # half the clients open a new connection per request
                    connection.close()
                    connection = http.client.HTTPConnection(host, int(port), timeout=60)
            connection.close()

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(client, range(16)))

    burst(1600)  # warm: threads started, caches filled
    before = sample(server.proc.pid)
    burst(4800)
    after = sample(server.proc.pid)
    assert after.fds <= before.fds + 2, (before, after)
    assert after.threads <= before.threads + 2, (before, after)
    assert after.mappings <= before.mappings + 16, (before, after)
    assert after.rss <= before.rss + (32 << 20), (before, after)


def test_a_second_signal_stops_without_waiting_for_requests_in_flight(servers, memo):
    server = servers.start("--shutdown-timeout", "600")
    answers = []

    def gate() -> None:
        try:
            answers.append(request(server.url, "POST", CALL.format("memo", "gate")).status)
        except OSError as exc:  # the connection closed before an answer
            answers.append(type(exc).__name__)

    caller = threading.Thread(target=gate)
    caller.start()
    wait_until(lambda: request(server.url, "GET", "/v1/state/memo/started").status == 200, "the gate call to start")
    server.proc.send_signal(signal.SIGTERM)

    def refused() -> bool:  # the first signal was handled: it takes no new connections
        try:
            request(server.url, "GET", "/healthz", timeout=5)
        except OSError:
            return True
        return False

    wait_until(refused, "the server to stop listening")
    assert server.stop(signal.SIGINT) == 0  # does not wait 600 s for the gate
    caller.join()
    assert answers in ([503], ["RemoteDisconnected"], ["ConnectionResetError"]), answers
    assert "Traceback" not in server.log_text()
