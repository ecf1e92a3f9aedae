"""Hosts for tests: Linux network namespaces on one bridge, each with an address of its own (root only).

:class:`Network` makes a "switch" namespace holding a bridge, one namespace
per host joined to it by a veth pair, and a veth pair from this (the root)
namespace to the bridge, so the test process reaches every host as a client
would. :meth:`Network.spawn` starts a process in a host (``ip netns exec``);
:meth:`Network.kill_host` SIGKILLs every process in a host, like pulling its
plug. :meth:`Network.close` removes it all, whatever state it is in.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be made here, or ``None`` if they can."""
    if os.geteuid() != 0:
        return "making network namespaces needs root (`ip netns add`); run as root to test a cluster across hosts"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: network namespaces cannot be made"
    probe = f"essa-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed here (a container without CAP_SYS_ADMIN?): {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


class Network:
    """Hosts on one /24, each a network namespace; this process is at ``.254``."""

    def __init__(self, hosts: list[str], logs: Path) -> None:
        self.tag = secrets.token_hex(3)
        self.prefix = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
        self.switch = f"essa-{self.tag}-sw"
        self.namespaces: list[str] = []
        self.address: dict[str, str] = {}
        self.logs = logs
        self.processes: dict[str, list[subprocess.Popen]] = {host: [] for host in hosts}
        self._root_link = f"e{self.tag}c"
        try:
            self._add_namespace(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            self._plug(self._root_link, None, f"{self.prefix}.254")
            for i, host in enumerate(hosts, start=1):
                namespace = f"essa-{self.tag}-{host}"
                self._add_namespace(namespace)
                _ip("-n", namespace, "link", "set", "lo", "up")
                self._plug(f"e{self.tag}h{i}", namespace, f"{self.prefix}.{i}")
                self.address[host] = f"{self.prefix}.{i}"
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)

    def _plug(self, link: str, namespace: str | None, address: str) -> None:
        """A veth pair from ``namespace`` (``None``: this one) to the bridge, ``address`` on its host end."""
        _ip("link", "add", link, "type", "veth", "peer", "name", f"{link}s")
        _ip("link", "set", f"{link}s", "netns", self.switch)
        _ip("-n", self.switch, "link", "set", f"{link}s", "master", "br0")
        _ip("-n", self.switch, "link", "set", f"{link}s", "up")
        where = []
        if namespace is not None:
            _ip("link", "set", link, "netns", namespace)
            where = ["-n", namespace]
        _ip(*where, "addr", "add", f"{address}/24", "dev", link)
        _ip(*where, "link", "set", link, "up")

    def namespace(self, host: str) -> str:
        return f"essa-{self.tag}-{host}"

    def spawn(self, host: str, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``command`` on ``host``; its output goes to ``LOGS/HOST-NAME.log``."""
        log = open(self.logs / f"{host}-{name}.log", "ab")
        process = subprocess.Popen(["ip", "netns", "exec", self.namespace(host), *command], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **(env or {})})
        log.close()
        self.processes[host].append(process)
        return process

    def pids(self, host: str) -> list[int]:
        """Every process running in ``host``'s namespace."""
        result = subprocess.run(["ip", "netns", "pids", self.namespace(host)], capture_output=True, text=True)
        return [int(pid) for pid in result.stdout.split()]

    def kill_host(self, host: str) -> None:
        """SIGKILL every process of ``host`` and reap them: the host is gone."""
        for pid in self.pids(host):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in self.processes[host]:
            process.wait(60)

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.logs.glob("*.log")))

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after 20 s) and remove the namespaces and links."""
        running = [p for processes in self.processes.values() for p in processes if p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for namespace in self.namespaces:
            for pid in subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                                      text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        subprocess.run(["ip", "link", "del", self._root_link], capture_output=True)
        for namespace in reversed(self.namespaces):  # their links go with them
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self.namespaces.clear()
