"""State benchmark: the store under merges, as a user's functions load it; prints one JSON document.

Through the store API (no Wasm), for the embedded LMDB store with ``sync=on``
(the default) and ``sync=off``, and for the Anna store with 1 and 3 KVS nodes
(replication ``min(2, nodes)``, puts acknowledged by every replica):

- ``seq_lww_p50_ms``: sequential Lww puts to distinct keys, p50 latency;
- ``distinct_puts_per_s``: ``--threads`` threads x ``--puts`` Lww puts to distinct keys;
- ``one_key_adds_per_s``: ``--threads`` threads x ``--puts`` adds of one element each to ONE Set key;
- ``add_into_big_set_p50_ms``: one add into a Set of ``--big`` elements, p50 over ``--big-adds`` adds;
- ``pipelined_adds`` (Anna): ``--pipelined`` adds to one key submitted at once; seconds until all
  completed, and how many failed.

For the Redis store (``redis``), a ``redis-server`` of its own on a free loopback port (Debian's
``redis-server`` must be installed), with AOF off and with ``appendfsync everysec``: the same
workloads through the store API (one round trip per put, merged on the server), and
``merge_many_50_p50_ms``: 50 Lww puts to distinct keys by ``merge_many`` (one pipeline), against
``one_by_one_50_p50_ms``, the same puts one round trip each (what ``merge_many`` did before).

Guest-driven (``guest``): a Wasm module whose function ``fan(start, n)`` makes ``n``
concurrent remote calls of ``add(member)``, each merging one element into one
shared Set with ``essa_put_lattice``; run embedded (LMDB store, sync on) with
``--executors`` executors. Reports adds/s and checks the set holds every element.

Usage: python bench/state.py [--puts 500] [--threads 8] [--big 100000] [--parts embedded,anna,redis,guest]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

from essa.testing.ports import free_port

GUEST_WAT = """
(module
  (import "host" "essa_get_args" (func $get_args (param i32 i32) (result i32)))
  (import "host" "essa_set_result" (func $set_result (param i32 i32) (result i32)))
  (import "host" "essa_call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (import "host" "essa_get_result_len" (func $get_result_len (param i32 i32) (result i32)))
  (import "host" "essa_put_lattice" (func $put (param i32 i32 i32 i32) (result i32)))
  (import "host" "essa_get_lattice_len" (func $get_len (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "__essa_wrapper__add")
  (data (i32.const 48) "guest-set")
  ;; Set({member}): tag 1, count 1, length 8, then the 8-byte member at 84
  (data (i32.const 64) "\\01\\00\\00\\00\\01\\00\\00\\00\\00\\00\\00\\00\\08\\00\\00\\00\\00\\00\\00\\00")
  (func (export "__essa_wrapper__add") (param $len i32)
    (if (call $get_args (i32.const 84) (i32.const 8)) (then unreachable))
    (if (call $put (i32.const 48) (i32.const 9) (i32.const 64) (i32.const 28)) (then unreachable))
    (drop (call $set_result (i32.const 84) (i32.const 0))))
  ;; fan(u64 start, u32 n): n concurrent calls of add(start + i), then wait for all
  (func (export "__essa_wrapper__fan") (param $len i32) (local $i i32) (local $n i32) (local $start i64)
    (if (call $get_args (i32.const 128) (i32.const 12)) (then unreachable))
    (local.set $start (i64.load (i32.const 128)))
    (local.set $n (i32.load (i32.const 136)))
    (block $sent (loop $send
      (br_if $sent (i32.ge_u (local.get $i) (local.get $n)))
      (i64.store (i32.const 160) (i64.add (local.get $start) (i64.extend_i32_u (local.get $i))))
      (if (call $call (i32.const 16) (i32.const 19) (i32.const 160) (i32.const 8)
                      (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 2)))) (then unreachable))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $send)))
    (local.set $i (i32.const 0))
    (block $done (loop $wait
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (if (call $get_result_len (i32.load (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 2))))
                                (i32.const 200)) (then unreachable))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $wait)))
    (drop (call $set_result (i32.const 0) (i32.const 0))))
  ;; size(): the encoded length of the shared set (u32)
  (func (export "__essa_wrapper__size") (param $len i32)
    (if (call $get_len (i32.const 48) (i32.const 9) (i32.const 200)) (then unreachable))
    (drop (call $set_result (i32.const 200) (i32.const 4))))
  (func (export "_start")))
"""


def p50_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e3, 4)


def lww(i: int, base: int = 1_700_000_000_000_000_000) -> bytes:
    from essa.state.bincode import encode_lattice
    from essa.state.lattice import LwwLattice

    return encode_lattice(LwwLattice(base + i, b"v" * 64))


def one_member(member: bytes) -> bytes:
    from essa.state.bincode import encode_lattice
    from essa.state.lattice import SetLattice

    return encode_lattice(SetLattice([member]))


def in_threads(threads: int, work) -> float:
    """Run ``work(t)`` in ``threads`` threads at once; seconds from start to the last one done."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def run(t: int) -> None:
        barrier.wait()
        try:
            work(t)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def set_size(data: bytes | None) -> int:
    return 0 if data is None else struct.unpack_from("<Q", data, 4)[0]


