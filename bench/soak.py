"""Soak benchmark: one executor process serving a million calls, its resources sampled.

An executor must serve calls for weeks. This serves ``--echo-calls`` 8-byte
echo calls, ``--say-calls`` calls of a function that prints one line per
call (kept in the executor's logs, :mod:`essa.cluster.logbook`, within their
bounds) and, interleaved with them, runs of ``examples/test-function.wasm``
until their remote calls reach ``--test-function-calls``, from ``--clients``
client threads. The echo and printing functions are
:mod:`essa.testing.printing`'s. Every ``--interval`` seconds it samples the executor
process's RSS, memory mappings, open descriptors and threads
(:mod:`essa.testing.resources`) and prints the sample as one JSON line; at the
end it prints a JSON summary:

- ``flat``: resources during the first 100,000 calls after warm-up
  (``--warm-up`` calls) against the last 100,000 (means of their samples);
  the target is RSS within 5 %, and mappings, descriptors and threads not
  growing. RSS is also given in its two parts: anonymous memory (what a
  leak grows: ``rss_anon_within_5pct``) and file-backed pages (code, and the
  LMDB file's pages as calls touch them);
- ``errors``: calls that failed or gave a wrong answer (the target is 0).

Modes:

- ``embedded``: an :class:`essa.runtime.EmbeddedRuntime` in this process, with
  ``--executors`` executors (the executor process is this one);
- ``cluster``: a scheduler and ONE ``essa executor`` process on loopback; the
  clients run in this process, and the executor process is sampled.

Calls go through the public API (:func:`essa.connect`): echo to a deployment,
test-function runs in a fresh namespace each, whose keys are deleted after
the run (so the state does not grow with the runs).

Usage: python bench/soak.py --mode embedded|cluster [--engine wasmtime] [--echo-calls 1000000]
       [--say-calls 1000000] [--test-function-calls 100000] [--interval 10] [--clients 8]
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

from essa.testing.ports import free_port
from essa.testing.printing import printing_module

ROOT = Path(__file__).resolve().parents[1]
TEST_FUNCTION = ROOT / "examples" / "test-function.wasm"
#: Remote calls (and the run itself) one run of the test function makes.
CALLS_PER_TEST_FUNCTION_RUN = 133
WINDOW = 100_000


class Workload:
    """Hands out echo calls, printing calls and test-function runs, interleaved, until every total is reached."""

    def __init__(self, echo_calls: int, test_function_calls: int, say_calls: int = 0) -> None:
        runs = -(-test_function_calls // CALLS_PER_TEST_FUNCTION_RUN)
        self.total = {"echo": echo_calls, "say": say_calls, "run": runs}
        self.left = dict(self.total)
        self.calls_done = 0
        self.errors = 0
        self.first_error = ""
        self._lock = threading.Lock()

    def next(self) -> str | None:
        """The next piece of work: each kind keeps the same share of the work from the first call to the
        last (so the first and the last windows see the same mix): the one furthest behind goes next."""
        with self._lock:
            waiting = [kind for kind, left in self.left.items() if left]
            if not waiting:
                return None
            kind = min(waiting, key=lambda k: (self.total[k] - self.left[k]) / self.total[k])
            self.left[kind] -= 1
            return kind

    def done(self, calls: int, error: str = "") -> None:
        with self._lock:
            self.calls_done += calls
            if error:
                self.errors += 1
                self.first_error = self.first_error or error


class Output:
    """A run's guest output, kept to compare with the expected output."""

    def __init__(self) -> None:
        self.chunks: dict[int, list[bytes]] = {1: [], 2: []}

    def __call__(self, message) -> None:
        self.chunks.setdefault(message["stream"], []).append(message["data"])

    @property
    def stdout(self) -> str:
        return b"".join(self.chunks[1]).decode(errors="replace")

    @property
    def stderr(self) -> str:
        return b"".join(self.chunks[2]).decode(errors="replace")


def serve(connection, test_function: bytes, workload: Workload) -> None:
    """One client thread: takes work until none is left (through the public API, as users do)."""
    import uuid

    from essa.testing import TEST_FUNCTION_OUTPUT

    while (kind := workload.next()) is not None:
        try:
            if kind in ("echo", "say"):
                value = connection.call("echo", kind, b"12345678", timeout=120)
                workload.done(1, "" if value == b"12345678" else f"{kind}: {value!r}")
            else:
                # A fresh namespace per run (its output depends on it), deleted afterwards:
                # the state does not grow with the number of runs.
                output, namespace = Output(), f"soak-{uuid.uuid4().hex[:16]}"
                status = connection.run(test_function, namespace=namespace, output=output, timeout=300)
                state = connection.state(namespace)
                for key in state.keys():
                    state.delete(key)
                ok = status == 0 and output.stdout == TEST_FUNCTION_OUTPUT
                workload.done(CALLS_PER_TEST_FUNCTION_RUN, "" if ok else f"test function: status {status}, {output.stderr!r}")
        except Exception as exc:  # counted, and the soak goes on
            workload.done(1, f"{type(exc).__name__}: {exc}")


