"""Helpers of the Anna tests: clusters of real processes on free loopback ports.

Every wait is on a readiness signal (a process's start-up line in its log, the
membership a client sees) with a deadline of tens of seconds, and clients get
long timeouts: the suite must pass on a machine whose cores are busy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack

from essa.testing.ports import free_port
from essa_anna import AnnaClient

ROOT = Path(__file__).resolve().parents[2]
TEST_FUNCTION = ROOT / "examples" / "test-function.wasm"
ESSA = [sys.executable, "-m", "essa"]
#: Deadline of every wait for a process (start-up, membership, status).
READY_TIMEOUT = 60.0
#: Request timeout of the tests' clients (tests of timeouts set their own).
CLIENT_TIMEOUT = 30.0


class AnnaCluster:
    """A routing node and KVS nodes as child processes."""

    def __init__(self, tmp_path: Path, replication: int = 2) -> None:
        self.endpoint = f"tcp/127.0.0.1:{free_port()}"
        self.logs = tmp_path
        self.logs.mkdir(parents=True, exist_ok=True)
        self.replication = replication
        #: environment variables of the processes started (besides this one's)
        self.env: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.clients: list[AnnaClient] = []
        self.watcher: AnnaClient | None = None

    def spawn(self, name: str, *args: str, **popen) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "a")
        if self.env:
            popen.setdefault("env", {**os.environ, **self.env})
        proc = subprocess.Popen([*ESSA, "-v", *args], stdout=log, stderr=subprocess.STDOUT, **popen)
        self.procs[name] = proc
        return proc

    def wait_ready(self, name: str, line: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until process ``name`` wrote ``line`` (its start-up line) to its log."""
        log = self.logs / f"{name}.log"
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while line not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with status {proc.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start within {timeout:g} s:\n{self.log_text()}")
            time.sleep(0.05)

    def routing(self, wait: bool = True) -> None:
        self.spawn("routing", "anna", "routing", "--id", "r0", "--listen", self.endpoint)
        if wait:
            self.wait_ready("routing", "essa anna routing r0:")

    def kvs(self, node_id: str, *extra: str, wait: bool = True) -> None:
        # Replicas on a busy machine may take seconds to acknowledge: only tests of
        # the timeout itself should see it.
        self.spawn(f"kvs-{node_id}", "anna", "kvs", node_id, "--connect", self.endpoint,
                   "--listen", f"tcp/127.0.0.1:{free_port()}", "--replication-timeout", "20",
                   "--global-replication", str(self.replication), "--gossip-interval", "0.1", *extra)
        if wait:
            self.wait_kvs(node_id)

    def wait_kvs(self, node_id: str) -> None:
        self.wait_ready(f"kvs-{node_id}", f"essa anna kvs {node_id}:")

    def start(self, nodes: int = 3, *extra: str) -> "AnnaCluster":
        self.routing()
        for i in range(nodes):
            self.kvs(f"n{i}", *extra, wait=False)
        for i in range(nodes):
            self.wait_kvs(f"n{i}")
        self.wait_for_nodes(nodes)
        return self

    def client(self, **options) -> AnnaClient:
        options = {"timeout": CLIENT_TIMEOUT, "connect_timeout": READY_TIMEOUT, **options}
        client = AnnaClient([self.endpoint], **options)
        self.clients.append(client)
        return client

    def wait_for_nodes(self, count: int, timeout: float = READY_TIMEOUT) -> None:
        """Wait until a fresh client sees the routing node and ``count`` KVS nodes, all answering status."""
        client = self.watcher = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.membership.routing and len(client.membership.kvs) == count:
                answers = [a for a in client.status(timeout=1.0) if a["role"] in ("kvs", "routing")]
                # every node (and the routing node) sees all the nodes
                if len(answers) == count + 1 and all(
                        len(a["ring"] if a["role"] == "kvs" else a["kvs_nodes"]) == count for a in answers):
                    return
            time.sleep(0.05)
        raise AssertionError(f"{count} KVS nodes did not come up:\n{self.log_text()}")

    def status(self) -> dict[str, dict]:
        """Every live KVS node's status, by node id."""
        client = self.watcher
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            answers = {a["id"]: a for a in client.status(timeout=1.0) if a["role"] == "kvs"}
            if set(answers) >= set(client.membership.kvs) or time.monotonic() > deadline:
                return {k: v for k, v in answers.items() if k in client.membership.kvs}
            time.sleep(0.05)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(30)

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(self.logs.glob("*.log")))

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(predicate, timeout: float = READY_TIMEOUT, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def essa(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``essa ARGS`` in a child process."""
    return subprocess.run([*ESSA, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def expected_test_function_output() -> str:
    """What examples/test-function.wasm prints."""
    from essa.testing import TEST_FUNCTION_OUTPUT

    return TEST_FUNCTION_OUTPUT


class RawPeer:
    """A bare zenoh peer on the cluster: sends whatever bytes it likes and collects what comes back."""

    def __init__(self, endpoint: str, inbox: str = "anna/client/raw") -> None:
        import zenoh

        config = zenoh.Config()
        config.insert_json5("mode", '"peer"')
        config.insert_json5("scouting/multicast/enabled", "false")
        config.insert_json5("connect/endpoints", f'["{endpoint}"]')
        self.session = zenoh.open(config)
        self.inbox = inbox
        self.answers: dict = {}
        self.lock = threading.Lock()
        self.tokens: dict = {}
        self.queryables: list = []
        self._sub = self.session.declare_subscriber(inbox, self._received)

    def _received(self, sample) -> None:
        message = msgpack.unpackb(sample.payload.to_bytes(), raw=False)
        with self.lock:
            for rid, code, payload in message.get("r", ()):
                self.answers[rid] = (code, payload)

    def send(self, topic: str, data) -> None:
        import zenoh

        payload = data if isinstance(data, bytes) else msgpack.packb(data, use_bin_type=True)
        # like essa's transport: block rather than drop when the link is congested (a busy machine)
        self.session.put(topic, payload, congestion_control=zenoh.CongestionControl.BLOCK)

    def token(self, key: str) -> None:
        self.tokens[key] = self.session.liveliness().declare_token(key)

    def withdraw(self, key: str) -> None:
        self.tokens.pop(key).undeclare()

    def answer_pings(self, key: str) -> None:
        """Answer the pings of the KVS node that the token ``key`` announces, listing ``key`` (as
        the real node would: a rogue that speaks the protocol)."""
        node = key.split("/")[3]
        payload = msgpack.packb({"tokens": [key]}, use_bin_type=True)
        self.queryables.append(self.session.declare_queryable(
            f"anna/ping/kvs/{node}", lambda query: query.reply(query.key_expr, payload)))

    def close(self) -> None:
        for token in self.tokens.values():
            token.undeclare()
        for queryable in self.queryables:
            queryable.undeclare()
        self._sub.undeclare()
        self.session.close()


def traceback_free(cluster: AnnaCluster) -> None:
    text = cluster.log_text()
    assert "Traceback" not in text, text


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
