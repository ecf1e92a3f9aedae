"""DAG benchmark on a 2-executor cluster over zenoh on loopback; prints one JSON document.

Starts a scheduler and two executors as separate processes, deploys
:func:`essa.testing.dag_modules.tags_module` (functions that append a
letter to their arguments) and, from this process (a client of the public
API), measures p50/p99 over ``--calls`` sequential calls of each, in
alternating order in one run:

- ``one_call``: one call of ``tag_a`` (the latency of one stage);
- ``dag_one``: the DAG of the one stage ``tag_a`` (the same, as a DAG);
- ``three_calls``: three sequential client calls, each taking the previous
  result (``tag_a``, ``tag_b``, ``tag_c``): what a 3-stage pipeline costs
  without DAGs;
- ``dag_chain3``: the DAG ``tag_a -> tag_b -> tag_c``, one call;
- ``dag_fan32``: the DAG ``tag_a`` -> 32 branches -> ``echo`` (fan-out, fan-in).

Targets (issue 23): ``dag_chain3`` p50 <= 1.2 ms, and below ``three_calls``;
``dag_fan32`` p50 <= 3x ``one_call`` (and ``dag_one``).

Then, per workload, ``cpu_ms_per_call``: the CPU time (user + system) each
process (scheduler, executors, this client) spent per call over ``--calls``
more calls of that workload alone: what the latencies cost, and a figure a
busy machine disturbs far less than wall-clock latency.

``--consistency LEVEL`` runs every call and DAG call at that level (causal:
the DAGs' stage inputs carry their dependencies).

Usage: python bench/dags.py [--engine wasmtime] [--calls 1000] [--workers 2] [--consistency LEVEL]
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

import essa
from essa.testing.dag_modules import TAGS, tags_module
from essa.testing.ports import free_port
from essa.testing.resources import cpu_seconds


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1e3, 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="threads per executor")
    parser.add_argument("--width", type=int, default=32, help="branches of the fan-out DAG (at most 35)")
    parser.add_argument("--consistency", default=None, help="the level of every call and DAG call")
    args = parser.parse_args()
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "essa", "--engine", args.engine]
    result: dict = {"benchmark": "dags", "engine": args.engine, "python": sys.version.split()[0],
                    "cpus": os.cpu_count(), "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
                    "config": {"calls": args.calls, "workers": args.workers, "width": args.width,
                               "consistency": args.consistency}}
    level = args.consistency
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ESSA_HOME": home}
        procs = [subprocess.Popen([*command, "scheduler", "--listen", endpoint], env=env, stderr=subprocess.DEVNULL)]
        for i in range(2):
            procs.append(subprocess.Popen([*command, "executor", str(i), "--connect", endpoint, "--workers",
                                           str(args.workers), "--listen", f"tcp/127.0.0.1:{free_port()}"],
                                          env=env, stderr=subprocess.DEVNULL))
        try:
            with essa.connect(endpoint, timeout=90, wait=True) as es:  # the scheduler may not listen yet
                deadline = time.monotonic() + 90
                while len([a for a in es.status() if a.get("role") == "executor"]) < 2:
                    if time.monotonic() > deadline:
                        raise SystemExit("the executors did not join within 90 s")
                    time.sleep(0.1)
                es.deploy(tags_module(), name="t")
                es.register_dag("one", ["t.tag_a"], [])
                es.register_dag("chain3", ["t.tag_a", "t.tag_b", "t.tag_c"],
                                [("t.tag_a", "t.tag_b"), ("t.tag_b", "t.tag_c")])
                branches = [f"t.tag_{c}" for c in TAGS[1:args.width + 1]]
                es.register_dag("fan", ["t.tag_a", *branches, "t.echo"],
                                [("t.tag_a", b) for b in branches] + [(b, "t.echo") for b in branches])
                fan_expected = b"".join(b"xa" + b[-1:].encode() for b in branches)

                def one_call() -> None:
                    assert es.call("t", "tag_a", b"x", consistency=level) == b"xa"

                def dag_one() -> None:
                    assert es.call_dag("one", b"x", consistency=level) == b"xa"

                def three_calls() -> None:
                    value = b"x"
                    for function in ("tag_a", "tag_b", "tag_c"):
                        value = es.call("t", function, value, consistency=level)
                    assert value == b"xabc"

                def dag_chain3() -> None:
                    assert es.call_dag("chain3", b"x", consistency=level) == b"xabc"

                def dag_fan() -> None:
                    assert es.call_dag("fan", b"x", consistency=level) == fan_expected

                workloads = {"one_call": one_call, "dag_one": dag_one, "three_calls": three_calls, "dag_chain3": dag_chain3,
                             f"dag_fan{args.width}": dag_fan}
                for run in workloads.values():  # warm every executor and cache
                    for _ in range(50):
                        run()
                samples: dict[str, list[float]] = {name: [] for name in workloads}
                for _ in range(args.calls):
                    for name, run in workloads.items():
                        started = time.perf_counter()
                        run()
                        samples[name].append(time.perf_counter() - started)
                cpu_per_call = {}
                roles = ["scheduler", "executor-0", "executor-1"]
                for name, run in workloads.items():
                    before = [cpu_seconds(proc.pid) for proc in procs] + [time.process_time()]
                    for _ in range(args.calls):
                        run()
                    after = [cpu_seconds(proc.pid) for proc in procs] + [time.process_time()]
                    cpu_per_call[name] = {role: round((a - b) / args.calls * 1e3, 3)
                                          for role, a, b in zip([*roles, "client"], after, before)}
                ran = {a["id"]: a["calls"] for a in es.status() if a.get("role") == "executor"}
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
    result["latency"] = {name: percentiles(s) for name, s in samples.items()}
    p50 = {name: r["p50_ms"] for name, r in result["latency"].items()}
    result["ratios"] = {
        "dag_chain3_over_three_calls": round(p50["dag_chain3"] / p50["three_calls"], 3),
        f"dag_fan{args.width}_over_one_call": round(p50[f"dag_fan{args.width}"] / p50["one_call"], 3),
        f"dag_fan{args.width}_over_dag_one": round(p50[f"dag_fan{args.width}"] / p50["dag_one"], 3),
    }
    result["cpu_ms_per_call"] = cpu_per_call
    result["calls_by_executor"] = ran
    result["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
