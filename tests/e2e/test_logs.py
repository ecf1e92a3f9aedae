"""Logs: what deployments' calls print, kept by the executors that ran them, read from other processes.

On a cluster of real processes (a scheduler and two executors over zenoh on
loopback, free ports): a caller process makes calls while `essa logs`
processes read and follow what they print, and the test process (a third
client) makes calls of its own; what survives an executor that stops. The
embedded runtime's logs are read from the process that runs it. Waits poll
for what they wait for, with generous deadlines.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

import essa
from essa.api import LogBounds
from essa.cluster.logbook import LINE_OVERHEAD
from essa.testing.printing import TALLY_COMPLAINT, printing_module

from .test_cli import assert_one_line_error
from .test_cli import essa as essa_command
from .test_cluster import ESSA, Cluster

DEADLINE = 90.0

#: Calls say("call N") from 8 threads, printing "N" per call made, until its stdin ends.
CALLER = """
import itertools, sys, threading
import essa

stop = threading.Event()
count = itertools.count()
lock = threading.Lock()

def call():
    with essa.connect(sys.argv[1], timeout=60) as es:
        while not stop.is_set():
            n = next(count)
            assert es.call("p", "say", b"call %d" % n, timeout=60) == b"call %d" % n
            with lock:
                print(n, flush=True)

threads = [threading.Thread(target=call, daemon=True) for _ in range(8)]
for thread in threads:
    thread.start()
sys.stdin.read()
stop.set()
for thread in threads:
    thread.join(60)
