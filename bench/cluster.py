"""Cluster-mode benchmarks over zenoh on loopback; prints one JSON document.

Starts a scheduler and two executors as separate processes, then from this
process (a client connected over zenoh):

- ``call``: warm remote-call round trip of an 8-byte echo, p50/p99 over
  ``--calls`` sequential calls (client -> scheduler -> executor -> client);
- ``throughput``: echo calls per second with ``--concurrency`` callers
  for ``--seconds``, spread over the two executors.

With ``--tls`` it measures two clusters in the same run: plain TCP, and a
secure one (mutual TLS between every process, zenoh's access control, and
an access token checked by the scheduler and the executor on every call).
They alternate for ``--rounds`` rounds, each on a fresh cluster, so a load
that other work puts on the machine falls on both alike; the document gives
every round, the medians per configuration, how much slower the secure one
is, and the load average (``uptime``) before and after.

With ``--schedulers 1 2`` it compares clusters with one and with two
schedulers (each after the first connects to the first; the executors and
the client connect to all, and the client spreads its calls over them), in
alternating rounds, plain TCP.

Usage: python bench/cluster.py [--engine wasmtime] [--calls 2000] [--concurrency 32] [--tls --rounds 3]
       [--schedulers 1 2 --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from embedded import ECHO_WAT, percentiles

from essa.testing.ports import free_port


def measure(args: argparse.Namespace, secure: bool, schedulers: int = 1) -> dict:
    """One cluster (plain or secure, with ``schedulers`` schedulers), started, measured and stopped."""
    import wasmtime

    from essa.cluster.calls import call_request
    from essa.cluster.processes import connect_client
    from essa.security import tokens
    from essa.security.local import prepare_local

    endpoints = [f"{'tls' if secure else 'tcp'}/127.0.0.1:{free_port()}" for _ in range(schedulers)]
    endpoint = endpoints[0]
    connect = [e for each in endpoints for e in ("--connect", each)]
    essa = [sys.executable, "-m", "essa", "--engine", args.engine]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ESSA_HOME": home}
        names = ["scheduler", "executor-0", "executor-1"]
        tls = token = None
        process_env = {name: {} for name in names}
        if secure:
            material = prepare_local(Path(home) / "security", {n: n.split("-")[0] for n in names})
            process_env = {n: material.environment(n, verify_tokens=True) for n in names}
            tls = material.files("client")
            token = tokens.create(material.signing_key, namespaces=["*"], ttl=3600)
        procs = [subprocess.Popen([*essa, "scheduler", "--listen", each, *([] if i == 0 else ["--connect", endpoint])],
                                  env={**env, **process_env["scheduler"]}, stderr=subprocess.DEVNULL)
                 for i, each in enumerate(endpoints)]
        for i in range(2):
            procs.append(subprocess.Popen(
                [*essa, "executor", str(i), *connect, "--workers", str(args.workers)],
                env={**env, **process_env[f"executor-{i}"]}, stderr=subprocess.DEVNULL,
            ))
        try:
            client = connect_client(endpoints, timeout=60, tls=tls, token=token, wait=True)  # a busy machine starts slowly
            deadline = time.monotonic() + 60
            while len(client.caller._schedulers) < schedulers and time.monotonic() < deadline:
                time.sleep(0.05)  # the client sees every scheduler
            module = client.publish(wasmtime.wat2wasm(ECHO_WAT))
            deadline = time.monotonic() + 20
            while True:  # until both executors have the module warm
                for _ in range(50):
                    outcome = client.call(module, "__essa_wrapper__echo", b"12345678")
                    assert outcome.value == b"12345678", outcome
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

            extra = {} if token is None else {"token": token}
            request = call_request(module, "__essa_wrapper__echo", b"12345678", "bench", "bench", **extra)

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
    return {
        "call": {"calls": args.calls, **percentiles(samples)},
        "throughput": {
            "concurrency": args.concurrency,
            "seconds": round(elapsed, 2),
            "calls_per_s": round(sum(done) / elapsed, 1),
            "served_by_executor": served,
        },
    }


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def compare(args: argparse.Namespace) -> dict:
    """Plain and secure clusters, alternating for ``args.rounds`` rounds."""
    before = uptime()
    rounds: dict[str, list[dict]] = {"plain": [], "secure": []}
    for _ in range(args.rounds):
        for name in ("plain", "secure"):
            rounds[name].append(measure(args, secure=name == "secure"))
    medians = {
        name: {
            "p50_ms": round(statistics.median(r["call"]["p50_ms"] for r in results), 4),
            "p99_ms": round(statistics.median(r["call"]["p99_ms"] for r in results), 4),
            "calls_per_s": round(statistics.median(r["throughput"]["calls_per_s"] for r in results), 1),
        }
        for name, results in rounds.items()
    }
    plain, secure = medians["plain"], medians["secure"]
    return {
        "configurations": {
            "plain": "tcp/ endpoints, no access control, no tokens",
            "secure": "mutual TLS on every link, zenoh access control by certificate role, "
                      "an Ed25519 token checked by the scheduler and the executor on every call",
        },
        "rounds": args.rounds,
        "medians": medians,
        "secure_slower_percent": {
            "p50": round(100 * (secure["p50_ms"] / plain["p50_ms"] - 1), 1),
            "p99": round(100 * (secure["p99_ms"] / plain["p99_ms"] - 1), 1),
            "throughput": round(100 * (1 - secure["calls_per_s"] / plain["calls_per_s"]), 1),
        },
        "uptime_before": before,
        "uptime_after": uptime(),
        "each_round": rounds,
    }


def compare_schedulers(args: argparse.Namespace) -> dict:
    """Clusters with each count of ``args.schedulers``, alternating for ``args.rounds`` rounds."""
    before = uptime()
    rounds: dict[str, list[dict]] = {str(n): [] for n in args.schedulers}
    for _ in range(args.rounds):
        for n in args.schedulers:
            rounds[str(n)].append(measure(args, secure=False, schedulers=n))
    medians = {
        name: {
            "p50_ms": round(statistics.median(r["call"]["p50_ms"] for r in results), 4),
            "p99_ms": round(statistics.median(r["call"]["p99_ms"] for r in results), 4),
            "calls_per_s": round(statistics.median(r["throughput"]["calls_per_s"] for r in results), 1),
        }
        for name, results in rounds.items()
    }
    return {"schedulers": args.schedulers, "rounds": args.rounds, "medians": medians, "uptime_before": before,
            "uptime_after": uptime(), "each_round": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2, help="threads per executor")
    parser.add_argument("--tls", action="store_true",
                        help="compare plain TCP with mutual TLS, access control and tokens, in alternating rounds")
    parser.add_argument("--rounds", type=int, default=3, help="with --tls or --schedulers: rounds of each configuration")
    parser.add_argument("--schedulers", type=int, nargs="+", help="compare clusters with these numbers of schedulers")
    args = parser.parse_args()
    head = {"engine": args.engine, "python": sys.version.split()[0], "cpus": os.cpu_count()}
    result = compare(args) if args.tls else compare_schedulers(args) if args.schedulers else measure(args, secure=False)
    print(json.dumps({**head, **result}, indent=2))


if __name__ == "__main__":
    main()
