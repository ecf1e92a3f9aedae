"""The cost of keeping calls' output (``essa logs``); prints JSON.

Two functions of one module, called through the public API from
``--clients`` threads for ``--seconds`` per round:

- ``echo``: an 8-byte echo that prints nothing;
- ``say``: the same echo, printing one line to stdout per call.

Rounds alternate between the functions and, where this essa keeps logs,
between a runtime (or cluster) keeping them (the default bounds) and one with
``--log-size 0`` (nothing kept), so every variant sees the same machine
load. The summary gives each variant's median calls/s and:

- ``silent_logs_cost_pct``: how much throughput ``echo`` loses with logs on
  (target: at most 3 %);
- ``printing_keeps_pct``: ``say`` with logs on as a share of ``echo`` with
  logs on (target: at least 80 %).

On an essa without logs (to measure "before"), only the ``echo``/``say``
rounds run.

Modes: ``embedded`` (this process, memory store, 2 executors) and
``cluster`` (a scheduler and one executor process per variant, on loopback).

Usage: python bench/logs.py [--mode embedded|cluster|both] [--engine wasmtime] [--seconds 5] [--rounds 5]
       [--clients 8]
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

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from essa.testing.ports import free_port  # noqa: E402

#: echo(args) -> args; say(args) -> args, after printing "said 12345678\n" to stdout (one fd_write).
MODULE_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "host" "essa_get_args" (func $get_args (param i32 i32) (result i32)))
  (import "host" "essa_set_result" (func $set_result (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "said ")
  (func (export "__essa_wrapper__echo") (param $len i32)
    (drop (call $get_args (i32.const 1024) (local.get $len)))
    (drop (call $set_result (i32.const 1024) (local.get $len))))
  (func (export "__essa_wrapper__say") (param $len i32)
    (drop (call $get_args (i32.const 261) (local.get $len)))
    (i32.store8 (i32.add (i32.const 261) (local.get $len)) (i32.const 10))
    (i32.store (i32.const 0) (i32.const 256))
    (i32.store (i32.const 4) (i32.add (local.get $len) (i32.const 6)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (drop (call $set_result (i32.const 261) (local.get $len))))
  (func (export "_start")))
"""

ARGS = b"12345678"


def has_logs() -> bool:
    try:
        from essa.api import LogBounds  # noqa: F401
    except ImportError:
        return False
    return True


def throughput(connection, function: str, seconds: float, clients: int) -> float:
    """Calls per second of ``function`` from ``clients`` threads during ``seconds``."""
    done = [0] * clients
    stop = threading.Event()
    errors: list[str] = []

    def client(i: int) -> None:
        while not stop.is_set():
            try:
                value = connection.call("bench", function, ARGS, timeout=60)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            if value != ARGS:
                errors.append(f"{function}: {value!r}")
                return
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"calls failed: {errors[0]}")
    return sum(done) / elapsed


def measure(variants: dict, args) -> dict:
    """Alternate rounds over ``variants`` (name -> connection) x the two functions."""
    import wasmtime

    wasm = bytes(wasmtime.wat2wasm(MODULE_WAT))
    for connection in variants.values():
        connection.deploy(wasm, name="bench")
        for function in ("echo", "say"):  # warm: compiled, threads started
            for _ in range(200):
                connection.call("bench", function, ARGS)
    rates: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for variant, connection in variants.items():
            for function in ("echo", "say"):
                rate = throughput(connection, function, args.seconds, args.clients)
                rates.setdefault(f"{function} {variant}", []).append(rate)
    result: dict = {name: {"median_calls_per_s": round(statistics.median(v)), "rounds": [round(r) for r in v]}
                    for name, v in rates.items()}
    median = {name: statistics.median(v) for name, v in rates.items()}
    on = "logs on" if "echo logs on" in median else "this essa"
    result["printing_keeps_pct"] = round(100 * median[f"say {on}"] / median[f"echo {on}"], 1)
    if "echo logs off" in median:
        result["silent_logs_cost_pct"] = round(100 * (1 - median["echo logs on"] / median["echo logs off"]), 1)
        result["printing_logs_cost_pct"] = round(100 * (1 - median["say logs on"] / median["say logs off"]), 1)
    return result


def embedded(args) -> dict:
    import essa

    if not has_logs():
        with essa.connect(engine=args.engine, store="memory", executors=2) as connection:
            return measure({"this essa": connection}, args)
    from essa.api import LogBounds

    with essa.connect(engine=args.engine, store="memory", executors=2) as on, \
            essa.connect(engine=args.engine, store="memory", executors=2, logs=LogBounds(deployment=0)) as off:
        return measure({"logs on": on, "logs off": off}, args)


class Cluster:
    """A scheduler and one executor process (with ``executor_flags``), on loopback."""

    def __init__(self, engine: str, executor_flags: list[str]) -> None:
        self.endpoint = f"tcp/127.0.0.1:{free_port()}"
        command = [sys.executable, "-m", "essa", "--engine", engine, "--store", "memory"]
        self.procs = [subprocess.Popen([*command, "scheduler", "--listen", self.endpoint], stderr=subprocess.DEVNULL)]
        self.procs.append(subprocess.Popen([*command, "executor", "0", "--connect", self.endpoint, "--listen",
                                            f"tcp/127.0.0.1:{free_port()}", *executor_flags],
                                           stderr=subprocess.DEVNULL))

    def connect(self):
        import essa

        connection = essa.connect(self.endpoint, timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                connection.deployments()  # answered by the executor: it is up
                return connection
            except essa.EssaError:
                if time.monotonic() > deadline:
                    raise SystemExit("the executor did not join within 60 s") from None
                time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def cluster(args) -> dict:
    flags = {"logs on": [], "logs off": ["--log-size", "0"]} if has_logs() else {"this essa": []}
    clusters = {name: Cluster(args.engine, extra) for name, extra in flags.items()}
    connections = {}
    try:
        for name, c in clusters.items():
            connections[name] = c.connect()
        return measure(connections, args)
    finally:
        for connection in connections.values():
            connection.close()
        for c in clusters.values():
            c.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("embedded", "cluster", "both"), default="both")
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    args = parser.parse_args()
    report: dict = {"engine": args.engine, "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "logs": has_logs(), "load_avg_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as home:
        os.environ["ESSA_HOME"] = home
        if args.mode in ("embedded", "both"):
            report["embedded"] = embedded(args)
        if args.mode in ("cluster", "both"):
            report["cluster"] = cluster(args)
    report["load_avg_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
