"""Several schedulers, failover and retries, with real processes over zenoh on loopback, killed with SIGKILL.

Two schedulers (the second connects to the first) and two executors that
connect to both run as child processes. The scheduler a client sends its
calls to, killed under load from several client threads (this process, through :func:`essa.connect` with both
endpoints) fails no call: its callers send their pending calls to the other
with the same ids; the same for HTTP requests through ``essa serve``. An
executor killed while a module's ``_start`` runs on
it: the run is executed once more elsewhere, its output is shown once, and a
remote call of it that was running on the other executor is found there and
not run a second time.
"""

from __future__ import annotations

import collections
import http.client
import json
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import essa
from essa.testing.conformance.wat import wat2wasm
from essa.testing.ports import free_port

from .test_cli import essa as run_essa
from .test_cluster import Cluster as OneScheduler

pytest.importorskip("zenoh")
pytest.importorskip("essa_lmdb")

ESSA = [sys.executable, "-m", "essa"]
#: Generous: other work may keep every core busy.
DEADLINE = 90.0

#: echo(args) returns its arguments; spin(n) loops n times, adds n to the Set under "items" and returns n;
#: _start prints "begin", adds the WASI realtime clock's reading (8 bytes) to the Set under "stamps", calls
#: spin(SPIN) and waits for it, prints "end".
SPIN = 3_000_000_000
GUEST = wat2wasm(f"""
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "host" "essa_get_args" (func $get_args (param i32 i32) (result i32)))
  (import "host" "essa_set_result" (func $set_result (param i32 i32) (result i32)))
  (import "host" "essa_call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (import "host" "essa_get_result_len" (func $get_result_len (param i32 i32) (result i32)))
  (import "host" "essa_get_result" (func $get_result (param i32 i32 i32 i32) (result i32)))
  (import "host" "essa_put_lattice" (func $put (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 170) "stamps")
  (data (i32.const 516) "\\01\\00\\00\\00\\01\\00\\00\\00\\00\\00\\00\\00\\08\\00\\00\\00\\00\\00\\00\\00")
  (data (i32.const 100) "begin\\n")
  (data (i32.const 110) "end\\n")
  (data (i32.const 120) "__essa_wrapper__spin")
  (data (i32.const 160) "items")
  (data (i32.const 300) "\\01\\00\\00\\00\\01\\00\\00\\00\\00\\00\\00\\00\\04\\00\\00\\00\\00\\00\\00\\00")
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "__essa_wrapper__echo") (param $len i32)
    (drop (call $get_args (i32.const 1024) (local.get $len)))
    (drop (call $set_result (i32.const 1024) (local.get $len))))
  (func (export "__essa_wrapper__spin") (param $len i32) (local $n i32) (local $i i32)
    (drop (call $get_args (i32.const 320) (i32.const 4)))
    (local.set $n (i32.load (i32.const 320)))
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))
    ;; Set {{n}}: tag 1, one member of 4 bytes (at 320, right after the header at 300)
    (if (call $put (i32.const 160) (i32.const 5) (i32.const 300) (i32.const 24)) (then unreachable))
    (drop (call $set_result (i32.const 320) (i32.const 4))))
  (func (export "_start")
    (call $print (i32.const 100) (i32.const 6))
    ;; Set {{clock}}: the header at 516, the realtime clock's 8 bytes right after it
    (if (call $clock (i32.const 0) (i64.const 1) (i32.const 536)) (then unreachable))
    (if (call $put (i32.const 170) (i32.const 6) (i32.const 516) (i32.const 28)) (then unreachable))
    (i32.store (i32.const 400) (i32.const {SPIN - 2**32 if SPIN >= 2**31 else SPIN}))
    (if (call $call (i32.const 120) (i32.const 20) (i32.const 400) (i32.const 4) (i32.const 404)) (then unreachable))
    (if (call $get_result_len (i32.load (i32.const 404)) (i32.const 408)) (then unreachable))
    (call $print (i32.const 110) (i32.const 4))))
""")


