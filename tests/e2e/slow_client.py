"""The client of test_failover, as a process of its own: many calls at once, their answers taken slowly on demand.

``python slow_client.py ENDPOINT CALLS THREADS SIZE COST [ZENOH_CONFIG]`` starts CALLS echo
calls (deployment ``echo``) at once from THREADS threads through
:func:`essa.connect` (with that zenoh config file), each echoing its own number repeated to SIZE bytes. It
prints ``answered N`` as answers come in (at most every 50 ms) and, at the
end, ``done JSON`` (answered, failures by message). A line ``slow`` on its
stdin makes each answer cost COST seconds of the thread that delivers it
(zenoh's: the client stops reading its links, and replies queue up in the
executors' outgoing queues); ``fast`` ends that.
"""

from __future__ import annotations

import collections
import json
import struct
import sys
import threading
import time

import essa

#: Longest the client waits for its answers (seconds).
DEADLINE = 120.0


class Load:
    def __init__(self, connection: essa.Connection, calls: int, threads: int, size: int, cost: float) -> None:
        self.connection = connection
        self.calls, self.threads, self.size, self.cost = calls, threads, size, cost
        self.slow = False
        self.answered = 0
        self.failures: collections.Counter[str] = collections.Counter()
        self._cond = threading.Condition()

    def start(self) -> None:
        for index in range(self.threads):
            threading.Thread(target=self._submit, args=(index,), daemon=True).start()

    def _submit(self, index: int) -> None:
        for number in range(index, self.calls, self.threads):
            args = struct.pack("<Q", number) * (self.size // 8)  # its own answer: a mix-up shows
            try:
                future = self.connection.call_async("echo", "echo", args)
            except Exception as exc:
                self._count(str(exc))
                continue
            future.add_done_callback(lambda f, a=args: self._answered(f, a))

    def _answered(self, future, args: bytes) -> None:
        if self.slow:
            time.sleep(self.cost)  # the client's work with the answer, on zenoh's thread
        error = future.exception()
        self._count(str(error) if error is not None else None if future.result() == args else "a wrong answer")

    def _count(self, problem: str | None) -> None:
        with self._cond:
            self.answered += 1
            if problem is not None:
                self.failures[problem] += 1
            self._cond.notify_all()

    def report(self) -> None:
        """Print the answer count as it grows, until every call answered (or the deadline)."""
        deadline = time.monotonic() + DEADLINE
        shown = -1
        while shown < self.calls and time.monotonic() < deadline:
            with self._cond:
                self._cond.wait_for(lambda: self.answered != shown, 0.05)
                shown = self.answered
            print(f"answered {shown}", flush=True)
            time.sleep(0.05)


def commands(load: Load) -> None:
    for line in sys.stdin:
        load.slow = line.strip() == "slow"


def main() -> None:
    endpoint, calls, threads, size, cost = sys.argv[1], *map(int, sys.argv[2:5]), float(sys.argv[5])
    with essa.connect(endpoint, timeout=60, zenoh_config=sys.argv[6] if len(sys.argv) > 6 else None) as connection:
        load = Load(connection, calls, threads, size, cost)
        threading.Thread(target=commands, args=(load,), daemon=True).start()
        load.start()
        load.report()
        print("done " + json.dumps({"answered": load.answered, "failures": dict(load.failures)}), flush=True)


if __name__ == "__main__":
    main()
