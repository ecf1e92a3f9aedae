"""The CPU of a fan-out DAG call's two hot paths, in this one process (no zenoh, no other process); prints JSON.

``bench/dags.py`` measures latency on a real cluster, where a busy machine
moves the figures by a fifth from run to run. This one isolates the code:

- ``scheduler``: :meth:`essa.cluster.dag_runs.DagRuns.place` of a width-``--width``
  fan-out/fan-in DAG call (one source, the branches, one sink) on two
  executors, from the request's msgpack bytes (as it arrives) to the
  source's input message packed (a stand-in transport packs what is
  published): microseconds per DAG call, and of its parts
  (:func:`essa.cluster.dags.check_plan`, unpacking the request, placing the
  stages, sending the inputs);
- ``executor``: one executor (the configured engine, a memory store, a local
  transport) given the input message of the branches a fan-out places on
  it (half of them; the sink is on another executor, whose stage topic this
  process reads): microseconds of CPU (this process: user + system) per
  message and per branch stage, from the message's msgpack bytes to its
  branches' results packed on their way to the sink.

The garbage collector is set up as those processes set it up
(:func:`essa.util.memory.tune_collector`), where the code has it.

Usage: python bench/dag_cpu.py [--engine wasmtime] [--width 32] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import timeit

import msgpack

import essa.util.memory
from essa.cluster import topics
from essa.cluster.calls import Caller, call_request
from essa.cluster.dags import call_plan, check_dag, check_plan
from essa.cluster.deployments import Deployment
from essa.cluster.embedded import open_engine, open_store
from essa.cluster.executor import Executor
from essa.cluster.programs import ProgramCache, publish_module
from essa.cluster.scheduler import Scheduler
from essa.placement import ExecutorState
from essa.testing.dag_modules import TAGS, tags_module
from essa.transport.local import LocalTransport


class PackingTransport:
    """A stand-in transport: it packs what is published, as zenoh's would, and drops it."""

    def publish(self, topic: str, message: dict, patient: bool = False) -> None:
        msgpack.packb(message, use_bin_type=True)

    def subscribe(self, *args) -> None:
        pass


def best_us(fn, number: int) -> float:
    """The best of five timings of ``fn``, in microseconds per run (with the garbage collector on, as it is in
    a scheduler: timeit turns it off by default)."""
    return round(min(timeit.repeat(fn, setup=_COLLECTING, number=number, repeat=5)) / number * 1e6, 1)


_COLLECTING = "import gc; gc.enable()"


def scheduler_cpu(width: int, calls: int) -> dict:
    scheduler = Scheduler(PackingTransport(), scheduler_id="s0")
    for i in range(2):
        scheduler.executors[str(i)] = ExecutorState(str(i))
    functions = tuple(["tag_" + c for c in TAGS] + ["echo"])
    branches = [f"t.tag_{c}" for c in TAGS[1:width + 1]]
    dag = check_dag("fan", ["t.tag_a", *branches, "t.echo"],
                    [("t.tag_a", b) for b in branches] + [(b, "t.echo") for b in branches])
    plan = call_plan(dag, lambda name: Deployment(name, 1, "m" * 64, 10, functions, 0))
    requests = [msgpack.packb({"id": f"c{n}", "reply_to": "essa/inbox/bench/1", "clock": time.time_ns(),
                               **call_request("m" * 64, "tag_a", b"x", "t", "run", dag=plan)}, use_bin_type=True)
                for n in range(calls)]
    dags = scheduler._dags

    def reset() -> None:
        dags._runs.clear()
        for state in scheduler.executors.values():
            state.in_flight = 0

    def place_all() -> None:
        for raw in requests:
            scheduler.place(msgpack.unpackb(raw, raw=False))
        reset()

    request = msgpack.unpackb(requests[0], raw=False)

    def assign() -> None:
        dags._assign(request, plan["stages"])
        reset()

    per_call = min(timeit.repeat(place_all, setup=_COLLECTING, number=1, repeat=5)) / calls * 1e6
    return {"us_per_dag_call": round(per_call, 1), "check_plan_us": best_us(lambda: check_plan(plan), 500),
            "unpack_request_us": best_us(lambda: msgpack.unpackb(requests[0], raw=False), 500),
            "assign_us": best_us(assign, 500), "stages": len(plan["stages"])}


def executor_cpu(engine: str, width: int, calls: int) -> dict:
    transport = LocalTransport()
    store = open_store("memory")
    caller = Caller(transport, "executor")
    executor = Executor("x", ProgramCache(open_engine(engine), store), store, transport, caller, workers=2)
    executor.start()
    module = publish_module(store, tags_module())
    passed_on = threading.Event()
    transport.subscribe(topics.executor_stages("y"), lambda message: passed_on.set())
    sink = width + 1
    stages = {b: {"name": f"t.tag_{TAGS[b]}", "module": module, "function": f"__essa_wrapper__tag_{TAGS[b]}",
                  "namespace": "t", "deployment": "t", "parts": 1, "next": [[sink, b - 1]], "executor": "x"}
              for b in range(1, width + 1, 2)}  # the branches a 2-executor fan-out places here
    stages[sink] = {"name": "t.echo", "module": module, "function": "__essa_wrapper__echo", "namespace": "t",
                    "deployment": "t", "parts": width, "next": [], "executor": "y"}
    branches = len(stages) - 1

    def message(n: int) -> bytes:
        return msgpack.packb({"dag": f"d{n}", "reply_to": "essa/inbox/bench/1", "run": "run", "name": "fan",
                              "scheduler": "s0", "stages": [[i, s] for i, s in stages.items()],
                              "inputs": [[b, 0, b"xa"] for b in stages if b != sink]}, use_bin_type=True)

    def run(first: int, count: int) -> float:
        messages = [message(n) for n in range(first, first + count)]
        started = time.process_time()
        for raw in messages:
            passed_on.clear()
            executor._stages.receive(msgpack.unpackb(raw, raw=False))
            if not passed_on.wait(60):
                raise SystemExit("the executor passed no result on within 60 s")
        return (time.process_time() - started) / count * 1e6

    try:
        run(0, 200)  # compiled, warm
        rounds = [run(10_000 * (r + 1), calls // 4) for r in range(5)]
    finally:
        executor.stop()
        caller.close()
        store.close()
    per_message = statistics.median(rounds)
    return {"us_cpu_per_message": round(per_message, 1), "branches_per_message": branches,
            "us_cpu_per_stage": round(per_message / branches, 1), "rounds_us_per_message": [round(r) for r in rounds]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--width", type=int, default=32, help="branches of the fan-out DAG (at most 35)")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    # As in `essa scheduler` and `essa executor` (absent before essa.util.memory had it).
    tune_collector = getattr(essa.util.memory, "tune_collector", None)
    if tune_collector is not None:
        tune_collector()
    result = {"benchmark": "dag_cpu", "engine": args.engine, "python": sys.version.split()[0], "cpus": os.cpu_count(),
              "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
              "config": {"width": args.width, "calls": args.calls, "collector_tuned": tune_collector is not None},
              "scheduler": scheduler_cpu(args.width, args.calls),
              "executor": executor_cpu(args.engine, args.width, args.calls),
              "load_average_at_end": [round(x, 1) for x in os.getloadavg()]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
