"""The cost of keeping calls' output (``essa logs``); prints JSON.

Two functions of one module (:mod:`essa.testing.printing`), called by
deployment name through the public API (as HTTP and Python callers do, so
nobody reads the output as it is written):

- ``echo``: an 8-byte echo that prints nothing;
- ``say``: the same echo, printing one line to stdout per call.

Two measures per variant, in rounds that alternate between the functions
and, where this essa keeps logs, between a runtime (or cluster) keeping them
(the default bounds) and one keeping none (``--log-size 0``), each going
first in turn, so every variant sees the same machine load:

- ``cpu_us_per_call``: CPU time of the process that runs the calls (this
  one embedded, the executor process on a cluster) per call, ``--calls``
  sequential calls per round; the median and the least of the rounds. What
  a call costs, which other work on a busy machine disturbs far less than
  throughput (it still inflates it: two cores shared, caches shared; the
  least of many rounds is the least disturbed);
- ``calls_per_s``: throughput from ``--clients`` threads for ``--seconds``
  per round (median); on a shared machine it swings with the load.

Derived: ``silent_logs_cost_pct`` (what ``echo`` loses with logs on; target
at most 3 %) and ``printing_keeps_pct`` (``say`` with logs on against
``echo`` with logs on; target at least 80 %), by CPU (least and median) and
by throughput.

On an essa without logs (to measure "before"), only the ``echo``/``say``
rounds run. Where it has them, ``log_book_us`` adds what the executor's log
book itself costs per call, measured alone (no engine, no transport): a
call that prints nothing, and one that prints one line (the best of
``--rounds`` rounds of 20,000).

Modes: ``embedded`` (this process, memory store, 2 executors) and
``cluster`` (a scheduler and one executor process per variant, on loopback).

Usage: python bench/logs.py [--mode embedded|cluster|both] [--engine wasmtime] [--rounds 30] [--calls 200]
       [--seconds 2] [--clients 8]
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
from essa.testing.printing import printing_module  # noqa: E402

ARGS = b"12345678"
FUNCTIONS = ("echo", "say")


def has_logs() -> bool:
    try:
        from essa.api import LogBounds  # noqa: F401
    except ImportError:
        return False
    return True


def process_cpu(pid: int | None) -> float:
    """CPU seconds used so far by process ``pid`` (``None``: this one), to the nanosecond.

    Another process's: the sum over its threads of ``/proc/PID/task/TID/schedstat``
    (``/proc/PID/stat`` counts in 10 ms ticks, too coarse for a few hundred calls).
    """
    if pid is None:
        return time.process_time()
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            pass
    return total / 1e9


def cpu_per_call(connection, function: str, calls: int, pid: int | None) -> float:
    """CPU seconds per call of the process running the calls, over ``calls`` sequential calls."""
    started = process_cpu(pid)
    for _ in range(calls):
        if connection.call("bench", function, ARGS, timeout=60) != ARGS:
            raise SystemExit(f"{function} answered wrongly")
    return (process_cpu(pid) - started) / calls


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
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"calls failed: {errors[0]}")
    return sum(done) / elapsed


def measure(variants: dict, pids: dict, args) -> dict:
    """Alternate rounds over ``variants`` (name -> connection) x the two functions."""
    wasm = printing_module()
    for connection in variants.values():
        connection.deploy(wasm, name="bench")
        for function in FUNCTIONS:  # warm: compiled, threads started
            for _ in range(300):
                connection.call("bench", function, ARGS)
    cpu: dict[str, list[float]] = {}
    rate: dict[str, list[float]] = {}
    order = [(variant, function) for variant in variants for function in FUNCTIONS]
    for round_ in range(args.rounds):
        shift = round_ % len(order)  # each goes first in turn: no place in the order is favoured
        for variant, function in order[shift:] + order[:shift]:
            name = f"{function} {variant}"
            cpu.setdefault(name, []).append(cpu_per_call(variants[variant], function, args.calls, pids[variant]))
            if args.seconds > 0:
                rate.setdefault(name, []).append(throughput(variants[variant], function, args.seconds, args.clients))
    result: dict = {}
    for name in cpu:
        result[name] = {"cpu_us_per_call": {"least": round(min(cpu[name]) * 1e6, 1),
                                            "median": round(statistics.median(cpu[name]) * 1e6, 1)}}
        if name in rate:
            result[name]["calls_per_s"] = round(statistics.median(rate[name]))
    on = "logs on" if "logs on" in variants else "this essa"

    def derived(kind: str, values: dict[str, float], higher_is_better: bool) -> None:
        def share(a: str, b: str) -> float:  # a's throughput as a share of b's
            return values[a] / values[b] if higher_is_better else values[b] / values[a]

        result[f"printing_keeps_pct_by_{kind}"] = round(100 * share(f"say {on}", f"echo {on}"), 1)
        if "logs off" in variants:
            result[f"silent_logs_cost_pct_by_{kind}"] = round(100 * (1 - share("echo logs on", "echo logs off")), 1)
            result[f"printing_logs_cost_pct_by_{kind}"] = round(100 * (1 - share("say logs on", "say logs off")), 1)

    derived("cpu_least", {k: min(v) for k, v in cpu.items()}, higher_is_better=False)
    derived("cpu_median", {k: statistics.median(v) for k, v in cpu.items()}, higher_is_better=False)
    if rate:
        derived("throughput", {k: statistics.median(v) for k, v in rate.items()}, higher_is_better=True)
    return result


def log_book(rounds: int) -> dict:
    """Microseconds the log book adds to a call printing nothing, and to one printing a line (best round)."""
    from essa.cluster.logbook import LogBook

    class Nowhere:
        def write(self, stream: int, data: bytes) -> None:
            pass

    book, out = LogBook("bench"), Nowhere()
    request = {"deployment": "bench", "namespace": "bench", "version": 1, "function": "__essa_wrapper__say",
               "id": "bench-caller/1"}

    def silent() -> None:
        log = book.call_log(request, "0", out)
        log.close()

    def one_line() -> None:
        log = book.call_log(request, "0", out)
        log.write(1, b"said 12345678\n")
        log.close()

    result = {}
    for name, call in (("silent_call", silent), ("one_line_call", one_line)):
        best = float("inf")
        for _ in range(max(3, rounds // 3)):
            started = time.perf_counter()
            for _ in range(20_000):
                call()
            best = min(best, (time.perf_counter() - started) / 20_000)
        result[name] = round(best * 1e6, 2)
    return result


def embedded(args) -> dict:
    import essa

    if not has_logs():
        with essa.connect(engine=args.engine, store="memory", executors=2) as connection:
            return measure({"this essa": connection}, {"this essa": None}, args)
    from essa.api import LogBounds

    with essa.connect(engine=args.engine, store="memory", executors=2) as on, \
            essa.connect(engine=args.engine, store="memory", executors=2, logs=LogBounds(deployment=0)) as off:
        return measure({"logs on": on, "logs off": off}, {"logs on": None, "logs off": None}, args)


class Cluster:
    """A scheduler and one executor process (with ``executor_flags``), on loopback."""

    def __init__(self, engine: str, executor_flags: list[str]) -> None:
        self.endpoint = f"tcp/127.0.0.1:{free_port()}"
        command = [sys.executable, "-m", "essa", "--engine", engine, "--store", "memory"]
        self.procs = [subprocess.Popen([*command, "scheduler", "--listen", self.endpoint], stderr=subprocess.DEVNULL)]
        self.executor = subprocess.Popen([*command, "executor", "0", "--connect", self.endpoint, "--listen",
                                          f"tcp/127.0.0.1:{free_port()}", *executor_flags], stderr=subprocess.DEVNULL)
        self.procs.append(self.executor)

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
        return measure(connections, {name: c.executor.pid for name, c in clusters.items()}, args)
    finally:
        for connection in connections.values():
            connection.close()
        for c in clusters.values():
            c.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("embedded", "cluster", "both"), default="both")
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200, help="sequential calls per round (CPU per call)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of throughput per round (0: none)")
    parser.add_argument("--clients", type=int, default=8, help="client threads for throughput")
    args = parser.parse_args()
    report: dict = {"engine": args.engine, "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "logs": has_logs(), "load_avg_before": round(os.getloadavg()[0], 2)}
    if has_logs():
        report["log_book_us"] = log_book(args.rounds)
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
