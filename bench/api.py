"""The public API's cost: `essa.connect().call(...)` beside the internal client path; prints JSON.

For an 8-byte echo function, in one run and alternating the paths:

- ``api``: ``Connection.call("echo", "echo", args)`` on a deployment (name
  resolution, function check, bytes or an exception);
- ``typed``: ``Connection.call("typed", "echo", 4050765991979987505)`` on the
  same echo deployed with its signature, ``echo(x: u64) -> u64``: the
  argument encoded and the result decoded by the signature;
- ``internal``: ``Client.call(module_sha256, "__essa_wrapper__echo", args)``,
  the path ``bench/embedded.py`` and ``bench/cluster.py`` measure.

Modes: ``embedded`` (this process) and ``cluster`` (a scheduler and two
executor processes on loopback). The targets: the API costs at most 10 %
more (p50) than the internal path (``api_overhead_p50_pct``), a typed call at
most 5 % more than a raw-bytes one (``typed_overhead_p50_pct``).

Usage: python bench/api.py [--mode embedded|cluster|both] [--engine wasmtime] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

from embedded import ECHO_U64, ECHO_WAT, TYPED_ECHO_WAT, percentiles

from essa.testing.ports import free_port


def measure(connection, calls: int) -> dict:
    import wasmtime

    wasm = bytes(wasmtime.wat2wasm(ECHO_WAT))
    deployment = connection.deploy(wasm, name="echo")
    connection.deploy(bytes(wasmtime.wat2wasm(TYPED_ECHO_WAT)), name="typed")
    client = connection._client  # the internal path, for comparison only
    paths = {
        "api": (lambda: connection.call("echo", "echo", b"12345678"), b"12345678"),
        "typed": (lambda: connection.call("typed", "echo", ECHO_U64), ECHO_U64),
        "internal": (lambda: client.call(deployment.module, "__essa_wrapper__echo", b"12345678", "echo").value,
                     b"12345678"),
    }
    for call, expected in paths.values():  # warm: both executors have the module, caches are filled
        for _ in range(200):
            assert call() == expected
    samples: dict[str, list[float]] = {name: [] for name in paths}
    order = list(paths)
    for _ in range(calls):
        random.shuffle(order)  # alternate, so all see the same machine load, in no fixed order: a call
        for name in order:     # right after another may find its executor still busy with that one
            call, expected = paths[name]
            started = time.perf_counter()
            assert call() == expected
            samples[name].append(time.perf_counter() - started)
    result = {name: percentiles(values) for name, values in samples.items()}
    result["api_overhead_p50_pct"] = round(100 * (result["api"]["p50_ms"] / result["internal"]["p50_ms"] - 1), 1)
    result["typed_overhead_p50_pct"] = round(100 * (result["typed"]["p50_ms"] / result["api"]["p50_ms"] - 1), 1)
    return result


def embedded(args) -> dict:
    import essa

    with essa.connect(engine=args.engine, store="memory") as connection:
        return measure(connection, args.calls)


def cluster(args) -> dict:
    import essa

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "essa", "--engine", args.engine]
    procs = [subprocess.Popen([*cmd, "scheduler", "--listen", endpoint], stderr=subprocess.DEVNULL)]
    for i in range(2):
        procs.append(subprocess.Popen([*cmd, "executor", str(i), "--connect", endpoint, "--workers", "2"],
                                      stderr=subprocess.DEVNULL))
    try:
        with essa.connect(endpoint, timeout=60, wait=True) as connection:
            deadline = time.monotonic() + 60
            while len(connection._client.transport.query("essa/status/executor/**", {})) < 2:
                if time.monotonic() > deadline:
                    raise SystemExit("two executors did not join within 60 s")
                time.sleep(0.2)
            return measure(connection, args.calls)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("embedded", "cluster", "both"), default="both")
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    report: dict = {"engine": args.engine, "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "calls": args.calls}
    with tempfile.TemporaryDirectory() as home:
        os.environ["ESSA_HOME"] = home
        if args.mode in ("embedded", "both"):
            report["embedded"] = embedded(args)
        if args.mode in ("cluster", "both"):
            report["cluster"] = cluster(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
