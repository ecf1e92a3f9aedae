"""Soak with kills: a million calls on a two-scheduler cluster while a scheduler or an executor is SIGKILLed
every 50,000 calls; prints JSON.

The issue's target: every call answered exactly once to its caller, 0 hangs,
and the resident memory of every process that lived through the run within
5 % from the first 100,000 calls to the last.

Starts ``essa up --detach --schedulers 2 --executors 2`` (the LMDB store) in
a data directory of its own: its supervision restarts a process that dies,
as it would for a user, so the bench tests that path too (the restart
comes from ``essa up``, the new pid from its state file). It deploys a
module of two functions, ``echo(ARG) -> ARG`` and ``remember(ARG) -> ARG``
(which also merges ARG into a Set under the key ARG[:3]), and calls them
from ``--threads`` threads of this process through the public API
(:func:`essa.connect`, :meth:`Connection.call`), one call in flight per
thread, every call with an argument of its own (its number) so that an
answer proves which call it answers; every ``--state-every``-th call is a
``remember``. Each time ``--kill-every`` more calls are answered, it
SIGKILLs (by pid, from ``essa up``'s state file) the next of ``--victims``
in turn (default ``scheduler 1`` then ``executor 1``) and waits until ``essa
up`` has restarted it. ``scheduler 0``, ``executor 0``, ``essa up`` itself
and this process live through the whole run.

It counts:

- ``answered``: calls that returned; ``wrong``: returned something else
  than their argument;
- ``answered_twice``: calls whose reply reached the caller's inbox more
  than once (a second subscriber on the inbox counts the replies per call
  id; the caller itself drops a duplicate); ``recorded_replies_sent_again``:
  replies an executor sent again from its record of finished calls (marked
  ``again``: the caller had moved the call to another scheduler while its
  first reply was on its way; no second execution);
- ``failed``: calls that raised, grouped by message (ids and numbers
  replaced by ``N``); ``hangs``: calls not answered within
  ``--call-timeout`` seconds (then cancelled);
- ``lost_writes``: answered ``remember`` calls whose argument is missing
  from its Set. The calls go in epochs of ``--state-epoch`` calls, each
  writing to 25 keys of its own; once every call of an epoch has ended,
  its keys are checked and deleted, so the state does not grow with the
  run (a growing store would grow the executors' resident file pages, which
  is not what this measures).

Every ``--interval`` seconds it samples each surviving process's RSS (and
its anonymous and file-backed parts), mappings, threads and descriptors
(:mod:`essa.testing.resources`), and compares the first 100,000 calls
(after ``--warm-up``) with the last 100,000 as ``bench/soak.py`` does
(:func:`soak.flatness`: means of the samples in each window; short runs
compare halves), and the single samples at 100,000 calls and at the end
(``*_from_mark``). Every ``--progress-every`` answered calls it prints one
JSON progress line (so a run cut short still tells), and at the end a
summary.

This process tunes its C heap as essa's processes do (:func:`essa.util.memory.tune_heap`:
malloc arenas capped, free pages handed back every 30 s; ``--default-malloc``: not).

Usage: python bench/soak_failover.py [--calls 1000000] [--kill-every 50000] [--threads 8] [--state-every 10]
       [--state-epoch 50000] [--victims "scheduler 1,executor 1"] [--call-timeout 120] [--interval 5] [--warm-up 0]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from soak import WINDOW, flatness

import essa
from essa.testing.ports import free_port
from essa.testing.resources import sample
from essa.util.memory import tune_heap

NAME = "soak"
#: Keys each epoch's ``remember`` calls spread their writes over (the argument's first 3 bytes: the epoch
#: modulo :data:`EPOCH_KEYS` and 2 digits). Epoch e's keys are deleted long before epoch e + EPOCH_KEYS starts.
KEYS = 25
EPOCH_KEYS = 4
#: Seconds a killed process gets to be restarted by ``essa up`` before the bench gives up.
RESTART_DEADLINE = 120.0

SOAK_WAT = r"""
(module
  (import "host" "essa_get_args" (func $get_args (param i32 i32) (result i32)))
  (import "host" "essa_set_result" (func $set_result (param i32 i32) (result i32)))
  (import "host" "essa_put_lattice" (func $put (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "__essa_wrapper__echo") (param $len i32)
    (if (call $get_args (i32.const 0x1000) (local.get $len)) (then unreachable))
    (drop (call $set_result (i32.const 0x1000) (local.get $len))))
  ;; remember(ARG): merge Set {ARG} into the key ARG[:3]; answer ARG
  (func (export "__essa_wrapper__remember") (param $len i32)
    (if (i32.lt_u (local.get $len) (i32.const 3)) (then unreachable))
    (if (call $get_args (i32.const 0x1014) (local.get $len)) (then unreachable))
    (i32.store (i32.const 0x1000) (i32.const 1))                        ;; LatticeValue::Set
    (i64.store (i32.const 0x1004) (i64.const 1))                        ;; one element
    (i64.store (i32.const 0x100c) (i64.extend_i32_u (local.get $len)))  ;; its length
    (if (call $put (i32.const 0x1014) (i32.const 3) (i32.const 0x1000) (i32.add (i32.const 20) (local.get $len)))
      (then unreachable))
    (drop (call $set_result (i32.const 0x1014) (local.get $len))))
  (func (export "_start")))
"""

# What each call ended as, by its number (a bytearray: a million calls cost a megabyte, allocated up front,
# so that the bookkeeping does not grow this process's memory as the calls go).
PENDING, ANSWERED, WRONG, FAILED, HUNG = 0, 1, 2, 3, 4


def argument(n: int, state_every: int, epoch: int) -> tuple[str, bytes]:
    """Call ``n``'s function and its argument (unique; a ``remember`` argument starts with its key)."""
    if n % state_every == 0:
        return "remember", key(n, state_every, epoch).encode() + b":%d" % n
    return "echo", b"e:%d" % n


def key(n: int, state_every: int, epoch: int) -> str:
    """The state key call ``n`` writes (if it is a ``remember``)."""
    return "%d%02d" % (n // epoch % EPOCH_KEYS, n // state_every % KEYS)


def group(message: str) -> str:
    """A failure message with its ids and numbers replaced by ``N`` (so equal failures group together)."""
    first = message.splitlines()[0] if message else ""
    return re.sub(r"[0-9a-f]{8,}|\d+", "N", first)[:300]


def essa_command(home: str, *args: str, timeout: float = 300) -> str:
    result = subprocess.run([sys.executable, "-m", "essa", *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "ESSA_HOME": home})
    if result.returncode != 0:
        raise SystemExit(f"essa {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


class Cluster:
    """``essa up``'s cluster as its state file names it."""

    def __init__(self, home: str) -> None:
        self.path = Path(home) / "clusters" / f"{NAME}.json"

    def state(self) -> dict:
        return json.loads(self.path.read_text())

    def processes(self) -> dict[str, tuple[int, int]]:
        """Process name -> (pid, start time)."""
        return {p["name"]: (p["pid"], p["started"]) for p in self.state()["processes"]}

    def endpoints(self) -> list[str]:
        state = self.state()
        return [state["listen"], *(e for n, e in state["endpoints"].items()
                                   if n.startswith("scheduler") and e != state["listen"])]


class Soak:
    """The callers, the killer and the sampler, and what they counted."""

    def __init__(self, connection, cluster: Cluster, args, survivors: dict[str, int | str]) -> None:
        self.connection = connection
        self.cluster = cluster
        self.args = args
        self.status = bytearray(args.calls)
        # Replies that reached the inbox, per call number of the caller (ids are CALLER/N).
        self.replies = bytearray(args.calls + 100_000)
        self.replies_beyond = 0  # replies to call numbers past the array (none expected)
        self.replies_again = 0  # recorded replies sent again, marked "again" (a call moved to another scheduler)
        self.lock = threading.Lock()
        self.next_call = 0
        self.answered = 0
        self.ended = 0  # calls that returned or raised
        self.failures: collections.Counter[str] = collections.Counter()
        self.started = time.monotonic()
        self.kills: list[dict] = []
        self.survivors = survivors
        self.samples: dict[str, list[dict]] = {name: [] for name in survivors}
        self.done = threading.Event()
        self.progress_at = args.progress_every
        epochs = -(-args.calls // args.state_epoch)
        #: Calls not ended yet, per epoch; the epochs whose calls all ended, to check (see :meth:`checker`).
        self.epoch_left = [min(args.state_epoch, args.calls - e * args.state_epoch) for e in range(epochs)]
        self.epochs_ended: list[int] = []
        self.epoch_ended = threading.Condition(self.lock)
        self.lost_writes = 0
        self.writes_checked = 0

    # -- calls ---------------------------------------------------------------------

    def observe(self, reply) -> None:
        """Every reply that reaches the caller's inbox (a second subscriber beside the caller's own)."""
        call_id = reply.get("id")
        if not isinstance(call_id, str):
            return
        number = call_id.rpartition("/")[2]
        if not number.isdigit():
            return
        n = int(number)
        if reply.get("again") is True:  # an executor's recorded reply, sent again (see Executor.find)
            self.replies_again += 1
        if n < len(self.replies):
            if self.replies[n] < 255:
                self.replies[n] += 1
        else:
            self.replies_beyond += 1

    def call(self) -> None:
        """One caller thread: calls until every call is started."""
        args = self.args
        while True:
            with self.lock:
                n = self.next_call
                if n >= args.calls:
                    return
                self.next_call += 1
            function, arg = argument(n, args.state_every, args.state_epoch)
            began = time.monotonic()
            try:
                value = self.connection.call(NAME, function, arg, timeout=args.call_timeout)
                outcome = ANSWERED if value == arg else WRONG
                problem = "" if value == arg else f"wrong answer to {function}"
            except Exception as exc:  # counted and reported; the soak goes on
                hung = time.monotonic() - began >= args.call_timeout
                outcome = HUNG if hung else FAILED
                problem = ("hang: " if hung else "") + f"{type(exc).__name__}: {group(str(exc))}"
            self.status[n] = outcome
            with self.lock:
                if problem:
                    self.failures[problem] += 1
                if outcome in (ANSWERED, WRONG):
                    self.answered += 1
                self.ended += 1
                ended = self.ended
                epoch = n // args.state_epoch
                self.epoch_left[epoch] -= 1
                if not self.epoch_left[epoch]:
                    self.epochs_ended.append(epoch)
                    self.epoch_ended.notify()
                report = ended >= self.progress_at
                if report:
                    self.progress_at += args.progress_every
            if report:
                self.progress(ended)

    def counts(self) -> dict:
        status = self.status
        duplicates = len(self.replies) - self.replies.count(0) - self.replies.count(1)
        return {"answered": self.answered, "wrong": status.count(WRONG), "failed": status.count(FAILED),
                "hangs": status.count(HUNG), "answered_twice": duplicates,
                "recorded_replies_sent_again": self.replies_again,
                "replies_beyond": self.replies_beyond}

    def progress(self, ended: int) -> None:
        elapsed = time.monotonic() - self.started
        latest = {name: round(s[-1]["rss"] / 2**20, 1) for name, s in self.samples.items() if s}
        print(json.dumps({"progress": ended, "t": round(elapsed, 1), "calls_per_s": round(ended / elapsed, 1),
                          **self.counts(), "lost_writes": self.lost_writes,
                          "writes_checked": self.writes_checked, "kills": len(self.kills), "rss_mib": latest,
                          "load_average": round(os.getloadavg()[0], 2)}), flush=True)

    # -- state ---------------------------------------------------------------------

    def checker(self) -> None:
        """Check the writes of each epoch whose calls all ended, then delete its keys; until every epoch is."""
        state = self.connection.state(NAME)
        for _ in range(len(self.epoch_left)):
            with self.epoch_ended:
                self.epoch_ended.wait_for(lambda: self.epochs_ended)
                epoch = self.epochs_ended.pop(0)
            lost, checked = self.check(state, epoch)
            with self.lock:
                self.lost_writes += lost
                self.writes_checked += checked

    def check(self, state, epoch: int) -> tuple[int, int]:
        """Epoch ``epoch``'s answered ``remember`` calls whose argument is not in its Set, and how many there were;
        its keys are deleted after."""
        every, size = self.args.state_every, self.args.state_epoch
        calls = range(epoch * size, min(self.args.calls, (epoch + 1) * size))
        written = [n for n in calls if n % every == 0]
        keys = sorted({key(n, every, size) for n in written})
        stored: set[bytes] = set()
        for name in keys:
            value = self.retry(lambda name=name: state.get(name))
            if value is not None:
                stored.update(value.values)
        expected = [argument(n, every, size)[1] for n in written if self.status[n] == ANSWERED]
        for name in keys:
            self.retry(lambda name=name: state.delete(name))
        return sum(1 for arg in expected if arg not in stored), len(expected)

    def retry(self, operation):
        """``operation()``, tried again for up to a minute (a control request may meet a killed executor)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return operation()
            except essa.EssaError as exc:
                if time.monotonic() > deadline:
                    raise SystemExit(f"a state request kept failing: {exc}") from None
                time.sleep(0.5)

    # -- kills ---------------------------------------------------------------------

    def killer(self, victims: list[str]) -> None:
        """SIGKILL the next victim each ``--kill-every`` answered calls; wait until ``essa up`` restarts it."""
        next_kill = self.args.kill_every
        turn = 0
        while not self.done.wait(0.05):
            if self.answered < next_kill:
                continue
            victim = victims[turn % len(victims)]
            turn += 1
            pid, _ = self.cluster.processes()[victim]
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            while (new := self.cluster.processes()[victim][0]) == pid:
                if time.monotonic() - killed > RESTART_DEADLINE:
                    raise SystemExit(f"essa up did not restart {victim} within {RESTART_DEADLINE:g} s")
                time.sleep(0.05)
            self.kills.append({"victim": victim, "at_answered": self.answered, "pid": pid, "new_pid": new,
                               "restarted_s": round(time.monotonic() - killed, 2)})
            next_kill += self.args.kill_every

    # -- resources -----------------------------------------------------------------

    def sampler(self) -> None:
        while True:
            self.take_samples()
            if self.done.wait(self.args.interval):
                return

    def take_samples(self) -> None:
        ended = self.ended
        for name, pid in self.survivors.items():
            try:
                taken = sample(pid).as_dict()
            except OSError:  # it died: the summary says so
                continue
            self.samples[name].append({"calls": ended, "t": round(time.monotonic() - self.started, 1), **taken})


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="essa-bench-soak-failover-") as home:
        listen = f"tcp/127.0.0.1:{free_port()}"
        # Kills come every few seconds in short runs: a restarted process that dies again within 30 s counts
        # as crashing in a row, and essa up must not give up on it.
        essa_command(home, "--engine", args.engine, "up", "--detach", "--name", NAME, "--no-context",
                     "--schedulers", "2", "--executors", "2", "--listen", listen, "--max-restarts", "1000000")
        cluster = Cluster(home)
        try:
            return soak(cluster, args)
        finally:
            subprocess.run([sys.executable, "-m", "essa", "down", NAME], capture_output=True, timeout=120,
                           env={**os.environ, "ESSA_HOME": home})


def soak(cluster: Cluster, args) -> dict:
    import wasmtime

    victims = [v.strip() for v in args.victims.split(",") if v.strip()]
    processes = cluster.processes()
    unknown = [v for v in victims if v not in processes]
    if unknown:
        raise SystemExit(f"no process named {', '.join(unknown)} (the cluster has: {', '.join(processes)})")
    survivors: dict[str, int | str] = {"essa up": cluster.state()["pid"], "client (this process)": "self"}
    survivors.update({name: pid for name, (pid, _) in processes.items() if name not in victims})
    known = {name: processes[name] for name in survivors if name in processes}
    with essa.connect(cluster.endpoints(), timeout=60) as connection:
        connection.deploy(bytes(wasmtime.wat2wasm(SOAK_WAT)), name=NAME)
        # The caller's inbox, observed by a second subscriber: counts the replies per call id.
        bench = Soak(connection, cluster, args, survivors)
        client = connection._client  # the bench looks at what reaches the caller's inbox
        observer = client.transport.subscribe(client.caller.inbox, bench.observe)
        threads = [threading.Thread(target=bench.call, name=f"caller-{i}", daemon=True) for i in range(args.threads)]
        sampler = threading.Thread(target=bench.sampler, daemon=True)
        killer = threading.Thread(target=bench.killer, args=(victims,), daemon=True)
        checker = threading.Thread(target=bench.checker, daemon=True)
        checker.start()
        sampler.start()
        for thread in threads:
            thread.start()
        killer.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - bench.started
        time.sleep(2.0)  # a late duplicate reply still on its way reaches the observer
        bench.done.set()
        killer.join(RESTART_DEADLINE + 10)
        sampler.join()
        bench.take_samples()
        observer.close()
        checker.join(600)
        keys_left = len(list(connection.state(NAME).keys()))  # 0: the state did not grow with the run
        after = cluster.processes()
    counts = bench.counts()
    restarted = [k["restarted_s"] for k in bench.kills]
    flat = {}
    for name, samples in bench.samples.items():
        result = flatness(samples, args.warm_up) if len(samples) >= 2 else {"error": "too few samples"}
        if "error" not in result:
            # The words: at the first 100,000 calls, and at the end (single samples, beside the means).
            mark = min(samples, key=lambda s: abs(s["calls"] - min(WINDOW, args.calls // 2)))
            result["mark_calls"] = mark["calls"]
            for key in ("rss", "rss_anon", "rss_file", "mappings", "threads", "fds"):
                result[key].update(at_first_sample=samples[0][key], at_mark=mark[key], at_end=samples[-1][key],
                                   growth_from_mark_pct=round(100 * (samples[-1][key] - mark[key]) / mark[key], 2))
            result["rss_within_5pct_from_mark"] = abs(result["rss"]["growth_from_mark_pct"]) <= 5
        flat[name] = result
    return {
        "calls": args.calls, "threads": args.threads, "kill_every": args.kill_every, "victims": victims,
        "state_every": args.state_every, "state_epoch": args.state_epoch, "call_timeout_s": args.call_timeout,
        "python": sys.version.split()[0], "cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
        "seconds": round(elapsed, 1), "calls_per_s": round(args.calls / elapsed, 1),
        **counts,
        "every_call_answered_once": counts["answered"] == args.calls and counts["answered_twice"] == 0
        and counts["wrong"] == 0,
        "failures": dict(bench.failures.most_common(20)),
        "writes_checked": bench.writes_checked, "lost_writes": bench.lost_writes,
        "state_keys_left": keys_left,
        "kills": len(bench.kills),
        "kills_by_victim": dict(collections.Counter(k["victim"] for k in bench.kills)),
        "restarted_s": {"median": statistics.median(restarted), "max": max(restarted)} if restarted else None,
        # Survivors that are still the same process (pid and start time) at the end.
        "survivors_unchanged": {name: after.get(name) == pidstart for name, pidstart in known.items()},
        "flat": flat,
        "rss_within_5pct": {name: f.get("rss_within_5pct") for name, f in flat.items()},
        "rss_anon_within_5pct": {name: f.get("rss_anon_within_5pct") for name, f in flat.items()},
        "rss_within_5pct_from_mark": {name: f.get("rss_within_5pct_from_mark") for name, f in flat.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="wasmtime")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--kill-every", type=int, default=50_000, help="answered calls between two kills")
    parser.add_argument("--victims", default="scheduler 1,executor 1",
                        help="processes killed in turn (names as in essa up's state file), comma-separated")
    parser.add_argument("--threads", type=int, default=8, help="caller threads (one call in flight each)")
    parser.add_argument("--state-every", type=int, default=10, help="every N-th call is a state write")
    parser.add_argument("--state-epoch", type=int, default=50_000,
                        help="calls whose writes are checked, then deleted, together")
    parser.add_argument("--call-timeout", type=float, default=120.0, help="seconds a call may take: beyond, a hang")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between resource samples")
    parser.add_argument("--warm-up", type=int, default=0, help="calls before the first window")
    parser.add_argument("--progress-every", type=int, default=50_000, help="calls between progress lines")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave this process's C heap as glibc runs it (essa's processes tune theirs)")
    args = parser.parse_args()
    # The client process tunes its C heap as essa's own processes do (essa.util.memory), as the README
    # advises a long-running client with many threads to.
    if not args.default_malloc:
        tune_heap()
    print(json.dumps({**run(args), "client_heap_tuned": not args.default_malloc}, indent=2), flush=True)


if __name__ == "__main__":
    main()
