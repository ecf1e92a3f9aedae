"""Executor-local caches on the Anna or Redis store: cached against uncached reads; prints one JSON document.

Two parts, each run with the cache on and off in the same run, on an Anna
cluster of real processes (a routing node and ``--nodes`` KVS nodes,
replication ``min(2, nodes)``, puts acknowledged by every replica), or with
``--store redis`` on a ``redis-server`` of its own (AOF off, a free loopback
port; the caches fed by its client-side-caching invalidations), or with
``--store redis-cluster`` on a Redis Cluster of its own (3 masters, one
replica each, AOF off; the caches fed by every master):

``hot``: a guest (examples/state-ops.wasm, ``read_many``) reads one 1 KB Lww
key ``--reads`` times per call, in an embedded runtime with one executor,
while another process merges a new value into the key every 100 ms. Per read:
(call time - the median time of a call with no read) / reads, p50 and p99 over
``--calls`` calls; the same with the cache off (every read a round trip to the
KVS or to Redis). Staleness: a thread polls the executor's cache every 0.5 ms;
for each update, the time from the writer stamping the value (just before its
put) to the cache holding it, p50/p99/max.

``mix``: a cluster (a scheduler and 2 executor processes; ``--cache-size 0``
for the uncached run) and a client keeping ``--concurrency`` calls of ``ops``
in flight for ``--seconds``. Each call makes ``--ops`` state operations: 90%
reads, 10% adds of one member to a Set, keys drawn from 1,000 by Zipf 1.0.
Calls/s and state operations/s, and the ratio cached/uncached; run for
``--ops 1`` (one operation per call) and ``--ops 50`` by default. With each,
``cpu_us_per_call``: the CPU (user + system) the scheduler, the executors
(together), the store's processes (Anna only) and this client used per call.

``memory`` (not run by default): ``--memory-reads`` reads (1,000,000) of
``--memory-keys`` keys (100,000 Lww values of 100 bytes), Zipf 1.0, from 8
threads through one cache of ``--memory-capacity`` bytes (8M): the cache's
bytes and entries, and this process's RSS, every tenth of the reads.

Usage: python bench/cache.py [--store anna|redis|redis-cluster] [--parts hot,mix,memory] [--nodes 1]
       [--seconds 10] [--ops 1,50]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from essa.testing.ports import free_port
from essa.testing.resources import cpu_seconds

_HERE = Path(__file__).resolve().parent

ROOT = _HERE.parent
STATE_OPS = ROOT / "examples" / "state-ops.wasm"
ESSA = [sys.executable, "-m", "essa"]
NAMESPACE = "bench"


def text(value: str) -> bytes:
    data = value.encode()
    return struct.pack("<Q", len(data)) + data


def blob(value: bytes) -> bytes:
    return struct.pack("<Q", len(value)) + value


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def wait_for(predicate, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/cache.py: {what} within {timeout:g} s")
        time.sleep(0.05)


class Anna:
    """A routing node and KVS nodes as child processes."""

    name = "anna"

    def __init__(self, nodes: int) -> None:
        from essa_anna import AnnaClient

        self.endpoint = f"tcp/127.0.0.1:{free_port()}"
        self.procs = [subprocess.Popen([*ESSA, "anna", "routing", "--listen", self.endpoint], stderr=subprocess.DEVNULL)]
        for i in range(nodes):
            self.procs.append(subprocess.Popen(
                [*ESSA, "anna", "kvs", f"c{i}", "--connect", self.endpoint, "--listen", f"tcp/127.0.0.1:{free_port()}",
                 "--global-replication", str(min(2, nodes))], stderr=subprocess.DEVNULL))
        client = AnnaClient([self.endpoint], timeout=30, connect_timeout=90)
        try:
            client.wait_for_nodes(nodes, timeout=90)
            wait_for(lambda: len([a for a in client.status(1.0) if a.get("role") == "kvs"
                                  and len(a.get("ring", ())) == nodes]) == nodes, "the KVS nodes did not meet")
        finally:
            client.close()
        time.sleep(5.5)  # past the read-repair window that follows the nodes' joins
        self.options = {"routing": self.endpoint, "timeout": "30", "connect_timeout": "90"}

    def store(self):
        from essa_anna import AnnaStore

        return AnnaStore(self.options)

    def stop(self) -> None:
        stop(self.procs)

    def config(self) -> dict:
        return {"kvs_nodes": len(self.procs) - 1, "replication": min(2, len(self.procs) - 1)}


class Redis:
    """A redis-server of its own, or with ``cluster`` a Redis Cluster (bench/state.py starts them), AOF off."""

    name = "redis"

    def __init__(self, cluster: bool = False) -> None:
        import tempfile

        from state import redis_cluster, redis_server

        self.cluster = cluster
        self._directory = tempfile.TemporaryDirectory(prefix="essa-bench-cache-redis-")
        self._server = (redis_cluster if cluster else redis_server)(self._directory.name, appendonly="no")
        url = self._server.__enter__()
        self.options = {"url": url, "timeout": "30"}

    def store(self):
        from essa_redis import RedisStore

        return RedisStore(self.options)

    def stop(self) -> None:
        self._server.__exit__(None, None, None)
        self._directory.cleanup()

    def config(self) -> dict:
        import subprocess as sp

        version = sp.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
        return {"redis": next((w.split("=")[1] for w in version if w.startswith("v=")), "?"), "aof": "off",
                "cluster": "3 masters, 3 replicas" if self.cluster else "off"}


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# -- hot: one key, read by a guest, written elsewhere every 100 ms ---------------------------


def writer_main(store_name: str, options: str, key: str, interval: float) -> None:
    """``--writer``: merge a fresh 1 KB Lww value into ``key`` every ``interval`` s until stopped."""
    from essa.cluster.embedded import open_store
    from essa.state.lattice import LwwLattice

    store = open_store(store_name, json.loads(options))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    next_at = time.monotonic()
    try:
        while True:
            next_at += interval
            stamp = time.time_ns()
            store.put(key, LwwLattice(stamp, b"x" * 1024))
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        store.close()


def hot(backend: Anna | Redis, calls: int, reads: int) -> dict:
    from essa.cluster.embedded import EmbeddedRuntime
    from essa.state.bincode import decode_lattice
    from essa.state.lattice import LwwLattice

    key = f"{NAMESPACE}/data/hot"
    seed = backend.store()
    seed.put(key, LwwLattice(time.time_ns(), b"x" * 1024))
    seed.close()
    writer = subprocess.Popen([sys.executable, __file__, "--writer", backend.name, json.dumps(backend.options), key])
    results = {}
    try:
        for label, cache_size in (("cached", 64 << 20), ("uncached", 0)):
            runtime = EmbeddedRuntime("wasmtime", backend.name, backend.options, executors=1, cache_size=cache_size)
            try:
                client = runtime.client
                module = client.publish(STATE_OPS.read_bytes())

                def call(n: int) -> float:
                    started = time.perf_counter()
                    outcome = client.call(module, "__essa_wrapper__read_many", text("hot") + struct.pack("<Q", n),
                                          NAMESPACE)
                    took = time.perf_counter() - started
                    if outcome.code != 0 or (n and len(outcome.value) < 1024):
                        raise SystemExit(f"bench/cache.py: read_many failed: {outcome}")
                    return took

                n = reads if label == "cached" else max(1, reads // 50)
                for _ in range(5):
                    call(n)  # warm up: module loaded, key cached
                base = statistics.median(call(0) for _ in range(max(20, calls // 2)))
                per_read = [(call(n) - base) / n for _ in range(calls)]
                results[label] = {"reads_per_call": n, "call_without_reads_ms": round(base * 1e3, 3),
                                  "read_p50_us": round(pct(per_read, 0.5) * 1e6, 2),
                                  "read_p99_us": round(pct(per_read, 0.99) * 1e6, 2)}
                if label == "cached":
                    results[label]["cache"] = runtime.state.status()
                    results["staleness"] = staleness(runtime.state, key, decode_lattice)
            finally:
                runtime.close()
    finally:
        stop([writer])
    results["read_speedup"] = round(results["uncached"]["read_p50_us"] / results["cached"]["read_p50_us"], 1)
    return results


def staleness(cache, key: str, decode, seconds: float = 30.0) -> dict:
    """Poll ``cache`` every 0.5 ms for ``seconds``: how long after its writer stamped it each update arrived."""
    seen, delays = None, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stamp = decode(cache.get_bytes(key)).timestamp
        if seen is not None and stamp != seen:
            delays.append((time.time_ns() - stamp) / 1e6)
        seen = stamp
        time.sleep(0.0005)
    if not delays:
        return {"updates": 0}
    return {"updates": len(delays), "p50_ms": round(pct(delays, 0.5), 2), "p95_ms": round(pct(delays, 0.95), 2),
            "p99_ms": round(pct(delays, 0.99), 2), "max_ms": round(max(delays), 2),
            "over_50ms": sum(1 for d in delays if d > 50)}


# -- mix: 90% reads, 10% set adds, 1,000 keys, Zipf 1.0, 2 executors ----------------------------


class Zipf:
    def __init__(self, n: int, exponent: float, rng: random.Random) -> None:
        weights = [1.0 / (i + 1) ** exponent for i in range(n)]
        total = sum(weights)
        self.cdf = list(itertools.accumulate(w / total for w in weights))
        self.rng = rng

    def __call__(self) -> int:
        return min(bisect.bisect_left(self.cdf, self.rng.random()), len(self.cdf) - 1)


def cluster(backend: Anna | Redis, cache_size: str, logs: Path) -> tuple[list[subprocess.Popen], str]:
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([*ESSA, "scheduler", "--listen", endpoint], stderr=subprocess.DEVNULL)]
    store = ["--store", backend.name] + [a for k, v in backend.options.items() for a in ("--store-option", f"{k}={v}")]
    for i in range(2):
        log = open(logs / f"executor-{cache_size}-{i}.log", "w")
        procs.append(subprocess.Popen([*ESSA, "--engine", "wasmtime", *store, "executor", str(i), "--connect", endpoint,
                                       "--workers", "4", "--cache-size", cache_size], stderr=log))
    return procs, endpoint


def mix(backend: Anna | Redis, seconds: float, concurrency: int, ops_per_call: list[int], logs: Path) -> list[dict]:
    import essa
    from essa.state.bincode import encode_lattice
    from essa.state.lattice import SetLattice

    rng = random.Random(23)
    choose = Zipf(1000, 1.0, rng)
    seed = backend.store()
    for label in ("cached", "uncached"):  # each configuration its own namespace, seeded alike
        seed.merge_many([(f"{NAMESPACE}-{label}/data/k{i}", encode_lattice(SetLattice({b"0"}))) for i in range(1000)])
    seed.close()
    counter = itertools.count(1)

    def args(n: int) -> bytes:
        parts = [struct.pack("<Q", n)]
        for _ in range(n):
            key = text(f"k{choose()}")
            if rng.random() < 0.9:
                parts.append(b"\0" + key + blob(b""))
            else:
                parts.append(b"\1" + key + blob(encode_lattice(SetLattice({str(next(counter)).encode()}))))
        return b"".join(parts)

    # The same calls for both configurations (2,000 per --ops, cycled: the Sets grow alike).
    workloads = {n: [args(n) for _ in range(2000)] for n in ops_per_call}
    results = []
    for cache_size, label in (("0", "uncached"), ("64M", "cached")):
        deployment = f"{NAMESPACE}-{label}"
        procs, endpoint = cluster(backend, cache_size, logs)
        try:
            connection = essa.connect(endpoint, timeout=90, wait=True)  # the scheduler may not listen yet
            wait_for(lambda: len([a for a in connection.status() if a.get("role") == "executor"]) == 2,
                     "two executors did not join")
            connection.deploy(STATE_OPS, deployment)
            for n in ops_per_call:
                payloads = workloads[n]
                for p in payloads[:20]:
                    connection.call(deployment, "ops", p, timeout=60)
                roles = {"scheduler": procs[:1], "executors": procs[1:], "store": getattr(backend, "procs", [])}
                before = {role: sum(cpu_seconds(p.pid) for p in ps) for role, ps in roles.items()}
                before["client"] = cpu_seconds()
                done = run_closed_loop(connection, deployment, payloads, concurrency, seconds)
                after = {role: sum(cpu_seconds(p.pid) for p in ps) for role, ps in roles.items()}
                after["client"] = cpu_seconds()
                calls = max(1, done.pop("calls"))
                results.append({"cache": label, "ops_per_call": n, **done,
                                "state_ops_per_s": round(done["calls_per_s"] * n, 1),
                                "cpu_us_per_call": {role: round((after[role] - before[role]) / calls * 1e6, 1)
                                                    for role in after}})
                print(json.dumps(results[-1]), file=sys.stderr)
            status = [a for a in connection.status() if a.get("role") == "executor"]
            results[-1]["executor_caches"] = [a.get("cache") for a in status]
            connection.close()
        finally:
            stop(procs)
    for n in ops_per_call:
        pair = {r["cache"]: r for r in results if r["ops_per_call"] == n}
        pair["cached"]["speedup"] = round(pair["cached"]["calls_per_s"] / pair["uncached"]["calls_per_s"], 2)
    return results


def run_closed_loop(connection, deployment: str, payloads: list[bytes], concurrency: int, seconds: float) -> dict:
    lock = threading.Lock()
    state = {"calls": 0, "errors": 0, "stop": False}
    latencies: list[float] = []
    finished = threading.Event()
    inflight = [0]
    index = itertools.count()

    def issue() -> None:
        started = time.perf_counter()
        future = connection.call_async(deployment, "ops", payloads[next(index) % len(payloads)])
        future.add_done_callback(lambda f: done(f, started))

    def done(future, started: float) -> None:
        with lock:
            if future.exception() is None:
                state["calls"] += 1
                latencies.append(time.perf_counter() - started)
            else:
                state["errors"] += 1
            if state["stop"]:
                inflight[0] -= 1
                if inflight[0] == 0:
                    finished.set()
                return
        issue()

    t0 = time.perf_counter()
    with lock:
        inflight[0] = concurrency
    for _ in range(concurrency):
        issue()
    time.sleep(seconds)
    with lock:
        state["stop"] = True
        calls = state["calls"]
        elapsed = time.perf_counter() - t0
    finished.wait(60)
    return {"calls": calls, "calls_per_s": round(calls / elapsed, 1), "errors": state["errors"],
            "p50_ms": round(pct(latencies, 0.5) * 1e3, 3) if latencies else None,
            "p99_ms": round(pct(latencies, 0.99) * 1e3, 3) if latencies else None}


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def memory(backend: Anna | Redis, reads: int, keys: int, capacity: int) -> dict:
    from essa.state.bincode import encode_lattice
    from essa.state.cache import CachedStore
    from essa.state.lattice import LwwLattice

    seed = backend.store()
    value = encode_lattice(LwwLattice(1, b"v" * 100))
    names = [f"{NAMESPACE}-memory/data/k{i}" for i in range(keys)]
    for i in range(0, keys, 2000):
        seed.merge_many([(k, value) for k in names[i:i + 2000]])
    seed.close()
    cache = CachedStore(backend.store(), capacity)
    samples = []
    done = itertools.count(1)
    step = reads // 10
    lock = threading.Lock()

    def reader(seed_: int, count: int) -> None:
        choose = Zipf(keys, 1.0, random.Random(seed_))
        for _ in range(count):
            assert cache.get_bytes(names[choose()]) == value
            n = next(done)
            if n % step == 0:
                with lock:
                    samples.append({"reads": n, "rss_mib": round(rss_mib(), 1), "cache_bytes": cache.bytes,
                                    "entries": len(cache)})

    started = time.perf_counter()
    threads = [threading.Thread(target=reader, args=(i, reads // 8)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    status = cache.status()
    cache.close()
    return {"reads": reads, "keys": keys, "capacity": capacity, "seconds": round(took, 1),
            "reads_per_s": round(reads / took), "samples": samples, "cache": status}


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--writer":
        writer_main(sys.argv[2], sys.argv[3], sys.argv[4], 0.1)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=("anna", "redis", "redis-cluster"), default="anna")
    parser.add_argument("--parts", default="hot,mix")
    parser.add_argument("--nodes", type=int, default=1, help="KVS nodes (anna)")
    parser.add_argument("--calls", type=int, default=100, help="hot: calls measured per configuration")
    parser.add_argument("--reads", type=int, default=500, help="hot: reads per call with the cache on")
    parser.add_argument("--seconds", type=float, default=10.0, help="mix: seconds per configuration")
    parser.add_argument("--concurrency", type=int, default=8, help="mix: calls in flight")
    parser.add_argument("--ops", default="1,50", help="mix: state operations per call (comma-separated)")
    parser.add_argument("--logs", default="/tmp/essa-bench-cache", help="executor logs")
    parser.add_argument("--memory-reads", type=int, default=1_000_000)
    parser.add_argument("--memory-keys", type=int, default=100_000)
    parser.add_argument("--memory-capacity", default="8M")
    args = parser.parse_args()
    parts = args.parts.split(",")
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    backend = Anna(args.nodes) if args.store == "anna" else Redis(cluster=args.store == "redis-cluster")
    report = {"benchmark": "cache", "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                                "load": [round(x, 2) for x in os.getloadavg()]},
              "config": {"store": backend.name, **backend.config(), "engine": "wasmtime"}}
    try:
        if "hot" in parts:
            report["hot"] = hot(backend, args.calls, args.reads)
            print(json.dumps(report["hot"]), file=sys.stderr)
        if "mix" in parts:
            report["mix"] = {"concurrency": args.concurrency, "seconds": args.seconds,
                             "results": mix(backend, args.seconds, args.concurrency,
                                            [int(n) for n in args.ops.split(",")], logs)}
        if "memory" in parts:
            from essa.util.units import parse_size

            report["memory"] = memory(backend, args.memory_reads, args.memory_keys, parse_size(args.memory_capacity))
    finally:
        backend.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