def bench_workloads(put, get, args) -> dict:
    """The table's workloads on a store given as ``put(key, bytes)`` / ``get(key)``."""
    from essa.state.bincode import encode_lattice
    from essa.state.lattice import SetLattice

    result = {}
    samples = []
    for i in range(args.puts):
        value = lww(i)
        started = time.perf_counter()
        put(f"seq/{i}", value)
        samples.append(time.perf_counter() - started)
    result["seq_lww_p50_ms"] = p50_ms(samples)

    values = [[lww(t * args.puts + i) for i in range(args.puts)] for t in range(args.threads)]
    elapsed = in_threads(args.threads, lambda t: [put(f"distinct/{t}/{i}", v) for i, v in enumerate(values[t])])
    result["distinct_puts_per_s"] = round(args.threads * args.puts / elapsed)

    adds = [[one_member(b"m-%d-%d" % (t, i)) for i in range(args.puts)] for t in range(args.threads)]
    elapsed = in_threads(args.threads, lambda t: [put("one-key", v) for v in adds[t]])
    result["one_key_adds_per_s"] = round(args.threads * args.puts / elapsed)
    assert set_size(get("one-key")) == args.threads * args.puts, "adds were lost"

    put("big", encode_lattice(SetLattice(b"member-%08d" % i for i in range(args.big))))
    samples = []
    for i in range(args.big_adds):
        value = one_member(b"extra-%d" % i)
        started = time.perf_counter()
        put("big", value)
        samples.append(time.perf_counter() - started)
    result["add_into_big_set_p50_ms"] = p50_ms(samples)
    assert set_size(get("big")) == args.big + args.big_adds
    return result


def bench_embedded(args) -> list[dict]:
    from essa_lmdb import LmdbStore

    results = []
    for sync in ("on", "off"):
        with tempfile.TemporaryDirectory() as path:
            store = LmdbStore({"path": path, "sync": sync})
            try:
                row = {"store": "lmdb", "sync": sync, **bench_workloads(store.merge_bytes, store.get_bytes, args)}
            finally:
                store.close()
        print(json.dumps(row), file=sys.stderr)
        results.append(row)
    return results


@contextlib.contextmanager
def anna_cluster(nodes: int, replication: int):
    essa = [sys.executable, "-m", "essa", "anna"]
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([*essa, "routing", "--listen", endpoint], stderr=subprocess.DEVNULL)]
    for i in range(nodes):
        procs.append(subprocess.Popen(
            [*essa, "kvs", f"s{i}", "--connect", endpoint, "--listen", f"tcp/127.0.0.1:{free_port()}",
             "--global-replication", str(replication), "--replication-timeout", "30"],
            stderr=subprocess.DEVNULL))
    try:
        yield endpoint
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def bench_anna(args) -> list[dict]:
    from essa_anna import AnnaClient
    from essa_anna.protocol import PUT

    results = []
    for nodes in [int(n) for n in args.nodes.split(",")]:
        replication = min(2, nodes)
        with anna_cluster(nodes, replication) as endpoint:
            client = AnnaClient([endpoint], timeout=120, connect_timeout=60)
            try:
                client.wait_for_nodes(nodes, timeout=60)
                time.sleep(6)  # every node sees every other; past the read-repair window after the joins
                row = {"store": "anna", "kvs_nodes": nodes, "replication": replication,
                       **bench_workloads(client.put, client.get, args)}
                values = [one_member(b"p-%d" % i) for i in range(args.pipelined)]
                started = time.perf_counter()
                futures = [client.submit(PUT, "pipelined", v) for v in values]
                failed = 0
                for future in futures:
                    try:
                        future.result(300)
                    except Exception:
                        failed += 1
                row["pipelined_adds"] = {"adds": args.pipelined, "seconds": round(time.perf_counter() - started, 3),
                                         "failed": failed}
                try:
                    row["pipelined_adds"]["stored"] = set_size(client.get("pipelined"))
                except Exception as exc:  # the node may be too busy to answer: that is a result too
                    row["pipelined_adds"]["stored"] = f"{type(exc).__name__}: {exc}"
            finally:
                client.close()
        print(json.dumps(row), file=sys.stderr)
        results.append(row)
    return results


