"""The HTTP trigger's speed beside the direct Python client, in one run; prints JSON.

An 8-byte echo function, deployed as ``echo``, called two ways:

- ``http``: ``POST /v1/functions/echo/echo`` to a real ``essa serve`` process
  from ``--concurrency`` keep-alive connections (a small asyncio HTTP/1.1
  client in this process, one request in flight per connection);
- ``direct``: ``Connection.call("echo", "echo", args)`` from ``--concurrency``
  threads of this process (the public Python API).

Each is measured two ways: ``load`` (all connections or threads busy for
``--seconds``: requests/s, and the latency each request saw, which under a
closed loop of N clients is about N / throughput) and ``sequential`` (one
client, ``--calls`` requests one after another: the round trip of an
unloaded system).

Modes: ``embedded`` (``essa serve`` runs the calls in its own process; the
direct client is an embedded runtime in this process) and ``cluster``
(``essa up --executors 2 --http ...``: a scheduler, two executor processes
and the ``essa serve`` process; the direct client connects over zenoh).
Each mode is measured ``--runs`` times, http and direct alternating; the
figures are the medians, with every run kept under ``runs``. The machine's
load average (``uptime``) before and after is part of the report: other work
on the machine moves these numbers.

Target (the issue): on the cluster, >= 2,000 requests/s and p50 <= 2 ms.

Usage: python bench/http.py [--mode embedded|cluster|both] [--concurrency 32] [--seconds 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The helpers beside this script (embedded.py) come after the standard library, which
# bench/http.py would otherwise shadow (python puts the script's directory first).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]
from embedded import ECHO_WAT, percentiles  # noqa: E402

from essa.testing.ports import free_port

ARGS = b"12345678"
PATH = "/v1/functions/echo/echo"
DEADLINE = 120.0


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# -- the HTTP client ------------------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection sending the same POST again and again."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer = reader, writer
        self.request = (f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/octet-stream\r\n"
                        f"content-length: {len(ARGS)}\r\n\r\n").encode() + ARGS

    @classmethod
    async def open(cls, host: str, port: int) -> "HttpConnection":
        reader, writer = await asyncio.open_connection(host, port)
        writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, f"{host}:{port}")

    async def post(self) -> None:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
        body = await self.reader.readexactly(length)
        if head[9:12] != b"200" or body != ARGS:
            raise SystemExit(f"unexpected answer: {head[:12]!r} {body[:80]!r}")

    def close(self) -> None:
        self.writer.close()


async def _http_load(host: str, port: int, concurrency: int, seconds: float) -> tuple[int, list[float], float]:
    connections = [await HttpConnection.open(host, port) for _ in range(concurrency)]

    async def warm(connection: HttpConnection) -> None:  # every connection, the module on every executor
        for _ in range(20):
            await connection.post()

    await asyncio.gather(*(warm(c) for c in connections))
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def client(connection: HttpConnection) -> None:
        clock = time.perf_counter
        while clock() < stop_at:
            started = clock()
            await connection.post()
            latencies.append(clock() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return len(latencies), latencies, elapsed


async def _http_sequential(host: str, port: int, calls: int) -> list[float]:
    connection = await HttpConnection.open(host, port)
    for _ in range(200):
        await connection.post()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await connection.post()
        latencies.append(time.perf_counter() - started)
    connection.close()
    return latencies


def _run(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro) if hasattr(uvloop, "run") else asyncio.run(coro)


def http_figures(url: str, args) -> dict:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    count, latencies, elapsed = _run(_http_load(host, int(port), args.concurrency, args.seconds))
    sequential = _run(_http_sequential(host, int(port), args.calls))
    return {"requests_per_s": round(count / elapsed), "load": percentiles(latencies),
            "sequential": percentiles(sequential)}


# -- the direct client ----------------------------------------------------------------


def direct_figures(connection, args) -> dict:
    for _ in range(200):
        assert connection.call("echo", "echo", ARGS) == ARGS
    latencies: list[float] = []
    stop_at = time.perf_counter() + args.seconds
    lock = threading.Lock()

    def caller() -> None:
        mine = []
        clock = time.perf_counter
        while clock() < stop_at:
            started = clock()
            assert connection.call("echo", "echo", ARGS) == ARGS
            mine.append(clock() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=caller) for _ in range(args.concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    sequential = []
    for _ in range(args.calls):
        started = time.perf_counter()
        connection.call("echo", "echo", ARGS)
        sequential.append(time.perf_counter() - started)
    return {"requests_per_s": round(len(latencies) / elapsed), "load": percentiles(latencies),
            "sequential": percentiles(sequential)}


# -- processes ------------------------------------------------------------------------


def wait_for_url(proc: subprocess.Popen, log: Path) -> str:
    """The URL ``essa serve`` prints once it listens."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = re.search(r"http trigger at (http://\S+),", log.read_text())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"essa serve exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise SystemExit("essa serve did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def measure(url: str, connection, args) -> dict:
    runs = []
    for _ in range(args.runs):
        runs.append({"http": http_figures(url, args), "direct": direct_figures(connection, args)})
    return {**{way: _median(runs, way) for way in ("http", "direct")}, "runs": runs}


def _median(runs: list[dict], way: str) -> dict:
    first = runs[0][way]
    return {key: (round(statistics.median(r[way][key] for r in runs)) if not isinstance(value, dict) else
                  {k: round(statistics.median(r[way][key][k] for r in runs), 3) for k in value})
            for key, value in first.items()}


def embedded(args, home: Path, essa: list[str], wasm: Path) -> dict:
    import essa as essa_api

    subprocess.run([*essa, "deploy", str(wasm), "--name", "echo"], check=True, capture_output=True)
    log = home / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([*essa, "serve", "--listen", "127.0.0.1:0"], stderr=err, start_new_session=True)
    try:
        url = wait_for_url(proc, log)
        with essa_api.connect(engine=args.engine) as connection:
            return measure(url, connection, args)
    finally:
        stop(proc)


def cluster(args, home: Path, essa: list[str], wasm: Path) -> dict:
    import essa as essa_api

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    http = f"127.0.0.1:{free_port()}"
    log = home / "up.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*essa, "up", "--executors", "2", "--listen", endpoint, "--http", http],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with essa_api.connect(endpoint, timeout=DEADLINE, wait=True) as connection:
            deadline = time.monotonic() + DEADLINE
            while len(connection._client.transport.query("essa/status/executor/**", {})) < 2:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"two executors did not join: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            connection.deploy(wasm, name="echo")
            url = wait_for_url(proc, log)
            return measure(url, connection, args)
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("embedded", "cluster", "both"), default="both")
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--calls", type=int, default=2000, help="sequential requests per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import wasmtime

    report: dict = {"engine": args.engine, "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "concurrency": args.concurrency, "seconds": args.seconds, "runs": args.runs,
                    "uptime_before": uptime()}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["ESSA_HOME"] = str(home / "essa")
        wasm = home / "echo.wasm"
        wasm.write_bytes(wasmtime.wat2wasm(ECHO_WAT))
        essa = [sys.executable, "-m", "essa", "--engine", args.engine]
        if args.mode in ("embedded", "both"):
            report["embedded"] = embedded(args, home, essa, wasm)
        if args.mode in ("cluster", "both"):
            os.environ["ESSA_HOME"] = str(home / "essa-cluster")
            report["cluster"] = cluster(args, home, essa, wasm)
    report["uptime_after"] = uptime()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
