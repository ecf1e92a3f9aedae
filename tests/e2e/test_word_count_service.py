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


def wait_for_executors(proc: subprocess.Popen, endpoint: str, count: int) -> list[dict]:
    """Poll ``essa status`` until ``count`` executors joined the cluster ``proc`` (an `essa up`) runs."""
    deadline = time.monotonic() + DEADLINE
    while True:
        status = run_essa("status", "--connect", endpoint, "--json", timeout=DEADLINE)
        if status.returncode == 0:
            executors = [a for a in json.loads(status.stdout) if a["role"] == "executor"]
            if len(executors) == count:
                return executors
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the cluster did not come up"
        time.sleep(0.5)


HELLO_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello, no state\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def test_on_a_redis_cluster_up_with_its_store_down_then_back(tmp_path):
    """`essa --store redis up`: the word count and the test function on Redis alone; with Redis down, calls
    that touch state fail in one line and one that touches none still runs; Redis back, everything works."""
    pytest.importorskip("essa_redis")
    wasmtime = pytest.importorskip("wasmtime")
    from redis_store.servers import RedisServer

    from .test_cli import EXPECTED_TEST_FUNCTION_OUTPUT, TEST_FUNCTION
    from .test_cluster import free_port

    redis = RedisServer(tmp_path / "redis", appendonly="yes", appendfsync="always").start()
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    hello = tmp_path / "hello.wasm"
    hello.write_bytes(wasmtime.wat2wasm(HELLO_WAT))
    store = ["--store", "redis", "--store-option", f"url={redis.url}", "--store-option", "timeout=2"]
    proc = subprocess.Popen([sys.executable, "-m", "essa", *store, "up", "--executors", "2", "--listen", endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run_essa(*args, "--connect", endpoint, "--timeout", "60", timeout=DEADLINE)

    try:
        wait_for_executors(proc, endpoint, 2)
        with essa.connect(endpoint, timeout=60) as connection:
            check_word_count(cli, connection)
        result = run_essa("run", "--connect", endpoint, "--timeout", "60", str(TEST_FUNCTION), timeout=DEADLINE)
        assert result.returncode == 0, result.stderr
        assert result.stdout == EXPECTED_TEST_FUNCTION_OUTPUT
        for _ in range(2):  # loaded by the executor that runs it again
            assert ok(cli("run", str(hello))) == "hello, no state\n"
        # an embedded run and the commands without --connect use the same Redis
        assert ok(run_essa(*store, "state", "ls", "--deployment", "wc")).split() == ["vocab"]

        redis.kill(signal.SIGKILL)
        assert ok(cli("run", str(hello))) == "hello, no state\n"  # touches no state: still runs
        for args in (("call", "wc", "count_words", "--args", "string", "a b", "--result", "u64"),
                     ("state", "get", "-d", "wc", "vocab")):
            down = cli(*args)
            assert down.returncode != 0 and "Traceback" not in down.stderr
            assert len(down.stderr.strip().splitlines()) == 1, down.stderr
            assert "state store unavailable: redis at 127.0.0.1:" in down.stderr
        down = run_essa(*store, "state", "get", "-d", "wc", "vocab")
        assert down.returncode == 1 and down.stderr.startswith("essa: error: state store unavailable: ")

        redis.start()
        assert int(ok(cli("call", "wc", "count_words", "--args", "string", "a new word", "--result", "u64"))) == 3
        assert {"new", "word", "a"} | WORDS == set(json.loads(ok(cli("state", "get", "-d", "wc", "vocab",
                                                                     "--json")))["values"])
    finally:
        proc.send_signal(signal.SIGTERM)
        logs, _ = proc.communicate(timeout=DEADLINE)
        redis.stop()
    assert "Traceback" not in logs


@pytest.mark.parametrize("cache", ["64M", "0"], ids=["cache-on", "cache-off"])
def test_on_a_redis_cluster_up_the_examples_give_the_same_output_with_the_executor_caches_on_and_off(tmp_path,
                                                                                                     cache):
    """`essa --store redis up --cache-size`: essa-rs's test function and the word count give the same output
    with the executors' caches fed by Redis and without them; a word one executor adds, every executor reads."""
    pytest.importorskip("essa_redis")
    from redis_store.servers import RedisServer

    redis = RedisServer(tmp_path / "redis").start()
    try:
        check_examples_with_cache(cache, redis.url)
    finally:
        redis.stop()


@pytest.mark.parametrize("cache", ["64M", "0"], ids=["cache-on", "cache-off"])
def test_up_on_a_redis_cluster_store_the_examples_give_the_same_output_with_the_caches_on_and_off(redis_cluster,
                                                                                              cache):
    """The same on a Redis Cluster (3 masters, 3 replicas): each executor's cache fed by every master."""
    check_examples_with_cache(cache, redis_cluster.url, prefix=f"e2e-{cache}:")


def check_examples_with_cache(cache: str, url: str, prefix: str = "essa:") -> None:
    """`essa up` on the Redis at ``url`` with ``--cache-size cache``: the examples give their usual output."""
    from redis_store.servers import wait_until

    from .test_cli import EXPECTED_TEST_FUNCTION_OUTPUT, TEST_FUNCTION
    from .test_cluster import free_port

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "essa", "--store", "redis", "--store-option", f"url={url}",
                             "--store-option", f"prefix={prefix}",
                             "up", "--executors", "2", "--listen", endpoint, "--cache-size", cache],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run_essa(*args, "--connect", endpoint, "--timeout", "60", timeout=DEADLINE)

    try:
        wait_for_executors(proc, endpoint, 2)
        with essa.connect(endpoint, timeout=60) as connection:
            check_word_count(cli, connection)
            for i in range(6):  # each call lands on either executor: each reads what the other wrote
                # At the causal level the next call reads past its executor's cache what the last one wrote.
                assert connection.call("wc", "count_words", essa.encode(["string"], [f"added{i}"]),
                                       consistency="causal")
                expected = {f"added{j}" for j in range(i + 1)} | WORDS
                vocabulary = essa.decode("strings", connection.call("wc", "vocabulary", b"", consistency="causal"))
                assert expected == set(vocabulary)
                # At the default level a cache may serve the old value until Redis's invalidation arrives
                # (milliseconds; a busy machine delays it): then every executor reads the word.
                wait_until(lambda: expected == set(essa.decode("strings", connection.call("wc", "vocabulary", b""))),
                           what=f"a default-level read of added{i}")
        result = cli("run", str(TEST_FUNCTION))
        assert result.returncode == 0, result.stderr
        assert result.stdout == EXPECTED_TEST_FUNCTION_OUTPUT
        caches = [a["cache"] for a in wait_for_executors(proc, endpoint, 2)]
        if cache == "0":
            assert caches == [None, None]
        else:
            assert all(c is not None and c["capacity"] == 64 << 20 for c in caches), caches
            assert sum(c["hits"] + c["misses"] for c in caches) > 0, caches
            assert sum(c["misses"] - c["unwatched"] for c in caches) > 0, caches  # reads the servers track
    finally:
        proc.send_signal(signal.SIGTERM)
        logs, _ = proc.communicate(timeout=DEADLINE)
    assert "Traceback" not in logs
