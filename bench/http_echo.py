"""The HTTP trigger's speed beside the direct Python client, in one run; prints JSON.

An 8-byte echo function, deployed as ``echo``, called two ways:

- ``http``: ``POST /v1/functions/echo/echo`` to a real ``essa serve`` process
  from ``--concurrency`` keep-alive connections (a small asyncio HTTP/1.1
  client in this process, one request in flight per connection);
- ``direct``: ``Connection.call("echo", "echo", ...)`` from ``--concurrency``
  threads of this process (the public Python API).

Bodies (``--body``): ``json`` (the default) deploys the echo with its
signature, ``echo(x: u64) -> u64``: HTTP sends ``[4050765991979987505]`` as
``application/json`` and reads the number back, the direct client calls
``call("echo", "echo", 4050765991979987505)`` (encoded and decoded by the
signature); ``raw`` deploys it without one: HTTP sends the 8 bytes as
``application/octet-stream``, the direct client passes bytes.

Each is measured two ways: ``load`` (all connections or threads busy for
``--seconds``: requests/s, and the latency each request saw, which under a
closed loop of N clients is about N / throughput) and ``sequential`` (one
client, ``--calls`` requests one after another: the round trip of an
unloaded system). ``cpu_us_per_request`` is the CPU time each process spent
per request over both (``client``: this process; on a cluster ``serve``,
``scheduler``, ``executors``): what a request costs, whatever else keeps the
machine's cores busy.

Modes: ``embedded`` (``essa serve`` runs the calls in its own process; the
direct client is an embedded runtime in this process) and ``cluster``
(``essa up --executors 2 --http ...``: a scheduler, two executor processes
and the ``essa serve`` process; the direct client connects over zenoh).
Each mode is measured ``--runs`` times, http and direct alternating; the
figures are the medians, with every run kept under ``runs``. The machine's
load average (``uptime``) before and after is part of the report: other work
on the machine moves these numbers.

Targets (issue 21): on the cluster with JSON bodies, >= 3,500 requests/s and
>= 65 % of the direct client's (``http_vs_direct``), sequential p50 <= 1.0 ms.

Usage: python bench/http_echo.py [--mode embedded|cluster|both] [--body json|raw] [--concurrency 32] [--seconds 5]
       [--runs 3]
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

from embedded import ECHO_U64, ECHO_WAT, TYPED_ECHO_WAT, percentiles

from essa.testing.ports import free_port

ARGS = b"12345678"
PATH = "/v1/functions/echo/echo"
DEADLINE = 120.0


class Body:
    """What a request sends and its answer must be, and what the direct client passes and gets."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "json":
            self.content_type, self.data = "application/json", json.dumps([ECHO_U64]).encode()
            self.answer, self.value = json.dumps(ECHO_U64).encode(), ECHO_U64
        else:
            self.content_type, self.data, self.answer, self.value = "application/octet-stream", ARGS, ARGS, ARGS
        self.wat = TYPED_ECHO_WAT if kind == "json" else ECHO_WAT


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# -- the HTTP client ------------------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection sending the same POST again and again."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, body: Body) -> None:
        self.reader, self.writer = reader, writer
        self.request = (f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {body.content_type}\r\n"
                        f"content-length: {len(body.data)}\r\n\r\n").encode() + body.data
        self.answer = body.answer

    @classmethod
    async def open(cls, host: str, port: int, body: Body) -> "HttpConnection":
        reader, writer = await asyncio.open_connection(host, port)
        writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, f"{host}:{port}", body)

    async def post(self) -> None:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
        body = await self.reader.readexactly(length)
        if head[9:12] != b"200" or body != self.answer:
            raise SystemExit(f"unexpected answer: {head[:12]!r} {body[:80]!r}")

    def close(self) -> None:
        self.writer.close()


async def _http_load(host: str, port: int, body: Body, concurrency: int,
                     seconds: float) -> tuple[int, list[float], float]:
    connections = [await HttpConnection.open(host, port, body) for _ in range(concurrency)]

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


async def _http_sequential(host: str, port: int, body: Body, calls: int) -> list[float]:
    connection = await HttpConnection.open(host, port, body)
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
    body = Body(args.body)
    count, latencies, elapsed = _run(_http_load(host, int(port), body, args.concurrency, args.seconds))
    sequential = _run(_http_sequential(host, int(port), body, args.calls))
    return {"requests_per_s": round(count / elapsed), "load": percentiles(latencies),
            "sequential": percentiles(sequential)}


# -- the direct client ----------------------------------------------------------------


def direct_figures(connection, args) -> dict:
    value = Body(args.body).value
    for _ in range(200):
        assert connection.call("echo", "echo", value) == value
    latencies: list[float] = []
    stop_at = time.perf_counter() + args.seconds
    lock = threading.Lock()

    def caller() -> None:
        mine = []
        clock = time.perf_counter
        while clock() < stop_at:
            started = clock()
            assert connection.call("echo", "echo", value) == value
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
        connection.call("echo", "echo", value)
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


class CpuMeter:
    """CPU time of this process and of the processes in a session (``essa up``'s), by role."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, session: int | None = None) -> None:
        self.session = session

    def sample(self) -> dict[str, float]:
        times = {"client": time.process_time()}
        if self.session is None:
            return times
        for pid in subprocess.run(["pgrep", "-s", str(self.session)], capture_output=True, text=True).stdout.split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            role = next((r for r in ("serve", "scheduler", "executor") if r.encode() in command), None)
            if role is not None:
                key = "executors" if role == "executor" else role
                times[key] = times.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / self.TICK
        return times

    @staticmethod
    def per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, int]:
        return {k: round((after[k] - before.get(k, 0.0)) * 1e6 / max(requests, 1)) for k in after}


def _requests(figures: dict, args, warm: int) -> int:
    """About how many requests a ``*_figures`` call made (warm-up, load, sequential)."""
    return warm + round(figures["requests_per_s"] * args.seconds) + args.calls


def measure(url: str, connection, args, meter: CpuMeter | None = None) -> dict:
    meter = meter or CpuMeter()
    runs = []
    for _ in range(args.runs):
        before = meter.sample()
        http = http_figures(url, args)
        middle = meter.sample()
        direct = direct_figures(connection, args)
        after = meter.sample()
        http["cpu_us_per_request"] = meter.per_request(before, middle, _requests(http, args, 20 * args.concurrency + 200))
        direct["cpu_us_per_request"] = meter.per_request(middle, after, _requests(direct, args, 200))
        run = {"http": http, "direct": direct}
        run["http_vs_direct"] = round(run["http"]["requests_per_s"] / run["direct"]["requests_per_s"], 2)
        runs.append(run)
    medians = {way: _median(runs, way) for way in ("http", "direct")}
    return {**medians, "http_vs_direct": round(statistics.median(r["http_vs_direct"] for r in runs), 2),
            "runs": runs}


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
            return measure(url, connection, args, CpuMeter(proc.pid))
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
            return measure(url, connection, args, CpuMeter(proc.pid))
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("embedded", "cluster", "both"), default="both")
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--body", choices=("json", "raw"), default="json",
                        help="json: the echo has a signature and takes JSON; raw: bytes in, bytes out")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--calls", type=int, default=2000, help="sequential requests per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import wasmtime

    report: dict = {"engine": args.engine, "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "body": args.body, "concurrency": args.concurrency, "seconds": args.seconds, "runs": args.runs,
                    "uptime_before": uptime()}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["ESSA_HOME"] = str(home / "essa")
        wasm = home / "echo.wasm"
        wasm.write_bytes(wasmtime.wat2wasm(Body(args.body).wat))
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
