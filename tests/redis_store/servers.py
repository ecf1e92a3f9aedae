"""Real ``redis-server`` processes for the tests: one server, or a Redis Cluster of 3 masters and 3 replicas.

Every server listens on a free loopback port, keeps its files in a
directory of the test's, and is stopped by the test (or its fixture). Every
wait is on a readiness signal (a server answering ``PING``, every node
reporting ``cluster_state:ok`` with all slots covered and its replica's link
up) with a deadline of a minute: the suite must pass on a machine whose cores
are busy. Where ``redis-server`` is missing the tests that need it are
skipped, saying how to install it (``tox -e py311-redis`` installs Debian's).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

#: Deadline of every wait for a server or the cluster.
READY_TIMEOUT = 60.0
INSTALL_HINT = ("redis-server is not installed: install Debian's as root with `apt-get install -y redis-server` "
                "(`tox -e py311-redis` does it when missing)")


def redis_server_binary() -> str:
    """The path of ``redis-server``; skips the test where there is none."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip(INSTALL_HINT)
    return path


def free_port(bus: bool = False) -> int:
    """A free loopback port (with ``bus``: one whose cluster bus port, +10000, is free too)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def wait_until(predicate, timeout: float = READY_TIMEOUT, interval: float = 0.05, what: str = "a condition"):
    """Poll ``predicate`` until it is true (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(interval)


class RedisServer:
    """One ``redis-server`` child process.

    :param directory: where it keeps its files (AOF, RDB, nodes.conf, its log).
    :param config: more ``redis-server`` options, as ``{"appendfsync": "always"}``.
    """

    def __init__(self, directory: Path, port: int | None = None, cluster: bool = False, **config: str) -> None:
        self.binary = redis_server_binary()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port(bus=cluster)
        self.cluster = cluster
        self.config = {"save": "", "appendonly": "no", **config}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def start(self, wait: bool = True) -> "RedisServer":
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--logfile", str(self.log), "--daemonize", "no", "--protected-mode", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"]
        for name, value in self.config.items():
            args += [f"--{name}", value]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise
        return self

    def client(self, **kwargs):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30, **kwargs)

    def answers(self) -> bool:
        try:
            with self.client(socket_connect_timeout=1) as client:
                return bool(client.ping())
        except Exception:
            return False

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"redis-server on port {self.port} exited with status {self.proc.returncode}:\n"
                                     f"{self.log_text()}")
            return self.answers()

        wait_until(ready, what=f"redis-server on port {self.port} answering")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RedisClusterProcesses:
    """A Redis Cluster of real processes on loopback: ``masters`` masters, each with ``replicas`` replicas."""

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 1, **config: str) -> None:
        self.directory = Path(directory)
        count = masters * (1 + replicas)
        self.masters_wanted = masters
        self.replicas = replicas
        self.servers = [RedisServer(self.directory / f"node-{i}", cluster=True, **config) for i in range(count)]

    @property
    def url(self) -> str:
        """Every node as a seed, space-separated (the store's ``url`` option)."""
        return " ".join(server.url for server in self.servers)

    def start(self) -> "RedisClusterProcesses":
        """Start every node and make them a cluster; a start that fails (or skips) stops what it started."""
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.skip("redis-cli is not installed (Debian's redis-tools, a dependency of redis-server)")
        try:
            for server in self.servers:
                server.start(wait=False)
            for server in self.servers:
                server.wait_ready()
            create = subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=READY_TIMEOUT)
            assert create.returncode == 0, create.stdout + create.stderr
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def by_port(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def roles(self) -> dict[int, str]:
        """``port -> "master" | "slave"`` of every live node, as each says."""
        roles = {}
        for server in self.servers:
            if server.proc is None or server.proc.poll() is not None:
                continue
            try:
                with server.client(socket_connect_timeout=1) as client:
                    roles[server.port] = client.info("replication")["role"]
            except Exception:
                continue
        return roles

    def masters(self) -> list[RedisServer]:
        return [self.by_port(port) for port, role in sorted(self.roles().items()) if role == "master"]

    def healthy(self, masters: int | None = None) -> bool:
        """Every live node says the cluster is ok, its masters cover all slots, and every replica's link is up."""
        masters = self.masters_wanted if masters is None else masters
        live = [s for s in self.servers if s.proc is not None and s.proc.poll() is None]
        try:
            for server in live:
                with server.client(socket_connect_timeout=1) as client:
                    info = client.cluster("info")
                    if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384:
                        return False
                    replication = client.info("replication")
                    if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                        return False
        except Exception:
            return False
        return len(self.masters()) == masters

    def wait_healthy(self, masters: int | None = None) -> None:
        wait_until(lambda: self.healthy(masters), what="the Redis Cluster being healthy")

    def master_of_slot(self, slot: int) -> RedisServer:
        """The master serving ``slot``, as the first live node says."""
        live = next(s for s in self.servers if s.proc is not None and s.proc.poll() is None)
        with live.client() as client:
            for start, end, master, *_replicas in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return self.by_port(int(master[1]))
        raise AssertionError(f"no master serves slot {slot}")

    def log_text(self) -> str:
        return "\n".join(f"--- node on port {s.port}\n{s.log_text()[-4000:]}" for s in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


__all__ = ["INSTALL_HINT", "READY_TIMEOUT", "RedisClusterProcesses", "RedisServer", "free_port",
           "redis_server_binary", "wait_until"]