"""


@pytest.fixture
def cluster(engine_name, tmp_path):
    c = Cluster(engine_name, tmp_path)
    yield c
    c.stop()


class Lines:
    """A child process's stdout, line by line, from a reader thread (so waits have deadlines)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))

    def until(self, condition, what: str) -> list[str]:
        """Lines read until one satisfies ``condition`` (it included), within the deadline."""
        seen, end = [], time.monotonic() + DEADLINE
        while True:
            try:
                line = self.queue.get(timeout=max(0.1, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out waiting for {what}; read {seen[-5:]}") from None
            seen.append(line)
            if condition(line):
                return seen


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stdout


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_clusters_logs_are_read_and_followed_from_other_processes_while_calls_run(cluster, tmp_path):
    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    c = ("--connect", cluster.endpoint, "--timeout", "60")
    wasm = tmp_path / "printing.wasm"
    wasm.write_bytes(printing_module())
    ok(essa_command("deploy", *c, str(wasm), "--name", "p"))

    caller = subprocess.Popen([sys.executable, "-c", CALLER, cluster.endpoint], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    follow = None
    try:
        made = Lines(caller)
        made.until(lambda line: int(line) >= 40, "the caller to make 40 calls")

        # Read while the calls go on: from both executors (placement spreads them as calls pile up), merged by time.
        end = time.monotonic() + DEADLINE
        while True:
            lines = json_lines(ok(essa_command("logs", *c, "p", "--json")))
            if {line["executor"] for line in lines} == {"0", "1"}:
                break
            assert time.monotonic() < end, f"no lines from both executors: {lines[-3:]}"
            time.sleep(0.5)
        assert {line["text"] for line in lines} >= {f"said call {n}" for n in range(40)}
        assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)
        first = lines[0]
        assert (first["deployment"], first["version"], first["function"], first["stream"]) == ("p", 1, "say", "stdout")
        human = ok(essa_command("logs", *c, "p", "--tail", "3")).splitlines()
        assert len(human) == 3 and all(" p@1 say call " in line and " stdout: said call " in line for line in human)
        one = json_lines(ok(essa_command("logs", *c, "p", "--call", first["call"], "--json")))
        assert [line["text"] for line in one] == [first["text"]]
        assert ok(essa_command("logs", *c, "p", "--since", "2100-01-01T00:00:00Z")) == ""
        assert len(ok(essa_command("logs", *c, "p", "--since", "1h")).splitlines()) >= 40

        # Follow: new lines as they are written, this client's among them.
        follow = subprocess.Popen([*ESSA, "logs", *c, "p", "--follow", "--tail", "0", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        followed = Lines(follow)
        followed.until(lambda line: json.loads(line)["text"].startswith("said call "), "a followed line")
        with essa.connect(cluster.endpoint, timeout=60) as es:
            assert es.call("p", "say", b"marker") == b"marker"
            followed.until(lambda line: json.loads(line)["text"] == "said marker", "the marker to be followed")
            # A guest's remote call is the deployment's call too.
            assert es.call("p", "relay", b"nested") == b"nested"
            followed.until(lambda line: json.loads(line)["text"] == "said nested", "the nested call's line")
        follow.send_signal(signal.SIGINT)
        assert follow.wait(DEADLINE) == 0
        assert follow.stderr.read() == ""
    finally:
        caller.stdin.close()
        assert caller.wait(DEADLINE) == 0
        if follow is not None and follow.poll() is None:
            follow.kill()
            follow.wait()


def test_a_failed_calls_error_carries_its_stderr_and_where_it_trapped_and_logs_survive_only_their_executor(
        cluster, tmp_path):
    cluster.scheduler()
    cluster.executor("0")
    cluster.executor("1")
    cluster.wait_for_executors(2)
    c = ("--connect", cluster.endpoint, "--timeout", "60")
    wasm = tmp_path / "printing.wasm"
    wasm.write_bytes(printing_module())
    ok(essa_command("deploy", *c, str(wasm), "--name", "p"))

    result = essa_command("call", *c, "p", "tally")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    *printed, error = result.stderr.strip().splitlines()
    assert printed == ["tally: counting", TALLY_COMPLAINT]  # the call's own output, as it went
    assert error == ("essa: error: tally trapped: wasm `unreachable` instruction executed (in check_limit <- tally); "
                     f"stderr: {TALLY_COMPLAINT}")

    with essa.connect(cluster.endpoint, timeout=60) as es:
        with pytest.raises(essa.CallError) as info:
            es.call("p", "tally")
        assert info.value.kind == "trap" and info.value.stderr == [TALLY_COMPLAINT]
        assert "(in check_limit <- tally)" in str(info.value)
        lines = es.logs("p", call=info.value.call)
        assert [(line.stream, line.text) for line in lines] == [
            ("stdout", "tally: counting"), ("stderr", TALLY_COMPLAINT),
            ("stderr", "essa: tally trapped: wasm `unreachable` instruction executed (in check_limit <- tally)")]
        end = time.monotonic() + DEADLINE
        n = 0
        while {line.executor for line in es.logs("p")} != {"0", "1"}:  # concurrent calls spread over both
            assert time.monotonic() < end, "no lines from both executors"
            futures = [es.call_async("p", "complain", b"%d-%d" % (n, i)) for i in range(8)]
            assert [f.result(60) for f in futures] == [b"%d-%d" % (n, i) for i in range(8)]
            n += 1

    # An executor that stops takes its lines with it; the other's stay.
    cluster.procs["executor-1"].send_signal(signal.SIGTERM)
    assert cluster.procs["executor-1"].wait(DEADLINE) == 0
    lines = json_lines(ok(essa_command("logs", *c, "p", "--json")))
    assert lines and {line["executor"] for line in lines} == {"0"}

    assert_one_line_error(essa_command("logs", *c, "nope"), "no deployment named 'nope'")
    assert_one_line_error(essa_command("logs", "p"), "give --connect ENDPOINT")
    assert_one_line_error(essa_command("logs", *c, "p", "--since", "yesterday"), "neither a duration")


def test_the_embedded_runtimes_logs_are_read_from_its_process_while_calls_run(engine_name):
    cost = len("said 000-00") + LINE_OVERHEAD
    with essa.connect(engine=engine_name, store="memory", executors=2,
                      logs=LogBounds(deployment=500 * cost, call=10 * cost, total=1000 * cost)) as es:
        es.deploy(printing_module(), name="p")
        follower = es.follow_logs("p", interval=0.05)
        seen: list[str] = []
        reading = threading.Thread(target=lambda: [seen.append(line.text) for line in follower], daemon=True)
        reading.start()

        def calls(worker: int) -> None:
            for n in range(100):
                assert es.call("p", "say", b"%03d-%02d" % (n, worker)) == b"%03d-%02d" % (n, worker)

        workers = [threading.Thread(target=calls, args=(i,)) for i in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(DEADLINE)
        end = time.monotonic() + DEADLINE
        while len(seen) < 400 and time.monotonic() < end:
            time.sleep(0.05)
        follower.close()
        reading.join(DEADLINE)
        assert sorted(seen) == sorted(f"said {n:03d}-{w:02d}" for n in range(100) for w in range(4))
        assert follower.lost == 0
        # The deployment's bound: its newest 500 lines.
        for n in range(200):
            es.call("p", "say", b"%03d-99" % n)
        kept = es.logs("p")
        assert len(kept) == 500 and kept[-1].text == "said 199-99" and kept[0].text not in ("said 000-00",)
        assert len({line.text for line in kept}) == 500
        assert [line.text for line in es.logs("p", tail=2)] == [line.text for line in kept[-2:]]
        assert es.logs("p@1", since=3600) == kept and es.logs("p", since="1h") == kept
        with pytest.raises(essa.NotFound, match="no deployment named 'q'"):
            es.logs("q")


def test_logs_options_and_help(tmp_path):
    text = ok(essa_command("logs", "--help"))
    for option in ("--follow", "--call ID", "--since WHEN", "--tail N", "--json", "--connect"):
        assert option in text
    assert "--log-size" in ok(essa_command("executor", "--help"))
    assert "--log-size" in ok(essa_command("up", "--help"))
    assert_one_line_error(essa_command("executor", "0", "--log-size", "lots"), "--log-size")