class Cluster(OneScheduler):
    """Two schedulers and two executors (each connected to both) as child processes."""

    def __init__(self, engine: str, tmp_path: Path) -> None:
        super().__init__(engine, tmp_path)
        self.endpoints = [self.endpoint, f"tcp/127.0.0.1:{free_port()}"]
        self.module = tmp_path / "guest.wasm"
        self.module.write_bytes(GUEST)

    def start(self) -> None:
        self._spawn("scheduler-a", "scheduler", "--listen", self.endpoints[0])
        self._spawn("scheduler-b", "scheduler", "--listen", self.endpoints[1], "--connect", self.endpoints[0])
        for executor_id in ("0", "1"):
            self._spawn(f"executor-{executor_id}", "executor", executor_id, *self.connect_args,
                        "--listen", f"tcp/127.0.0.1:{free_port()}", "--workers", "2")

    @property
    def connect_args(self) -> list[str]:
        return ["--connect", self.endpoints[0], "--connect", self.endpoints[1]]

    def status(self) -> list[dict]:
        result = run_essa("status", *self.connect_args, "--json", timeout=60)
        return json.loads(result.stdout) if result.returncode == 0 else []

    def wait_ready(self) -> None:
        """Until both schedulers see both executors."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            schedulers = [a for a in self.status() if a["role"] == "scheduler"]
            if len(schedulers) == 2 and all(len(s["executors"]) == 2 for s in schedulers):
                return
            time.sleep(0.2)
        raise AssertionError(f"the cluster did not come up; logs:\n{self.log_text()}")

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-8000:]}" for p in sorted(self.logs.glob("*.log")))


def busiest_scheduler(cluster: Cluster, es: essa.Connection | None = None) -> str:
    """The name of the scheduler process that placed the most calls (a caller sends its calls to one)."""
    placed = {a["id"]: sum(e["placed"] for e in a["executors"].values())
              for a in (es.status() if es is not None else cluster.status()) if a.get("role") == "scheduler"}
    busiest = max(placed, key=placed.get)
    for name in ("scheduler-a", "scheduler-b"):
        log = (cluster.logs / f"{name}.log").read_text()
        if f"essa scheduler {busiest}:" in log:
            return name
    raise AssertionError(f"no scheduler process is {busiest}; logs:\n{cluster.log_text()}")


@pytest.fixture
def cluster(engine_name, tmp_path):
    c = Cluster(engine_name, tmp_path)
    c.start()
    yield c
    c.stop()


def test_a_killed_scheduler_fails_no_call(cluster):
    cluster.wait_ready()
    threads, per_thread, kill_after = 4, 400, 300
    answered = collections.Counter()
    failures: list[str] = []
    lock = threading.Condition()
    with essa.connect(cluster.endpoints, timeout=60) as es:
        es.deploy(GUEST, name="guest")

        def work(worker: int) -> None:
            for n in range(per_thread):
                args = struct.pack("<II", worker, n)
                try:
                    value = es.call("guest", "echo", args, timeout=DEADLINE)
                    outcome = "ok" if value == args else f"wrong answer {value!r}"
                except Exception as exc:  # counted: the test asserts there are none
                    outcome = f"{type(exc).__name__}: {exc}"
                with lock:
                    answered[outcome] += 1
                    if outcome != "ok":
                        failures.append(outcome)
                    lock.notify_all()

        workers = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(threads)]
        for thread in workers:
            thread.start()
        with lock:
            assert lock.wait_for(lambda: sum(answered.values()) >= kill_after, DEADLINE), cluster.log_text()
        cluster.kill(busiest_scheduler(cluster, es))
        for thread in workers:
            thread.join(DEADLINE * 2)
        assert not any(t.is_alive() for t in workers), f"calls hang; logs:\n{cluster.log_text()}"
        executed = sum(a["by_function"].get("__essa_wrapper__echo", 0)
                       for a in es.status() if a.get("role") == "executor")
    assert not failures, f"{collections.Counter(failures)}; logs:\n{cluster.log_text()}"
    assert answered == {"ok": threads * per_thread}
    # Run twice only if forwarded by the dead scheduler an instant before it died (at most one per caller thread).
    assert threads * per_thread <= executed <= threads * per_thread + threads, executed


def test_an_executor_killed_during_a_run_runs_it_again_and_its_remote_call_once(cluster):
    cluster.wait_ready()
    run = subprocess.Popen([*ESSA, "run", *cluster.connect_args, "--namespace", "jepsen",
                            str(cluster.module)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline() == "begin\n"
        # The executor that counts the run dies once the run's stamp is stored; spin runs on it or on the other.
        deadline = time.monotonic() + DEADLINE
        with essa.connect(cluster.endpoints, timeout=DEADLINE) as es:
            while True:
                executors = {a["id"]: a for a in es.status() if a["role"] == "executor"}
                running = [i for i, a in executors.items() if a["runs"] == 1]
                if running and es.state("jepsen").get("stamps") is not None:
                    break
                assert time.monotonic() < deadline, cluster.log_text()
                time.sleep(0.05)
        dead = running[0]
        survivor = "1" if dead == "0" else "0"
        assert run.poll() is None, "the run ended before its executor was killed: make SPIN longer"
        cluster.kill(f"executor-{dead}")
        out, err = run.communicate(timeout=DEADLINE * 2)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err + cluster.log_text()
    assert "begin\n" + out == "begin\nend\n", err  # the re-executed run's "begin" is not shown again
    after = next(a for a in cluster.status() if a["role"] == "executor" and a["id"] == survivor)
    assert after["runs"] == 1  # the run, once more
    # A spin that was running on the survivor when the run's executor died was found there, not run again.
    assert after["by_function"].get("__essa_wrapper__spin", 0) == 1, cluster.log_text()
    items = run_essa("state", "get", *cluster.connect_args, "--namespace", "jepsen", "items", "--json", timeout=60)
    assert items.returncode == 0, items.stderr
    assert len(json.loads(items.stdout)["values"]) == 1  # the Set add of spin, once
    # The re-executed run read the same realtime clock: its write (a Set add here, an Lww timestamp in
    # the SDKs) carries the same write id, so it is applied once.
    with essa.connect(cluster.endpoints, timeout=DEADLINE) as es:
        assert len(es.state("jepsen").get("stamps").values) == 1, cluster.log_text()


def test_http_calls_survive_the_death_of_the_scheduler_they_use(cluster, tmp_path):
    pytest.importorskip("essa_http")  # tox -e py311-http runs it
    cluster.wait_ready()
    deployed = run_essa("deploy", str(cluster.module), "--name", "guest", *cluster.connect_args, "--timeout", "60")
    assert deployed.returncode == 0, deployed.stderr
    port = free_port()
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen([*ESSA, "serve", "--listen", f"127.0.0.1:{port}", *cluster.connect_args,
                                   "--timeout", "60"], stdout=log, stderr=subprocess.STDOUT)
    answers: collections.Counter[str] = collections.Counter()
    lock = threading.Condition()

    def post(body: bytes) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        try:
            connection.request("POST", "/v1/functions/guest/echo", body=body)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def work(worker: int) -> None:
        for n in range(150):
            body = f"{worker}-{n}".encode()
            try:
                status, answer = post(body)
                outcome = "ok" if (status, answer) == (200, body) else f"{status} {answer[:200]!r}"
            except OSError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            with lock:
                answers[outcome] += 1
                lock.notify_all()

    try:
        deadline = time.monotonic() + DEADLINE
        while True:  # until it answers
            try:
                if post(b"ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text() + cluster.log_text()
            time.sleep(0.2)
        workers = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(3)]
        for thread in workers:
            thread.start()
        with lock:
            assert lock.wait_for(lambda: sum(answers.values()) >= 100, DEADLINE), cluster.log_text()
        cluster.kill(busiest_scheduler(cluster))
        for thread in workers:
            thread.join(DEADLINE * 2)
        assert not any(t.is_alive() for t in workers), f"requests hang; logs:\n{cluster.log_text()}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert answers == {"ok": 450}, f"{answers}; logs:\n{cluster.log_text()}"
