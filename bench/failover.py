"""Failover under overload: calls through the public API while an executor is killed; prints JSON.

Starts a scheduler and two executors (``essa scheduler``, ``essa executor 0``,
``essa executor 1``) on loopback, deploys an 8-byte echo function, and from
this process (``essa.connect("tcp/...")``) starts ``--calls`` calls with
``Connection.call_async`` from ``--threads`` threads, each keeping at most
``--window`` of its calls unanswered (default: all of them, started at
once; the cluster is overloaded and the replies queue up).
Each call echoes its own number (repeated to ``--size`` bytes), so a wrong
answer is caught; ``--answer-ms`` is what each answer costs the client (a
client that processes its results: replies queue up on their way to it). Once
``--kill-at`` (a share) of the calls have answered (so calls are flowing: queued on
every executor, in transit and running), executor 1 is killed with SIGKILL
and started again. A round ends when every call has answered.

A warm-up round of the same load without a kill comes first (``warm_up``:
the scheduler's memory grows with the calls it tracks at once, up to a level
it then keeps), then ``--rounds`` rounds on the same cluster. Each reports:

- ``calls``, ``failed`` (calls that raised or answered wrongly), and
  ``failures``: the distinct failure messages with their counts;
- ``p50_ms``/``p99_ms``: from ``call_async`` to the answer;
- ``scheduler_rss_mib``: the scheduler's resident memory before the round
  and after it (once the scheduler tracks no call: ``in_flight``,
  ``unconfirmed`` and ``waiting`` of its status are 0);
- ``scheduler_tracked_after``: the scheduler's status counts after the round.

With ``--no-kill`` nothing is killed (the baseline).

Usage: python bench/failover.py [--calls 20000] [--threads 8] [--window N] [--kill-at 0.5] [--rounds 2] [--no-kill]
       [--size 8] [--answer-ms 0] [--logs DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from embedded import ECHO_WAT, percentiles

#: The scheduler's counts of the calls it tracks (``unconfirmed`` since calls are kept until their receipt).
TRACKED = ("in_flight", "unconfirmed", "waiting")
#: Longest a round may take, and a wait for the cluster to settle (seconds).
ROUND_DEADLINE = 900.0
SETTLE_DEADLINE = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A scheduler and two executor processes, their output in ``logs``."""

    def __init__(self, engine: str, workers: int, logs: Path) -> None:
        self.endpoint = f"tcp/127.0.0.1:{free_port()}"
        self.command = [sys.executable, "-m", "essa", "-v", "--engine", engine]
        self.workers = workers
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}
        self._spawn("scheduler", "scheduler", "--listen", self.endpoint)
        for executor in ("0", "1"):
            self.start_executor(executor)

    def _spawn(self, name: str, *args: str) -> None:
        with open(self.logs / f"{name}.log", "a") as log:
            self.procs[name] = subprocess.Popen([*self.command, *args], stdout=log, stderr=subprocess.STDOUT)

    def start_executor(self, executor: str) -> None:
        self._spawn(f"executor-{executor}", "executor", executor, "--connect", self.endpoint,
                    "--workers", str(self.workers))

    def kill_executor(self, executor: str) -> None:
        proc = self.procs[f"executor-{executor}"]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def scheduler_rss_mib(self) -> float:
        from essa.testing.resources import sample

        return round(sample(self.procs["scheduler"].pid).rss / (1 << 20), 1)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def scheduler_status(connection) -> dict:
    answers = [a for a in connection.status(timeout=2.0) if a.get("role") == "scheduler"]
    if not answers:
        raise RuntimeError("the scheduler did not answer a status query")
    return answers[0]


