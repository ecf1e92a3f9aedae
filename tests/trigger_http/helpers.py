"""Helpers of the HTTP trigger's tests: `essa serve` as a child process, a plain HTTP client, a test module."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from essa.testing.conformance.wat import module

#: Generous: other work may keep every core of the machine busy.
DEADLINE = 90.0
ESSA = [sys.executable, "-m", "essa"]

POLL_ONEOFF = '(import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))'

#: The conformance helpers (echo, trap, no_result, exits) plus:
#: spin: loops forever (for the time limit);
#: gate: merges Set{"yes"} into key "started", then waits (10 ms WASI sleeps)
#: until key "release" exists, then answers "released" (a request that is
#: in flight for as long as the test wants).
MODULE = module(
    """
  (func $sleep_10ms
    (i64.store (i32.const 0x6000) (i64.const 0))           ;; userdata
    (i32.store8 (i32.const 0x6008) (i32.const 0))          ;; tag: clock
    (i32.store (i32.const 0x6010) (i32.const 1))           ;; monotonic
    (i64.store (i32.const 0x6018) (i64.const 10000000))    ;; 10 ms, relative
    (i64.store (i32.const 0x6020) (i64.const 0))
    (i32.store16 (i32.const 0x6028) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 0x6000) (i32.const 0x6100) (i32.const 1) (i32.const 0x6200))))
  (func (export "__essa_wrapper__spin") (param i32) (loop $l (br $l)))
  (func (export "__essa_wrapper__gate") (param i32)
    (i32.store (i32.const 0x3000) (i32.const 1))           ;; LatticeValue::Set
    (i64.store (i32.const 0x3004) (i64.const 1))           ;; one element
    (i64.store (i32.const 0x300c) (i64.const 3))           ;; of 3 bytes ("yes", at 0x3014)
    (if (call $essa_put_lattice (i32.const 0x700) (i32.const 7) (i32.const 0x3000) (i32.const 23))
      (then unreachable))
    (block $released
      (loop $wait
        (br_if $released (i32.eqz (call $essa_get_lattice_len (i32.const 0x710) (i32.const 7) (i32.const 0x6300))))
        (call $sleep_10ms)
        (br $wait)))
    (drop (call $essa_set_result (i32.const 0x720) (i32.const 8))))
""",
    data={0x700: b"started", 0x710: b"release", 0x720: b"released", 0x3014: b"yes"},
    imports=POLL_ONEOFF,
)
FUNCTIONS = ["echo", "exits", "gate", "no_result", "spin", "trap"]


def essa(*args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess:
    """Run ``essa ARGS`` (with this test's ESSA_HOME)."""
    return subprocess.run([*ESSA, *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        assert self.headers["content-type"] == "application/json", self.headers
        return json.loads(self.body)


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = DEADLINE) -> Answer:
    """One HTTP/1.1 request on a new connection (http.client adds no Content-Type of its own)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def raw_exchange(url: str, data: bytes, timeout: float = DEADLINE) -> bytes:
    """Send ``data`` as is, then read until the server closes the connection.

    A server that closes a connection while unread data of it is still
    arriving makes the kernel reset it; what was read until then is returned.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    chunks = []
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass
    return b"".join(chunks)


def wait_until(condition, what: str, deadline: float = DEADLINE):
    """Poll ``condition()`` until it returns something true (its value), failing after ``deadline`` s."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


class Server:
    """A child process that prints ``... trigger at URL, ...`` once it listens (`essa serve`, `essa up --http`)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", prefix="essa-serve-", suffix=".log")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.url = wait_until(self._url, "the server to listen")

    def _url(self) -> str | None:
        found = re.search(r"http trigger at (http://\S+),", self.log_text())
        assert found or self.proc.poll() is None, f"the server exited: {self.log_text()}"
        return found.group(1) if found else None

    def log_text(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self, sig: int | None = signal.SIGTERM) -> int:
        """Signal the server (``None``: it was signalled already) and return its exit status.

        It must exit within the deadline.
        """
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"the server did not stop: {self.log_text()}")


class Servers:
    """Every server a test started, stopped at its end."""

    def __init__(self) -> None:
        self.started: list[Server] = []

    def start(self, *args: str, verbose: bool = False, command: list[str] = ESSA) -> Server:
        """`essa [-v] serve --listen 127.0.0.1:0 ARGS` (``command``: what runs ``essa``)."""
        return self.spawn([*command, *(["-v"] if verbose else []), "serve", "--listen", "127.0.0.1:0", *args])

    def up(self, *args: str) -> Server:
        """`essa up ARGS` (give it --http)."""
        return self.spawn([*ESSA, "up", *args])

    def spawn(self, command: list[str]) -> Server:
        server = Server(command)
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
        for server in self.started:
            try:
                server.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(server.proc.pid, signal.SIGKILL)
                server.proc.wait()
            leftover = subprocess.run(["pgrep", "-s", str(server.proc.pid)], capture_output=True, text=True)
            if leftover.stdout.split():
                os.killpg(server.proc.pid, signal.SIGKILL)
            server.log.close()
