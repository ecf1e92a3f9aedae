"""The HTTP trigger under slow clients (slowloris): do well-behaved clients still get answers? Prints JSON.

A real ``essa serve`` process serves an 8-byte echo deployed as ``echo``
(``--mode serve``: embedded; ``--mode secure-cluster``: the issue's setup,
``essa up --secure --executors 2 --http ...``, every good request carrying a
bearer token). This process opens ``--slow`` connections to it that each send a byte every
``--interval`` seconds and never finish:

- ``head``: a request head, trickled (``POST ... HTTP/1.1``, then one more
  byte of a header every interval, never the blank line that ends the head);
- ``body``: a complete head announcing a large body (``Content-Length:
  10000000``, under the message size limit), then the body trickled.

``--kind both`` (the default) makes half of each. A slow connection the server
answers or closes is opened again an interval later, so there are always
about ``--slow`` of them, as an attacker would keep them
(:class:`essa.testing.slow_clients.SlowClients`). Meanwhile ``--clients``
well-behaved clients (threads, ``http.client``) POST the echo for
``--seconds``, each request on a new connection, each allowed
``--request-timeout`` seconds.

The figures: how many good requests were answered 200 with the right body
(``ok_pct``), the latency of those (p50/p99), what the others got (statuses,
errors), how often the server closed a slow connection, and the server's
resources (RSS, descriptors, threads) before the slow clients and at the end.

Target (issue 19): with 2,000 slow connections, >= 95 % of good requests OK,
p99 <= 1 s.

Usage: python bench/http_slow.py [--mode serve|secure-cluster] [--slow 2000] [--kind head|body|both]
           [--seconds 60] [--clients 4] [--trigger-option KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from embedded import ECHO_WAT, percentiles
from http_echo import DEADLINE, PATH, free_port, stop, uptime, wait_for_url

from essa.testing.slow_clients import SlowClients
from essa.util.descriptors import raise_open_files_limit

ARGS = b"12345678"
HEAD_START = b"POST /v1/functions/echo/echo HTTP/1.1\r\nHost: slow\r\nX-Slow: "
BODY_HEAD = b"POST /v1/functions/echo/echo HTTP/1.1\r\nHost: slow\r\nContent-Length: 10000000\r\n\r\n"
#: What each kind of slow connection sends before it trickles.
PREFIXES = {"head": HEAD_START, "body": BODY_HEAD}


def good_client(host: str, port: int, until: float, timeout: float, results: list, headers: dict) -> None:
    """POST the echo on a new connection each time until ``until``; append (status or error, seconds)."""
    while time.monotonic() < until:
        started = time.perf_counter()
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request("POST", PATH, body=ARGS, headers=headers)
            response = connection.getresponse()
            body = response.read()
            outcome = "ok" if response.status == 200 and body == ARGS else str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
        finally:
            connection.close()
        results.append((outcome, time.perf_counter() - started))


def good_figures(results: list) -> dict:
    outcomes = collections.Counter(outcome for outcome, _ in results)
    ok = [seconds for outcome, seconds in results if outcome == "ok"]
    figures = {"requests": len(results), "ok": len(ok),
               "ok_pct": round(100 * len(ok) / len(results), 2) if results else 0.0,
               "others": {k: v for k, v in outcomes.items() if k != "ok"}}
    if ok:
        figures.update(percentiles(ok))
    return figures


def resources(pid: int) -> dict:
    from essa.testing.resources import sample

    found = sample(pid)
    return {"rss_mib": round(found.rss / 2**20, 1), "fds": found.fds, "threads": found.threads}


def start_serve(args, essa: list[str], home: Path, wasm: Path) -> tuple[subprocess.Popen, int, str, dict]:
    """``essa serve`` on this machine's store: (its process, the serving process's pid, URL, request headers)."""
    subprocess.run([*essa, "deploy", str(wasm), "--name", "echo"], check=True, capture_output=True)
    log = home / "server.log"
    options = [x for option in args.trigger_option for x in ("--trigger-option", option)]
    with open(log, "w") as err:
        proc = subprocess.Popen([*essa, "serve", "--listen", "127.0.0.1:0", *options], stderr=err,
                                start_new_session=True)
    return proc, proc.pid, wait_for_url(proc, log), {}


def start_secure_cluster(args, essa: list[str], home: Path, wasm: Path) -> tuple[subprocess.Popen, int, str, dict]:
    """``essa up --secure --executors 2 --http ...``: as :func:`start_serve`; the headers carry a token."""
    import essa as essa_api
    from essa.security import tokens
    from essa.security.local import Material, default_directory

    endpoint = f"tls/127.0.0.1:{free_port()}"
    log = home / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*essa, "up", "--secure", "--executors", "2", "--listen", endpoint, "--http",
                                 f"127.0.0.1:{free_port()}"], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = wait_for_url(proc, log)
    material = Material(default_directory())
    token = tokens.create(material.signing_key, deployments=["*"], namespaces=["*"], ttl=3600)
    deadline = time.monotonic() + DEADLINE
    with essa_api.connect(endpoint, tls=material.files("client"), token=token, timeout=DEADLINE,
                          wait=True) as connection:
        while True:  # the executors may still be joining
            try:
                connection.deploy(wasm, name="echo")
                break
            except essa_api.EssaError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"could not deploy: {log.read_text()[-2000:]}")
                time.sleep(0.5)
    serving = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", " serve "], capture_output=True, text=True)
    return proc, int(serving.stdout.split()[0]), url, {"Authorization": f"Bearer {token}"}


def run(args, essa: list[str], home: Path, wasm: Path) -> dict:
    start = start_secure_cluster if args.mode == "secure-cluster" else start_serve
    proc, pid, url, headers = start(args, essa, home, wasm)
    try:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        warm: list = []
        while not any(outcome == "ok" for outcome, _ in warm):  # a cluster's executors may still be joining
            if len(warm) > 10_000:
                raise SystemExit(f"no good request succeeded: {good_figures(warm)}")
            good_client(host, int(port), time.monotonic() + 1, args.request_timeout, warm, headers)
        warm = []
        good_client(host, int(port), time.monotonic() + 1, args.request_timeout, warm, headers)
        report = {"baseline": good_figures(warm), "server_before": resources(pid)}
        kinds = list(PREFIXES) if args.kind == "both" else [args.kind]
        slow = {kind: SlowClients(host, int(port), PREFIXES[kind], args.slow // len(kinds), args.interval,
                                  reopen=True).start() for kind in kinds}
        report["slow_open_at_start"] = sum(s.open for s in slow.values())
        results: list = []
        until = time.monotonic() + args.seconds
        clients = [threading.Thread(target=good_client,
                                    args=(host, int(port), until, args.request_timeout, results, headers))
                   for _ in range(args.clients)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        report["server_during"] = resources(pid)
        report["slow_open_at_end"] = sum(s.open for s in slow.values())
        for kind_of_slow in slow.values():
            kind_of_slow.stop()
        report["good"] = good_figures(results)
        report["slow_connections"] = {kind: {"opened": s.opened, "answered_or_closed": dict(s.closed),
                                             "refused": dict(s.refused)} for kind, s in slow.items()}
        report["server_log_lines"] = [line for line in (home / "server.log").read_text().splitlines()
                                      if line.startswith("essa")][-12:]
        return report
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("serve", "secure-cluster"), default="serve")
    parser.add_argument("--slow", type=int, default=2000, help="slow connections held open")
    parser.add_argument("--kind", choices=("head", "body", "both"), default="both")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a slow connection's bytes")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the good clients run")
    parser.add_argument("--clients", type=int, default=4, help="well-behaved clients")
    parser.add_argument("--request-timeout", type=float, default=10.0)
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--trigger-option", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to essa serve (repeatable; --mode serve only)")
    args = parser.parse_args()
    if args.trigger_option and args.mode != "serve":
        parser.error("--trigger-option: essa up --http takes none (use --mode serve)")

    import wasmtime

    report: dict = {"engine": args.engine, "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "mode": args.mode, "slow": args.slow, "kind": args.kind, "interval": args.interval,
                    "seconds": args.seconds, "clients": args.clients, "trigger_options": args.trigger_option,
                    "client_fd_limit": raise_open_files_limit(args.slow + 256), "uptime_before": uptime()}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["ESSA_HOME"] = str(home / "essa")
        wasm = home / "echo.wasm"
        wasm.write_bytes(wasmtime.wat2wasm(ECHO_WAT))
        essa = [sys.executable, "-m", "essa", "--engine", args.engine]
        report.update(run(args, essa, home, wasm))
    report["uptime_after"] = uptime()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
