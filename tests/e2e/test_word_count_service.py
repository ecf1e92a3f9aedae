"""Issue 11's done-when: the word count deployed, called from the CLI and Python alike, its state listed
and read, embedded and on an `essa up` cluster with the durable anna store, and kept across a restart."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import essa

from .test_cli import ROOT
from .test_cli import essa as run_essa

WORD_COUNT = ROOT / "examples" / "word-count.wasm"
TEXT = "The quick brown fox jumps over the lazy dog\nthe dog sleeps\n"
WORDS = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "sleeps"}
DEADLINE = 120.0


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def check_word_count(cli, connection) -> None:
    """Deploy, call from the CLI and from Python (same results), list and read the state."""
    assert ok(cli("deploy", str(WORD_COUNT), "--name", "wc")).startswith("deployed wc@")
    from_cli = int(ok(cli("call", "wc", "count_lines", "--args", "string", TEXT, "--result", "u64")))
    from_python = essa.decode("u64", connection.call("wc", "count_lines", essa.encode(["string"], [TEXT])))
    assert from_cli == from_python == 12
    assert ok(cli("state", "ls", "--deployment", "wc")).split() == ["vocab"]
    assert set(json.loads(ok(cli("state", "get", "-d", "wc", "vocab", "--json")))["values"]) == WORDS
    assert connection.state("wc").get("vocab") == essa.SetLattice(w.encode() for w in WORDS)
    vocabulary = json.loads(ok(cli("call", "wc", "vocabulary", "--result", "strings", "--json")))["result"]
    assert vocabulary == sorted(WORDS)


def test_embedded(tmp_path):
    with essa.connect() as connection:  # the default store: LMDB in this test's ESSA_HOME
        check_word_count(run_essa, connection)


def test_on_an_anna_cluster_that_restarts(tmp_path):
    pytest.importorskip("essa_anna")
    from essa.testing.ports import free_port

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    data = tmp_path / "anna"

    def up() -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "essa", "--store", "anna", "--store-option", f"path={data}",
             "--store-option", "kvs_nodes=2", "up", "--executors", "2", "--listen", endpoint],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.monotonic() + DEADLINE
        while True:  # ready: both executors joined and the store answers
            status = run_essa("status", "--connect", endpoint, "--json", timeout=DEADLINE)
            if status.returncode == 0 and sum(a["role"] == "executor" for a in json.loads(status.stdout)) == 2:
                probe = run_essa("ls", "--connect", endpoint, "--timeout", "60", timeout=DEADLINE)
                if probe.returncode == 0:
                    return proc
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.5)

    def down(proc: subprocess.Popen) -> str:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=DEADLINE)
        return out

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run_essa(*args, "--connect", endpoint, "--timeout", "60", timeout=DEADLINE)

    proc = up()
    try:
        with essa.connect(endpoint, timeout=60) as connection:
            check_word_count(cli, connection)
    finally:
        logs = down(proc)
    assert "Traceback" not in logs

    proc = up()
    try:
        assert [d["name"] for d in json.loads(ok(cli("ls", "--json")))] == ["wc"]
        assert ok(cli("state", "ls", "-d", "wc")).split() == ["vocab"]
        assert set(json.loads(ok(cli("state", "get", "-d", "wc", "vocab", "--json")))["values"]) == WORDS
        assert int(ok(cli("call", "wc", "count_words", "--args", "string", "a new word", "--result", "u64"))) == 3
        assert {"new", "word", "a"} <= set(json.loads(ok(cli("call", "wc", "vocabulary", "--result", "strings",
                                                                "--json")))["result"])
    finally:
        logs = down(proc)
    assert "Traceback" not in logs