@contextlib.contextmanager
def redis_server(directory: str, **config: str):
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory, "--save", "",
            "--logfile", os.path.join(directory, "redis.log")]
    for name, value in config.items():
        args += [f"--{name}", value]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # ready: it answers a PING
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench: redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.contextmanager
def redis_cluster(directory: str, masters: int = 3, **config: str):
    """A Redis Cluster of ``masters`` masters and one replica each (``redis_server`` processes); yields the
    store's ``url`` (every node a seed) once every node says the cluster is ok."""
    import redis

    cli = shutil.which("redis-cli")
    if cli is None:
        raise SystemExit("bench: redis-cli is not installed (apt-get install -y redis-server)")
    with contextlib.ExitStack() as nodes:
        urls = []
        for i in range(2 * masters):
            node = os.path.join(directory, f"node-{i}")
            os.makedirs(node)
            urls.append(nodes.enter_context(redis_server(
                node, **{"cluster-enabled": "yes", "cluster-port": str(free_port()), "cluster-node-timeout": "2000",
                         "cluster-config-file": "nodes.conf", **config})))
        addresses = [url.removeprefix("redis://") for url in urls]
        create = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
                                capture_output=True, text=True, timeout=90)
        if create.returncode != 0:
            raise SystemExit(f"bench: redis-cli --cluster create failed: {create.stdout}{create.stderr}")
        deadline = time.monotonic() + 90
        for address in addresses:
            host, port = address.split(":")
            with redis.Redis(host=host, port=int(port)) as node:
                while node.cluster("info").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise SystemExit("bench: the Redis Cluster did not become ok within 90 s")
                    time.sleep(0.05)
        yield " ".join(urls)


def bench_redis(args) -> list[dict]:
    from essa_redis import RedisStore

    results = []
    for aof in ("off", "everysec"):
        with tempfile.TemporaryDirectory() as directory:
            config = {"appendonly": "no"} if aof == "off" else {"appendonly": "yes", "appendfsync": aof}
            with redis_server(directory, **config) as url:
                store = RedisStore({"url": url, "timeout": "60"})
                try:
                    row = {"store": "redis", "aof": aof, **bench_workloads(store.merge_bytes, store.get_bytes, args),
                           **bench_merge_many(store)}
                finally:
                    store.close()
        print(json.dumps(row), file=sys.stderr)
        results.append(row)
    return results


def bench_merge_many(store, rounds: int = 200, size: int = 50) -> dict:
    """p50 of ``size`` Lww puts to distinct keys: by the store's ``merge_many``, and one by one."""
    from essa.state.store import Store

    ways = {"merge_many": store.merge_many, "one_by_one": lambda items: Store.merge_many(store, items)}
    timed: dict[str, list[float]] = {label: [] for label in ways}
    for r in range(rounds):
        for label, merge_many in ways.items():
            items = [(f"{label}/{r}/{i}", lww(r * size + i)) for i in range(size)]
            started = time.perf_counter()
            merge_many(items)
            timed[label].append(time.perf_counter() - started)
    return {f"{label}_{size}_p50_ms": p50_ms(samples) for label, samples in timed.items()}


def bench_guest(args) -> dict:
    import wasmtime

    from essa.cluster.embedded import EmbeddedRuntime

    adds = args.threads * args.puts
    with tempfile.TemporaryDirectory() as home:
        os.environ["ESSA_HOME"] = home
        with EmbeddedRuntime(engine="wasmtime", store="lmdb", executors=args.executors) as runtime:
            module = runtime.client.publish(wasmtime.wat2wasm(GUEST_WAT))
            runtime.client.call(module, "__essa_wrapper__fan", struct.pack("<QI", 1 << 40, 50))  # warm up
            started = time.perf_counter()
            outcome = runtime.client.call(module, "__essa_wrapper__fan", struct.pack("<QI", 0, adds))
            elapsed = time.perf_counter() - started
            assert outcome.value == b"", outcome
            size = struct.unpack("<I", runtime.client.call(module, "__essa_wrapper__size", b"").value)[0]
        shutil.rmtree(home, ignore_errors=True)
    assert size == 12 + (adds + 50) * 16, f"the set has {size} bytes: adds were lost"
    row = {"store": "lmdb", "sync": "on", "engine": "wasmtime", "executors": args.executors,
           "concurrent_calls": adds, "adds_per_s": round(adds / elapsed)}
    print(json.dumps(row), file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puts", type=int, default=500, help="puts per thread (and sequential puts)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--big", type=int, default=100_000, help="elements of the big set")
    parser.add_argument("--big-adds", type=int, default=50)
    parser.add_argument("--pipelined", type=int, default=8000)
    parser.add_argument("--executors", type=int, default=2, help="guest part: executors of the embedded runtime")
    parser.add_argument("--parts", default="embedded,anna,redis,guest")
    parser.add_argument("--nodes", default="1,3", help="anna part: KVS node counts")
    args = parser.parse_args()
    parts = args.parts.split(",")
    result = {
        "benchmark": "state",
        # other work on the machine skews everything, durable puts (fsync) most: say how busy it was
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "load_average_at_start": [round(x, 1) for x in os.getloadavg()]},
        "config": {k: getattr(args, k) for k in ("puts", "threads", "big", "big_adds", "pipelined", "executors")},
    }
    if "embedded" in parts:
        result["embedded"] = bench_embedded(args)
    if "anna" in parts:
        result["anna"] = bench_anna(args)
    if "redis" in parts:
        result["redis"] = bench_redis(args)
    if "guest" in parts:
        result["guest"] = bench_guest(args)
    result["machine"]["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
