"""Anna store benchmark over zenoh on loopback; prints one JSON document.

For 1 and 3 KVS nodes (a routing node besides; replication ``min(--replication,
nodes)``), from this process (one :class:`essa_anna.AnnaClient`) keeping
``--concurrency`` requests in flight, for each workload ``get``, ``put`` and
``mix`` (50/50) and each key distribution ``uniform`` and ``zipf`` (exponent
``--zipf``) over ``--keys`` keys: ops/s, ops/s per KVS node process, p50/p99
latency (submit to answer), and the CPU share used by the client and by each
KVS node (1.0 = one core busy). Puts are 64-byte Lww values with fresh
timestamps (encoded before the clock starts); gets read keys loaded first. Two more runs per node count measure unloaded latency
(one request in flight).

Usage: python bench/anna.py [--seconds 3] [--keys 10000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

from essa.testing.ports import free_port
from essa.testing.resources import cpu_seconds


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


class KeyChooser:
    def __init__(self, keys: list[str], dist: str, zipf: float, rng: random.Random) -> None:
        self.keys = keys
        self.rng = rng
        self.cdf = None
        if dist == "zipf":
            weights = [1.0 / (i + 1) ** zipf for i in range(len(keys))]
            total = sum(weights)
            self.cdf = list(itertools.accumulate(w / total for w in weights))
            self.order = keys[:]
            rng.shuffle(self.order)

    def __call__(self) -> str:
        if self.cdf is None:
            return self.keys[self.rng.randrange(len(self.keys))]
        return self.order[min(bisect.bisect_left(self.cdf, self.rng.random()), len(self.keys) - 1)]


def run_load(client, workload: str, choose: KeyChooser, values, concurrency: int, seconds: float,
             warmup: float, pids: list[int]) -> dict:
    """Closed loop: ``concurrency`` requests in flight; returns ops/s and latencies."""
    from essa_anna.protocol import GET, PUT

    lock = threading.Lock()
    latencies: list[float] = []
    state = {"measuring": False, "stop": False, "ops": 0, "errors": 0}
    done = threading.Event()
    inflight = [0]
    rng = random.Random(7)
    clock = time.perf_counter

    def issue() -> None:
        if workload == "get" or (workload == "mix" and rng.random() < 0.5):
            future = client.submit(GET, choose())
        else:
            future = client.submit(PUT, choose(), next(values))
        started = clock()
        future.add_done_callback(lambda f, started=started: finished(f, started))

    def finished(future, started) -> None:
        elapsed = clock() - started
        with lock:
            if future.exception() is not None:
                state["errors"] += 1
            elif state["measuring"]:
                latencies.append(elapsed)
                state["ops"] += 1
            if state["stop"]:
                inflight[0] -= 1
                if inflight[0] == 0:
                    done.set()
                return
        issue()

    inflight[0] = concurrency
    for _ in range(concurrency):
        issue()
    time.sleep(warmup)
    cpu0 = {pid: cpu_seconds(pid) for pid in pids}
    me0 = time.process_time()
    with lock:
        state["measuring"] = True
        t0 = clock()
    time.sleep(seconds)
    with lock:
        state["measuring"] = False
        state["stop"] = True
        elapsed = clock() - t0
        ops = state["ops"]
    cpu = {pid: round((cpu_seconds(pid) - cpu0[pid]) / elapsed, 2) for pid in pids}
    client_cpu = round((time.process_time() - me0) / elapsed, 2)
    done.wait(30)
    latencies.sort()
    return {
        "ops_per_s": round(ops / elapsed),
        "p50_ms": round(percentile(latencies, 0.5) * 1e3, 3) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1e3, 3) if latencies else None,
        "errors": state["errors"],
        "client_cpu": client_cpu,
        "kvs_cpu": list(cpu.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--replication", type=int, default=2)
    parser.add_argument("--nodes", default="1,3", help="comma-separated KVS node counts")
    parser.add_argument("--workers", type=int, default=1, help="workers per KVS node")
    parser.add_argument("--ack", default="all", choices=["all", "owner"])
    args = parser.parse_args()

    from essa.state.bincode import encode_lattice
    from essa.state.lattice import LwwLattice
    from essa_anna import AnnaClient

    essa = [sys.executable, "-m", "essa", "anna"]
    keys = [f"bench/{i:08d}" for i in range(args.keys)]
    base = time.time_ns()
    payload = b"v" * 64
    values = iter([encode_lattice(LwwLattice(base + i, payload)) for i in range(1_000_000)])
    results = []
    for nodes in [int(n) for n in args.nodes.split(",")]:
        endpoint = f"tcp/127.0.0.1:{free_port()}"
        replication = min(args.replication, nodes)
        procs = [subprocess.Popen([*essa, "routing", "--listen", endpoint], stderr=subprocess.DEVNULL)]
        kvs = []
        for i in range(nodes):
            kvs.append(subprocess.Popen(
                [*essa, "kvs", f"b{i}", "--connect", endpoint, "--listen", f"tcp/127.0.0.1:{free_port()}",
                 "--workers", str(args.workers), "--global-replication", str(replication)],
                stderr=subprocess.DEVNULL))
        procs += kvs
        client = None
        try:
            client = AnnaClient([endpoint], timeout=30, ack=args.ack)
            client.wait_for_nodes(nodes, timeout=30)
            time.sleep(1.0)  # every node sees every other
            for i in range(0, len(keys), 500):
                client.put_many((k, next(values)) for k in keys[i:i + 500])
            time.sleep(5.5)  # past the read-repair window that follows the nodes' joins
            runs = [(w, d, args.concurrency) for w in ("get", "put", "mix") for d in ("uniform", "zipf")]
            runs += [("get", "uniform", 1), ("put", "uniform", 1)]  # unloaded latency
            for workload, dist, concurrency in runs:
                choose = KeyChooser(keys, dist, args.zipf, random.Random(1))
                result = run_load(client, workload, choose, values, concurrency, args.seconds,
                                  args.warmup, [p.pid for p in kvs])
                results.append({"kvs_nodes": nodes, "replication": replication, "workload": workload,
                                "keys": dist, "concurrency": concurrency, **result,
                                "ops_per_s_per_node": round(result["ops_per_s"] / nodes)})
                print(json.dumps(results[-1]), file=sys.stderr)
        finally:
            if client is not None:
                client.close()
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
    print(json.dumps({
        "benchmark": "anna",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "config": {"seconds": args.seconds, "keys": args.keys, "concurrency": args.concurrency,
                   "zipf": args.zipf, "workers_per_node": args.workers, "ack": args.ack,
                   "value": "Lww, 64-byte payload"},
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
