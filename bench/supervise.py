"""Recovery under `essa up`: each kind of process killed with SIGKILL, how long until the cluster serves again.

Starts ``essa --store anna --store-option kvs_nodes=2 up --detach --http ...``
(a scheduler, anna's routing node and 2 KVS nodes, ``--executors``
executors, an HTTP server) in a data directory of its own, deploys a
function that merges its argument into a Set, and from this process keeps
calling it (``--threads`` threads, public API) while, one after another,
the scheduler, an executor, the routing node, a KVS node and the HTTP server
are killed with SIGKILL (``--rounds`` times each). For each kill it reports:

- ``restarted_s``: from the kill until ``essa up``'s state file names a new
  pid for the process (its restart, after the 0.5 s backoff);
- ``serving_s``: from the kill until the first call started after it was
  answered (for ``http``: a request over HTTP);
- ``failed``: calls that failed meanwhile (calls pending on a scheduler
  that dies fail: one scheduler is still a single point of failure).

At the end: ``lost_writes``: answered calls whose argument is missing from
the Set (the target is 0), and ``essa_up_restarts_total`` per process.

Usage: python bench/supervise.py [--rounds 3] [--executors 2] [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import essa
from essa.testing.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from e2e.test_service import STATEFUL  # noqa: E402

KINDS = ("scheduler", "executor 1", "anna routing", "anna kvs 0", "http")
DEADLINE = 120.0


def essa_command(home: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "essa", *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ESSA_HOME": str(home)})
    if result.returncode != 0:
        raise SystemExit(f"essa {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def state(home: Path) -> dict:
    return json.loads((home / "clusters" / "bench.json").read_text())


def pid_of(home: Path, process: str) -> int:
    return next(p["pid"] for p in state(home)["processes"] if p["name"] == process)


class Load:
    """Threads calling remember(N) in a loop; answered arguments and failures, with their times."""

    def __init__(self, endpoint: str, threads: int) -> None:
        self.connection = essa.connect(endpoint, timeout=DEADLINE)
        self.lock = threading.Lock()
        self.answered: list[tuple[float, float, bytes]] = []  # (started, answered, argument)
        self.failed: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.counter = 0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                self.counter += 1
                argument = b"call %d" % self.counter
            started = time.monotonic()
            try:
                self.connection.call("bench", "remember", argument, timeout=30.0)
            except essa.EssaError as exc:
                with self.lock:
                    self.failed.append((time.monotonic(), str(exc).splitlines()[0]))
                time.sleep(0.05)
                continue
            with self.lock:
                self.answered.append((started, time.monotonic(), argument))

    def first_answer_started_after(self, moment: float) -> float | None:
        with self.lock:
            times = [done for started, done, _ in self.answered if started >= moment]
        return min(times) if times else None

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def http_serving_after(url: str, moment: float) -> float:
    deadline = moment + DEADLINE
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=b"over http"), timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic()
        except OSError:
            time.sleep(0.02)
    raise SystemExit("the HTTP server did not come back")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="essa-bench-supervise-") as tmp:
        home = Path(tmp)
        endpoint, http = f"tcp/127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        essa_command(home, "--store", "anna", "--store-option", "kvs_nodes=2", "up", "--detach", "--metrics",
                     "--name", "bench", "--executors", str(options.executors), "--listen", endpoint,
                     "--http", http, "--no-context")
        try:
            wasm = home / "memo.wasm"
            wasm.write_bytes(STATEFUL)
            essa_command(home, "deploy", str(wasm), "--name", "bench", "--connect", endpoint)
            load = Load(endpoint, options.threads)
            kills = []
            for _ in range(options.rounds):
                for process in KINDS:
                    time.sleep(2.0)  # steady load between kills
                    old = pid_of(home, process)
                    failed_before = len(load.failed)
                    killed = time.monotonic()
                    os.kill(old, signal.SIGKILL)
                    while pid_of(home, process) == old:
                        if time.monotonic() - killed > DEADLINE:
                            raise SystemExit(f"{process} was not restarted")
                        time.sleep(0.01)
                    restarted = time.monotonic()
                    if process == "http":
                        serving = http_serving_after(f"http://{http}/v1/functions/bench/remember", killed)
                    else:
                        while (serving := load.first_answer_started_after(killed)) is None:
                            if time.monotonic() - killed > DEADLINE:
                                raise SystemExit(f"no call answered after {process} was killed")
                            time.sleep(0.01)
                    time.sleep(1.0)  # failures of calls pending at the kill arrive
                    kills.append({"process": process, "restarted_s": round(restarted - killed, 3),
                                  "serving_s": round(serving - killed, 3),
                                  "failed": len(load.failed) - failed_before})
            load.close()
            answered = {argument for _, _, argument in load.answered}
            seen = load.connection.state("bench").get("seen")
            members = set(seen.values) if seen is not None else set()
            with urllib.request.urlopen(state(home)["metrics"]["essa up"], timeout=30) as page:
                restarts = {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
                            for line in page.read().decode().splitlines()
                            if line.startswith("essa_up_restarts_total{")}
            failures: dict[str, int] = {}
            for _, message in load.failed:
                failures[message] = failures.get(message, 0) + 1
            by_kind = {}
            for process in KINDS:
                mine = [k for k in kills if k["process"] == process]
                by_kind[process] = {
                    "restarted_s": [k["restarted_s"] for k in mine], "serving_s": [k["serving_s"] for k in mine],
                    "failed": sum(k["failed"] for k in mine)}
            print(json.dumps({
                "executors": options.executors, "threads": options.threads, "rounds": options.rounds,
                "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
                "answered": len(answered), "failed": len(load.failed), "failures": failures,
                "lost_writes": len(answered - members), "by_process": by_kind,
                "essa_up_restarts_total": restarts}, indent=2))
            load.connection.close()
        finally:
            subprocess.run([sys.executable, "-m", "essa", "down", "bench"], capture_output=True, timeout=120,
                           env={**os.environ, "ESSA_HOME": str(home)})


if __name__ == "__main__":
    main()