def soak(connection, pid: int | str, args) -> dict:
    """Run the workload through ``connection``; sample process ``pid``; return the summary."""
    from essa.testing.resources import sample

    connection.deploy(printing_module(), name="echo")
    test_function = TEST_FUNCTION.read_bytes()
    workload = Workload(args.echo_calls, args.test_function_calls, args.say_calls)
    threads = [threading.Thread(target=serve, args=(connection, test_function, workload), daemon=True)
               for _ in range(args.clients)]
    samples = []
    started = time.monotonic()

    def take_sample() -> None:
        entry = {"t": round(time.monotonic() - started, 1), "calls": workload.calls_done,
                 "errors": workload.errors, **sample(pid).as_dict()}
        samples.append(entry)
        print(json.dumps(entry), flush=True)

    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(args.interval):
            take_sample()

    take_sample()
    sampling = threading.Thread(target=sampler, daemon=True)
    sampling.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    sampling.join()
    take_sample()
    elapsed = time.monotonic() - started
    kept = [a.get("logs") for a in connection.status() if a.get("role") == "executor"]
    return {
        "logs_kept": kept,
        "calls": workload.calls_done,
        "seconds": round(elapsed, 1),
        "calls_per_s": round(workload.calls_done / elapsed, 1),
        "errors": workload.errors,
        "first_error": workload.first_error,
        "flat": flatness(samples, args.warm_up),
        "samples": len(samples),
    }


def flatness(samples: list[dict], warm_up: int) -> dict:
    """The first 100,000 calls after warm-up against the last 100,000: mean of the samples in each."""
    total = samples[-1]["calls"]
    window = min(WINDOW, (total - warm_up) // 2)  # short runs (trying the script out) compare halves
    first = [s for s in samples if warm_up <= s["calls"] <= warm_up + window]
    last = [s for s in samples if s["calls"] >= total - window]
    if not first or not last:
        return {"error": "too few samples for the windows; lower --interval or raise the call counts"}
    result: dict = {"first_window_calls": [warm_up, warm_up + window], "last_window_calls": [total - window, total]}
    for key in ("rss", "rss_anon", "rss_file", "mappings", "fds", "threads", "vsz"):
        a, b = statistics.mean(s[key] for s in first), statistics.mean(s[key] for s in last)
        result[key] = {"first": round(a), "last": round(b), "growth_pct": round(100 * (b - a) / a, 2)}
    result["rss_within_5pct"] = abs(result["rss"]["growth_pct"]) <= 5
    # Anonymous memory is what a leak grows; file-backed pages also grow as the store's data does.
    result["rss_anon_within_5pct"] = abs(result["rss_anon"]["growth_pct"]) <= 5
    return result


def embedded(args) -> dict:
    import essa

    with essa.connect(engine=args.engine, store=args.store, executors=args.executors) as connection:
        return soak(connection, "self", args)


def cluster(args) -> dict:
    import essa

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "essa", "--engine", args.engine, "--store", args.store]
    procs = [subprocess.Popen([*command, "scheduler", "--listen", endpoint], stderr=subprocess.DEVNULL)]
    executor = subprocess.Popen([*command, "executor", "0", "--connect", endpoint, "--listen",
                                 f"tcp/127.0.0.1:{free_port()}"], stderr=subprocess.DEVNULL)
    procs.append(executor)
    try:
        with essa.connect(endpoint, timeout=60, wait=True) as connection:
            deadline = time.monotonic() + 60
            while True:
                try:
                    connection.deployments()  # answered by the executor: it is up
                    break
                except essa.EssaError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the executor did not join within 60 s") from None
                    time.sleep(0.2)
            return soak(connection, executor.pid, args)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("embedded", "cluster"), default="embedded")
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--store", default="lmdb", help="the executor's store (the test function keeps state)")
    parser.add_argument("--echo-calls", type=int, default=1_000_000)
    parser.add_argument("--say-calls", type=int, default=1_000_000, help="calls of a function printing a line")
    parser.add_argument("--test-function-calls", type=int, default=100_000)
    parser.add_argument("--warm-up", type=int, default=100_000, help="calls before the first window")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--executors", type=int, default=2, help="executors of the embedded runtime")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["ESSA_HOME"] = home
        summary = embedded(args) if args.mode == "embedded" else cluster(args)
    print(json.dumps({"mode": args.mode, "engine": args.engine, "store": args.store,
                      "python": sys.version.split()[0], "cpus": os.cpu_count(), **summary}, indent=2))


if __name__ == "__main__":
    main()
