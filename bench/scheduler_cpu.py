"""Scheduler CPU per placed call, with one or several schedulers; prints JSON.

No Wasm runs: the executors are stand-ins (``--role executor``, processes of
this script) that answer every call the moment it arrives, with a done
notice to the scheduler that placed it (batched, as real executors do); the load comes
from ``--generators`` processes (``--role load``), each keeping ``--window``
calls in flight through a :class:`essa.cluster.calls.Caller` (a caller
spreads its calls over the live schedulers). So the scheduler is the part
under test: for each ``--schedulers`` count (default: 1, then 2, alternating
for ``--rounds`` rounds) the document gives the calls per second the whole
cluster answered over ``--seconds`` and the microseconds of scheduler CPU
(user + system, from /proc) per placed call, and the CPU every kind of
process used (``cores``: CPU seconds per second), since on a small machine
the stand-ins and the generators compete with the schedulers for cores.

Usage: python bench/scheduler_cpu.py [--schedulers 1 2] [--executors 4] [--generators 2] [--window 64]
       [--seconds 10] [--rounds 2]
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
import time
from pathlib import Path

from essa.testing.ports import free_port
from essa.testing.resources import cpu_seconds

HERE = Path(__file__).resolve()


def _transport(connect: list[str]):
    from essa.cluster.processes import open_transport

    return open_transport([f"tcp/127.0.0.1:{free_port()}"], connect)


def run_executor(connect: list[str], executor_id: str) -> None:
    """A stand-in executor: answers each call at once, tells the placing scheduler, says it runs nothing."""
    from essa.cluster import topics

    transport = _transport(connect)
    try:  # as real executors do: done notices in batches, to the scheduler that placed the call
        from essa.cluster.calls import IdBatches

        done = IdBatches(transport, "done", topics.scheduler_done, lambda: {"executor": executor_id, "load": 0},
                         linger=0.005)
    except ImportError:  # before issue 22: one scheduler, one notice per call
        done = None

    def on_call(request: dict) -> None:
        transport.publish(request["reply_to"], {"id": request["id"], "code": 0, "value": request["args"],
                                                "message": ""})
        if done is not None:
            done.add(request["id"], request["scheduler"])
        else:
            transport.publish(topics.SCHEDULER_DONE, {"id": request["id"], "executor": executor_id})

    keep = [transport.subscribe(topics.executor_calls(executor_id), on_call)]
    if hasattr(topics, "executor_find"):
        keep.append(transport.serve(topics.executor_find(executor_id),
                                    lambda _q: {"executor": executor_id, "running": [], "finished": []}))
    keep.append(transport.declare_token(topics.live_executor(executor_id)))
    sys.stdin.read()  # until the bench closes our stdin


def run_load(connect: list[str], window: int) -> None:
    """Keeps ``window`` calls in flight; prints the count of answered calls on each line read from stdin."""
    from essa.cluster.calls import Caller, call_request

    transport = _transport(connect)
    caller = Caller(transport, "load")
    request = call_request("m" * 64, "__essa_wrapper__echo", b"12345678", "bench", "bench")
    answered = [0]
    failed = [0]

    def again(future) -> None:
        if future.result()["code"] == 0:
            answered[0] += 1
        else:
            failed[0] += 1
        caller.start(request).add_done_callback(again)

    deadline = time.monotonic() + 60
    while not caller.sees_scheduler and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(window):
        caller.start(request).add_done_callback(again)
    for _line in sys.stdin:
        print(json.dumps({"answered": answered[0], "failed": failed[0]}), flush=True)


def measure(args: argparse.Namespace, schedulers: int) -> dict:
    endpoints = [f"tcp/127.0.0.1:{free_port()}" for _ in range(schedulers)]
    connect = [e for endpoint in endpoints for e in ("--connect", endpoint)]
    procs: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ESSA_HOME": home}
        try:
            for i, endpoint in enumerate(endpoints):
                first = [] if i == 0 else ["--connect", endpoints[0]]
                procs[f"scheduler-{i}"] = subprocess.Popen(
                    [sys.executable, "-m", "essa", "scheduler", "--listen", endpoint, *first], env=env,
                    stderr=subprocess.DEVNULL)
            for i in range(args.executors):
                procs[f"executor-{i}"] = subprocess.Popen(
                    [sys.executable, str(HERE), "--role", "executor", "--id", str(i), *connect], env=env,
                    stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
            time.sleep(2)  # the executors join (no readiness signal matters: load starts once a scheduler is seen)
            loads = []
            for i in range(args.generators):
                procs[f"load-{i}"] = proc = subprocess.Popen(
                    [sys.executable, str(HERE), "--role", "load", "--window", str(args.window), *connect], env=env,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                loads.append(proc)

            def mark() -> tuple[float, int, int, dict[str, float]]:
                for proc in loads:
                    proc.stdin.write("mark\n")
                    proc.stdin.flush()
                counts = [json.loads(proc.stdout.readline()) for proc in loads]
                cpu = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
                return (time.monotonic(), sum(c["answered"] for c in counts), sum(c["failed"] for c in counts), cpu)

            time.sleep(args.warmup)
            t0, n0, f0, cpu0 = mark()
            time.sleep(args.seconds)
            t1, n1, f1, cpu1 = mark()
        finally:
            for name, proc in procs.items():
                if proc.stdin:
                    proc.stdin.close()
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    elapsed, calls = t1 - t0, n1 - n0
    used = {name: cpu1[name] - cpu0[name] for name in cpu0}
    scheduler_cpu = sum(v for k, v in used.items() if k.startswith("scheduler"))

    def cores(kind: str) -> float:
        return round(sum(v for k, v in used.items() if k.startswith(kind)) / elapsed, 2)

    return {
        "schedulers": schedulers,
        "calls_per_s": round(calls / elapsed, 1),
        "failed": f1 - f0,
        "scheduler_cpu_us_per_call": round(scheduler_cpu / max(calls, 1) * 1e6, 1),
        "cores": {"schedulers": cores("scheduler"), "executors": cores("executor"), "load": cores("load")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["bench", "executor", "load"], default="bench")
    parser.add_argument("--id", default="0")
    parser.add_argument("--connect", action="append", default=[])
    parser.add_argument("--schedulers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--executors", type=int, default=4)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.role == "executor":
        run_executor(args.connect, args.id)
        return
    if args.role == "load":
        run_load(args.connect, args.window)
        return
    rounds = {n: [] for n in args.schedulers}
    for _ in range(args.rounds):
        for n in args.schedulers:
            rounds[n].append(measure(args, n))
    medians = {
        str(n): {
            "calls_per_s": statistics.median(r["calls_per_s"] for r in results),
            "scheduler_cpu_us_per_call": statistics.median(r["scheduler_cpu_us_per_call"] for r in results),
            "failed": sum(r["failed"] for r in results),
        }
        for n, results in rounds.items()
    }
    print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(), "executors": args.executors,
                      "generators": args.generators, "window": args.window, "seconds": args.seconds,
                      "medians": medians, "each_round": {str(n): r for n, r in rounds.items()}}, indent=2))


if __name__ == "__main__":
    main()
