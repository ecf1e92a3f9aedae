"""Metrics and traces of real processes: counters move by exactly the calls made; traces link every call."""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .test_cli import TEST_FUNCTION, essa
from .test_service import STATEFUL

pytest.importorskip("zenoh")
pytest.importorskip("essa_lmdb")

DEADLINE = 90.0


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample at ``url``: (name, sorted labels) -> value."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            break
        except OSError:
            assert time.monotonic() < deadline, f"nothing serves {url}"
            time.sleep(0.2)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def cluster(engine_name, tmp_path):
    from .test_cluster import Cluster

    c = Cluster(engine_name, tmp_path)
    yield c
    c.stop()


def test_metrics_count_exactly_the_calls_made(cluster, tmp_path):
    from essa.testing.ports import free_port

    scheduler_port, executor_port = free_port(), free_port()
    cluster._spawn("scheduler", "scheduler", "--listen", cluster.endpoint, "--metrics", f"127.0.0.1:{scheduler_port}")
    cluster._spawn("executor-0", "executor", "0", "--connect", cluster.endpoint, "--listen",
                   f"tcp/127.0.0.1:{free_port()}", "--metrics", f"127.0.0.1:{executor_port}")
    cluster.wait_for_executors(1)
    wasm = tmp_path / "memo.wasm"
    wasm.write_bytes(STATEFUL)
    c = ("--connect", cluster.endpoint, "--timeout", "60")
    assert essa("deploy", str(wasm), "--name", "memo", *c).returncode == 0
    executor_url = f"http://127.0.0.1:{executor_port}/metrics"
    before = scrape(executor_url)
    placed_before = scrape(f"http://127.0.0.1:{scheduler_port}/metrics")[("essa_scheduler_calls_placed_total", ())]
    for i in range(5):
        assert essa("call", "memo", "remember", f"x{i}", *c).stdout == f"x{i}"
    assert essa("call", "memo", "trap", *c).returncode == 1
    after = scrape(executor_url)

    def moved(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("essa_calls_total", deployment="memo", function="remember", outcome="ok") == 5
    assert moved("essa_calls_total", deployment="memo", function="trap", outcome="trap") == 1
    assert moved("essa_call_duration_seconds_count", deployment="memo", function="remember") == 5
    assert moved("essa_call_bytes_total", direction="in") == 10  # "x0" .. "x4"
    assert moved("essa_store_operations_total", op="put") == 5
    placed = scrape(f"http://127.0.0.1:{scheduler_port}/metrics")[("essa_scheduler_calls_placed_total", ())]
    assert placed - placed_before == 6
    assert after[("essa_module_loads_total", (("source", "compiled"),))] + after.get(
        ("essa_module_loads_total", (("source", "artifact"),)), 0) >= 1


def test_a_guest_to_guest_call_of_a_deployment_carries_its_name(engine_name):
    """count_lines calls count_words once per line, remotely: those calls are the deployment's too."""
    from prometheus_client import REGISTRY

    import essa

    def count(function: str) -> float:
        labels = {"deployment": "wc", "function": function, "outcome": "ok"}
        return REGISTRY.get_sample_value("essa_calls_total", labels) or 0.0

    with essa.connect(engine=engine_name, store="memory") as es:
        es.deploy(TEST_FUNCTION.with_name("word-count.wasm"), "wc")
        before = count("count_words"), count("count_lines")
        assert essa.decode("u64", es.call("wc", "count_lines", essa.encode(["string"], ["a b\nc\nd e f"]))) == 6
        assert (count("count_words") - before[0], count("count_lines") - before[1]) == (3, 1)
    assert REGISTRY.get_sample_value("essa_calls_total", {"deployment": "", "function": "count_words",
                                                           "outcome": "ok"}) is None


def test_a_trace_of_the_test_function_on_two_executors_links_all_133_calls(cluster, tmp_path):
    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    trace_file = tmp_path / "trace.json"
    result = essa("run", "--connect", cluster.endpoint, "--timeout", "60", "--trace", str(trace_file),
                  str(TEST_FUNCTION))
    assert result.returncode == 0, result.stderr
    assert "wrote a trace of 133 calls" in result.stderr
    trace = json.loads(trace_file.read_text())
    calls = [e for e in trace["traceEvents"] if e["cat"] == "call"]
    assert len(calls) == 133
    ids = {e["args"]["call"] for e in calls}
    roots = [e for e in calls if e["args"]["parent"] is None]
    assert [r["name"] for r in roots] == ["_start"]
    assert all(e["args"]["parent"] in ids for e in calls if e not in roots)
    assert {e["args"]["executor"] for e in calls} == {"0", "1"}
    assert all(e["ph"] == "X" and e["dur"] >= 0 and e["args"]["outcome"] == "ok" for e in calls)
    flows = [e for e in trace["traceEvents"] if e["cat"] == "flow"]
    assert len(flows) == 2 * 132  # an arrow (start and end) per remote call


def test_a_traced_call_from_the_cli(tmp_path):
    wasm = tmp_path / "memo.wasm"
    wasm.write_bytes(STATEFUL)
    assert essa("deploy", str(wasm), "--name", "memo").returncode == 0
    result = essa("call", "memo", "remember", "x", "--trace", str(tmp_path / "t.json"))
    assert result.returncode == 0 and result.stdout == "x"
    calls = [e for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"] if e["cat"] == "call"]
    assert [(c["name"], c["args"]["result_bytes"]) for c in calls] == [("remember", 1)]


def test_top_renders_a_frame_of_a_two_executor_cluster_and_quits_on_q(cluster, tmp_path):
    import os
    import pty
    import select

    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    assert cluster.run(TEST_FUNCTION).returncode == 0  # something to show
    pid, fd = pty.fork()
    if pid == 0:  # the child: essa top on a pseudo-terminal, wide enough for one line per row
        os.execve(sys.executable, [sys.executable, "-m", "essa", "top", "--connect", cluster.endpoint,
                                   "--interval", "0.5"], {**os.environ, "COLUMNS": "160", "LINES": "50"})
    screen = b""
    deadline = time.monotonic() + DEADLINE
    try:
        while not (b"busiest functions" in screen and b"p99 ms" in screen):
            assert time.monotonic() < deadline, screen.decode(errors="replace")
            if select.select([fd], [], [], 0.5)[0]:
                screen += os.read(fd, 65536)
        text = screen.decode(errors="replace")
        assert "executors" in text and "calls/s" in text and "p99 ms" in text
        os.write(fd, b"q")
        while True:
            assert time.monotonic() < deadline, "essa top did not quit on q"
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                assert os.waitstatus_to_exitcode(status) == 0
                break
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    os.read(fd, 65536)
                except OSError:
                    pass
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.close(fd)


def in_a_terminal(args: list[str], columns: int, rows: int = 50) -> str:
    """What ``essa ARGS`` prints to a pseudo-terminal ``columns`` wide (no COLUMNS: the terminal's own size)."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        os.execve(sys.executable, [sys.executable, "-m", "essa", *args], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    output = b""
    deadline = time.monotonic() + DEADLINE
    try:
        while True:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                output += chunk
                if chunk:
                    continue
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")
                return output.decode(errors="replace")
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.close(fd)


def test_status_and_top_fit_an_80_column_terminal(cluster):
    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    assert cluster.run(TEST_FUNCTION).returncode == 0
    c = ["--connect", cluster.endpoint]
    status = in_a_terminal(["status", *c], 80)
    top = in_a_terminal(["top", *c, "--once", "--interval", "0.5"], 80)
    for screen, headers in ((status, ("id", "engine", "workers", "calls", "runs", "failed", "cancelled", "running",
                                      "flight", "modules")),
                            (top, ("executor", "engine", "calls/s", "p50", "p99", "running", "flight", "failed",
                                   "cancelled", "modules", "busiest functions"))):
        screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # colours and cursor moves
        lines = [line.rstrip() for line in screen.replace("\r", "").splitlines()]
        assert "\u2026" not in screen, screen  # no header (nor anything) cut with an ellipsis
        assert all(len(line) <= 80 for line in lines), screen
        header = " ".join(lines)
        assert all(word in header.split() or word in header for word in headers), screen
    narrow = in_a_terminal(["status", *c], 40)  # too narrow for the table: a block per executor
    assert "\u2026" not in narrow and "  cancelled:" in narrow and "  engine:" in narrow


def test_top_once_shows_the_busiest_functions(cluster):
    cluster.scheduler()
    cluster.executor("0")
    cluster.wait_for_executors(1)
    import threading

    runs = threading.Thread(target=lambda: [cluster.run(TEST_FUNCTION) for _ in range(3)])
    runs.start()
    result = essa("top", "--connect", cluster.endpoint, "--once", "--interval", "2")
    runs.join()
    assert result.returncode == 0, result.stderr
    assert "executors" in result.stdout and "busiest functions" in result.stdout
