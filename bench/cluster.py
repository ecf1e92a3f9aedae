"""Cluster-mode benchmarks over zenoh on loopback; prints one JSON document.

Starts a scheduler and two executors as separate processes, then from this
process (a client connected over zenoh):

- ``call``: warm remote-call round trip of an 8-byte echo, p50/p99 over
  ``--calls`` sequential calls (client -> scheduler -> executor -> client);
- ``throughput``: echo calls per second with ``--concurrency`` callers
  for ``--seconds``, spread over the two executors.

Usage: python bench/cluster.py [--engine wasmtime] [--calls 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2, help="threads per executor")
    args = parser.parse_args()

    import wasmtime

    from essa.calls import call_request
    from essa.cluster import connect_client

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    essa = [sys.executable, "-m", "essa", "--engine", args.engine]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ESSA_HOME": home}
        procs = [subprocess.Popen([*essa, "scheduler", "--listen", endpoint], env=env, stderr=subprocess.DEVNULL)]
        for i in range(2):
            procs.append(subprocess.Popen(
                [*essa, "executor", str(i), "--connect", endpoint, "--workers", str(args.workers)],
                env=env, stderr=subprocess.DEVNULL,
            ))
        try:
            client = connect_client([endpoint], timeout=10)
            module = client.publish(wasmtime.wat2wasm(ECHO_WAT))
            deadline = time.monotonic() + 20
            while True:  # until both executors have the module warm
                for _ in range(50):
                    client.call(module, "__essa_wrapper__echo", b"12345678")
                status = [a for a in client.transport.query("essa/status/executor/**", {}) if a["calls"]]
                if len(status) == 2 or time.monotonic() > deadline:
                    break
            samples = []
            for _ in range(args.calls):
                started = time.perf_counter()
                outcome = client.call(module, "__essa_wrapper__echo", b"12345678")
                samples.append(time.perf_counter() - started)
                assert outcome.value == b"12345678", outcome
            done = [0] * args.concurrency
            stop = threading.Event()

            request = call_request(module, "__essa_wrapper__echo", b"12345678", "bench", "bench")

            def worker(i: int) -> None:  # one call in flight per worker
                while not stop.is_set():
                    reply = client.caller.start(request).result(30)
                    assert reply["code"] == 0, reply
                    done[i] += 1

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            time.sleep(args.seconds)
            stop.set()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            served = {a["id"]: a["calls"] for a in client.transport.query("essa/status/executor/**", {})}
            client.close()
            client.transport.close()
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
    print(json.dumps({
        "engine": args.engine,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "call": {"calls": args.calls, **percentiles(samples)},
        "throughput": {
            "concurrency": args.concurrency,
            "seconds": round(elapsed, 2),
            "calls_per_s": round(sum(done) / elapsed, 1),
            "served_by_executor": served,
        },
    }, indent=2))


if __name__ == "__main__":
    main()
