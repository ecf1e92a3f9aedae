"""A cluster across hosts: scheduler, executors and anna nodes on separate network namespaces (root only).

The hosts are Linux network namespaces on one bridge, each with its own
address (tests/e2e/netns.py); every process is started with the commands of
README's "A cluster across hosts", plain and with TLS and tokens. The test
function and the word count give the same output as on one machine; then
every process of one host (an executor and a KVS node) is killed with
SIGKILL while calls that write state are in flight, and every call is
answered and every acknowledged write is still there.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import essa
from essa.testing import TEST_FUNCTION_OUTPUT

from .netns import Network, unavailable_reason
from .test_service import STATEFUL

pytest.importorskip("zenoh")
pytest.importorskip("essa_anna")

ROOT = Path(__file__).resolve().parents[2]
ESSA = [sys.executable, "-m", "essa"]
DEADLINE = 90.0
#: What examples/word-count.wasm prints (as in test_word_count).
WORD_COUNT_OUTPUT = "words: 23\nvocabulary: 16 words\n"
#: Host h1: the scheduler and anna's routing node; h2, h3, h4: an executor and a KVS node each.
WORKERS = ("h2", "h3", "h4")
CALLS = 300


@pytest.fixture(scope="module")
def can_make_hosts():
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


class Cluster:
    """The processes of README's "A cluster across hosts", on :class:`Network` hosts."""

    def __init__(self, net: Network, tmp_path: Path, secure: bool) -> None:
        self.net, self.secure = net, secure
        address = net.address
        scheme = "tls" if secure else "tcp"
        self.scheduler = f"{scheme}/{address['h1']}:7447"
        self.routing = f"{scheme}/{address['h1']}:7450"
        self.home = tmp_path
        self.security = tmp_path / "security"
        self.client_tls: essa.TlsFiles | None = None
        self.token: str | None = None
        if secure:
            self._certificates()

    def essa(self, *args: str, timeout: float = DEADLINE + 30) -> subprocess.CompletedProcess:
        """``essa ARGS`` here, in the root namespace (a client host)."""
        result = subprocess.run([*ESSA, *args], capture_output=True, text=True, timeout=timeout,
                                env=self.env("client", token=True))
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def env(self, host: str, token: bool = False) -> dict[str, str]:
        env = {**os.environ, "ESSA_HOME": str(self.home / f"home-{host}")}
        if token and self.token:
            env["ESSA_TOKEN"] = self.token
        return env

    def _certificates(self) -> None:
        d = ["--dir", str(self.security)]
        run = lambda *args: subprocess.run([*ESSA, *args, *d], capture_output=True, text=True, check=True)  # noqa: E731
        run("certs", "init")
        a = self.net.address
        run("certs", "issue", "scheduler", "sched", "--host", a["h1"])
        run("certs", "issue", "routing", "route", "--host", a["h1"])
        for host in WORKERS:
            run("certs", "issue", "kvs", f"kvs-{host}", "--host", a[host])
            run("certs", "issue", "executor", f"exec-{host}", "--host", a[host])
        run("certs", "issue", "client", "alice")
        self.token = run("token", "create", "--deployment", "*", "--namespace", "*").stdout.strip()
        certs = self.security / "certs"
        self.client_tls = essa.TlsFiles(str(self.security / "ca.pem"), str(certs / "alice.pem"),
                                        str(certs / "alice.key"))

    def tls(self, name: str, verify_tokens: bool = False) -> list[str]:
        """The TLS (and token key) flags of process ``name``: nothing on a plain cluster."""
        if not self.secure:
            return []
        certs = self.security / "certs"
        flags = ["--tls-ca", str(self.security / "ca.pem"), "--tls-cert", str(certs / f"{name}.pem"),
                 "--tls-key", str(certs / f"{name}.key")]
        return flags + (["--token-key", str(self.security / "token-verify.pem")] if verify_tokens else [])

    def start(self) -> None:
        a, net, scheme = self.net.address, self.net, "tls" if self.secure else "tcp"
        net.spawn("h1", "scheduler", [*ESSA, "scheduler", "--listen", self.scheduler,
                                      *self.tls("sched", verify_tokens=True)], self.env("h1"))
        net.spawn("h1", "routing", [*ESSA, "anna", "routing", "--listen", self.routing, *self.tls("route")],
                  self.env("h1"))
        for host in WORKERS:
            net.spawn(host, "kvs", [*ESSA, "anna", "kvs", host, "--connect", self.routing,
                                    "--listen", f"{scheme}/{a[host]}:7451", *self.tls(f"kvs-{host}")],
                      self.env(host))
            net.spawn(host, "executor", [*ESSA, "--store", "anna", "--store-option", f"routing={self.routing}",
                                         "executor", host, "--connect", self.scheduler,
                                         "--listen", f"{scheme}/{a[host]}:7448",
                                         *self.tls(f"exec-{host}", verify_tokens=True)], self.env(host))
        self.wait_for_executors(len(WORKERS))

    def connect(self) -> essa.Connection:
        return essa.connect(self.scheduler, tls=self.client_tls, token=self.token, timeout=DEADLINE, wait=True)

    def wait_for_executors(self, count: int) -> None:
        with self.connect() as es:
            deadline = time.monotonic() + DEADLINE
            while True:
                schedulers = [a for a in es.status(timeout=2.0) if a.get("role") == "scheduler"]
                if schedulers and len(schedulers[0].get("executors") or ()) == count:
                    return
                assert time.monotonic() < deadline, f"{count} executors did not join:\n{self.net.log_text()}"
                time.sleep(0.2)

    def run(self, module: str) -> str:
        tls = [] if self.client_tls is None else ["--tls-ca", self.client_tls.ca, "--tls-cert",
                                                  self.client_tls.cert, "--tls-key", self.client_tls.key]
        result = self.essa("run", "--connect", self.scheduler, *tls, "--timeout", str(DEADLINE),
                           str(ROOT / "examples" / module))
        assert result.returncode == 0, result.stderr + self.net.log_text()
        return result.stdout


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secure"])
def test_a_cluster_across_hosts_loses_no_call_and_no_write_when_a_host_dies(can_make_hosts, tmp_path, secure):
    logs = tmp_path / "logs"
    logs.mkdir()
    net = Network(["h1", *WORKERS], logs)
    try:
        cluster = Cluster(net, tmp_path, secure)
        cluster.start()
        assert cluster.run("test-function.wasm") == TEST_FUNCTION_OUTPUT
        assert cluster.run("word-count.wasm") == WORD_COUNT_OUTPUT

        with cluster.connect() as es:
            es.deploy(STATEFUL, "memo")
            state = es.state("memo")
            state.merge("written", essa.SetLattice({b"before the kill"}))  # acknowledged when it returns
            answered: dict[bytes, bytes] = {}
            calls = {es.call_async("memo", "remember", b"call %d" % i): b"call %d" % i for i in range(CALLS)}
            done = 0
            for future in concurrent.futures.as_completed(calls, timeout=DEADLINE * 2):
                answered[calls[future]] = future.result()  # raises if a call failed
                done += 1
                if done == CALLS // 3:  # the rest in flight or queued: pull h2's plug
                    scheduler = next(a for a in es.status(timeout=2.0) if a.get("role") == "scheduler")
                    on_h2 = scheduler["executors"]["h2"]
                    net.kill_host("h2")
                    assert on_h2["in_flight"] + on_h2["unconfirmed"] > 0, on_h2  # it had calls to lose
            assert answered == {argument: argument for argument in calls.values()}
            assert net.pids("h2") == []

            # The cluster serves on from the hosts left, to the same results, and lost no write.
            cluster.wait_for_executors(len(WORKERS) - 1)
            assert state.get("seen") == essa.SetLattice(set(calls.values()))
            assert state.get("written") == essa.SetLattice({b"before the kill"})
        assert cluster.run("test-function.wasm") == TEST_FUNCTION_OUTPUT
        assert cluster.run("word-count.wasm") == WORD_COUNT_OUTPUT
        assert "Traceback" not in net.log_text()
    finally:
        net.close()