def wait_for(what: str, condition, deadline: float) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` at ``deadline`` (monotonic)."""
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"failover benchmark: {what} within the deadline")
        time.sleep(0.2)


def executors_seen(connection) -> int:
    return len(scheduler_status(connection)["executors"])


def settled(connection) -> bool:
    status = scheduler_status(connection)
    return all(status.get(key, 0) == 0 for key in TRACKED)


class Load:
    """``calls`` echo calls from ``threads`` threads, each with at most ``window`` unanswered."""

    def __init__(self, connection, args: argparse.Namespace) -> None:
        self.connection = connection
        self.calls = args.calls
        self.threads = args.threads
        self.window = args.window
        self.size = args.size
        self.answer_cost = args.answer_ms / 1e3
        self.latencies: list[float] = []
        self.failures: collections.Counter[str] = collections.Counter()
        self.answered = 0
        self._cond = threading.Condition()

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._submit, args=(i,), daemon=True) for i in range(self.threads)]
        for thread in threads:
            thread.start()
        return threads

    def _submit(self, index: int) -> None:
        window = threading.BoundedSemaphore(self.window)
        for number in range(index, self.calls, self.threads):
            window.acquire()
            args = struct.pack("<Q", number) * max(1, self.size // 8)
            started = time.perf_counter()
            try:
                future = self.connection.call_async("echo", "echo", args)
            except Exception as exc:  # counted like a failed call
                self._answered(None, args, started, exc, window)
                continue
            future.add_done_callback(lambda f, a=args, s=started: self._answered(f, a, s, None, window))

    def _answered(self, future, args: bytes, started: float, error: Exception | None, window) -> None:
        elapsed = time.perf_counter() - started
        if self.answer_cost:
            time.sleep(self.answer_cost)  # the client's work with the answer
        if error is None:
            error = future.exception()
        problem = None
        if error is not None:
            problem = str(error)
        elif future.result() != args:
            problem = "a wrong answer"
        with self._cond:
            self.latencies.append(elapsed)
            if problem is not None:
                self.failures[problem] += 1
            self.answered += 1
            self._cond.notify_all()
        window.release()

    def wait_answered(self, count: int, deadline: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.answered >= count, max(0.0, deadline - time.monotonic()))


def one_round(cluster: Cluster, connection, args: argparse.Namespace, kill: bool) -> dict:
    before = cluster.scheduler_rss_mib()
    load = Load(connection, args)
    deadline = time.monotonic() + ROUND_DEADLINE
    started = time.perf_counter()
    load.run()
    killed_at = None
    if kill:
        if not load.wait_answered(int(args.calls * args.kill_at), deadline):
            raise SystemExit("failover benchmark: calls did not flow")
        killed_at = load.answered
        cluster.kill_executor("1")
        cluster.start_executor("1")
    if not load.wait_answered(args.calls, deadline):
        raise SystemExit(f"failover benchmark: only {load.answered} of {args.calls} calls answered")
    elapsed = time.perf_counter() - started
    settle = time.monotonic() + SETTLE_DEADLINE
    wait_for("two executors joined", lambda: executors_seen(connection) == 2, settle)
    try:
        wait_for("the scheduler settled", lambda: settled(connection), settle)
    except SystemExit:
        pass  # reported below: what it still tracks
    status = scheduler_status(connection)
    return {
        "calls": args.calls,
        "failed": sum(load.failures.values()),
        "failures": dict(load.failures.most_common(5)),
        "killed_after_answers": killed_at,
        "seconds": round(elapsed, 2),
        "calls_per_s": round(args.calls / elapsed, 1),
        **{k: v for k, v in percentiles(load.latencies).items() if k in ("p50_ms", "p99_ms")},
        "scheduler_rss_mib": {"before": before, "after": cluster.scheduler_rss_mib()},
        "scheduler_tracked_after": {k: status[k] for k in TRACKED if k in status},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--window", type=int, help="unanswered calls per thread, at most (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="threads per executor")
    parser.add_argument("--size", type=int, default=8, help="bytes of each call's arguments and result")
    parser.add_argument("--answer-ms", type=float, default=0.0, help="what each answer costs the client")
    parser.add_argument("--kill-at", type=float, default=0.5, help="kill once this share of the calls answered")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-kill", action="store_true", help="the baseline: kill nothing")
    parser.add_argument("--logs", type=Path, help="keep the processes' output (-v) in this directory")
    args = parser.parse_args()
    args.window = args.window or -(-args.calls // args.threads)
    import wasmtime

    import essa

    report: dict = {"engine": args.engine, "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "threads": args.threads, "window": args.window, "size": args.size,
                    "answer_ms": args.answer_ms, "kill": not args.no_kill}
    with tempfile.TemporaryDirectory() as home:
        os.environ["ESSA_HOME"] = home
        logs = args.logs or Path(home)
        logs.mkdir(parents=True, exist_ok=True)
        cluster = Cluster(args.engine, args.workers, logs)
        try:
            with essa.connect(cluster.endpoint, timeout=60) as connection:
                wait_for("two executors joined", lambda: executors_seen(connection) == 2, time.monotonic() + 90)
                connection.deploy(bytes(wasmtime.wat2wasm(ECHO_WAT)), name="echo")
                for _ in range(200):  # warm: both executors have the module
                    connection.call("echo", "echo", b"12345678")
                report["warm_up"] = one_round(cluster, connection, args, kill=False)
                report["rounds"] = [one_round(cluster, connection, args, not args.no_kill) for _ in range(args.rounds)]
        finally:
            cluster.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
