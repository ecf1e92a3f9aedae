"""Child processes kept running: restarted with backoff when they die, given up on when they keep dying.

``essa up`` runs its scheduler(s), executors, the store's nodes and the HTTP
server through a :class:`Supervisor`. A child that exits on its own is
started again with the same command and environment after a delay that
doubles with each crash in a row (:data:`FIRST_DELAY` up to
:data:`MAX_DELAY`); a child that stayed up :data:`STABLE_AFTER` seconds
starts a new row. A row longer than ``max_restarts`` is a child that keeps
crashing: it is reported and left dead, and the others run on. Each restart
and each give-up is one log line and a Prometheus counter
(``essa_up_restarts_total{process}``, ``essa_up_given_up_total{process}``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from essa.cluster import metrics

#: The first restart's delay, in seconds; each crash in a row doubles it.
FIRST_DELAY = 0.5
#: The longest delay between restarts.
MAX_DELAY = 15.0
#: A child up this long (seconds) before it died starts a new row of crashes.
STABLE_AFTER = 30.0
#: Restarts in a row before a child is given up on.
MAX_RESTARTS = 5


@dataclass
class Child:
    """A supervised process: how to start it, the running process, its crash record."""

    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    #: Restarts since it was first started.
    restarts: int = 0
    #: Crashes in a row (each within :data:`STABLE_AFTER` of its start).
    crashes: int = 0
    #: When it is due to start again (``time.monotonic()``), if it died.
    restart_at: float | None = None
    given_up: bool = False
    #: The last exit status it died with.
    status: int | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def describe_status(status: int) -> str:
    """``status 3``, or ``signal 9 (SIGKILL)`` for a child a signal ended (Popen's negative codes)."""
    if status >= 0:
        return f"status {status}"
    try:
        return f"signal {-status} ({signal.Signals(-status).name})"
    except ValueError:
        return f"signal {-status}"


class Supervisor:
    """Starts children, restarts those that die, stops them all.

    :meth:`check` does the watching: call it every half second or so from
    the thread that owns the supervisor. ``say`` gets each line to report
    (default: stderr), ``on_change`` is called after a child died, got a new
    pid or was given up on (to rewrite a state file naming them).
    """

    def __init__(self, max_restarts: int = MAX_RESTARTS, say: Callable[[str], None] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.children: list[Child] = []
        self.max_restarts = max_restarts
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._on_change = on_change
        self._stopping = False
        metrics.serving("supervisor")

    def start(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> Child:
        """Start ``command`` as the child ``name``, with exactly the environment ``env``."""
        child = Child(name, list(command), dict(env))
        self._spawn(child)
        self.children.append(child)
        return child

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=dict(child.env))
        child.started = time.monotonic()
        child.restart_at = None

    def dead(self) -> list[Child]:
        """The children that exited (and are not running again yet)."""
        return [c for c in self.children if c.process is not None and not c.running()]

    def check(self, now: float | None = None) -> None:
        """Notice children that died (schedule their restart, or give up on them); restart those due."""
        if self._stopping:
            return
        now = time.monotonic() if now is None else now
        changed = False
        for child in self.children:
            if child.given_up:
                continue
            if child.restart_at is None and not child.running():
                self._died(child, now)
                changed = True
            elif child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)
                changed = True
        if changed and self._on_change is not None:
            self._on_change()

    def _died(self, child: Child, now: float) -> None:
        status = child.process.returncode
        child.status = status
        child.crashes = 1 if now - child.started >= STABLE_AFTER else child.crashes + 1
        if child.crashes > self.max_restarts:
            child.given_up = True
            metrics.GIVEN_UP.labels(child.name).inc()
            self._say(f"essa up: {child.name} (pid {child.pid}) exited with {describe_status(status)}, "
                      f"{child.crashes} times in a row within {STABLE_AFTER:g} s of its start: given up on it "
                      "(the rest of the cluster runs on)")
            return
        delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (child.crashes - 1))
        child.restart_at = now + delay
        child.restarts += 1
        metrics.RESTARTS.labels(child.name).inc()
        self._say(f"essa up: {child.name} (pid {child.pid}) exited with {describe_status(status)}; restarting it "
                  f"in {delay:g} s (restart {child.restarts}; {child.crashes} of {self.max_restarts} in a row)")

    def given_up(self) -> list[Child]:
        return [c for c in self.children if c.given_up]

    def stop(self, timeout: float) -> None:
        """SIGTERM every child (the last started first); SIGKILL those still running after ``timeout`` s."""
        self._stopping = True
        for child in reversed(self.children):
            if child.running():
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


__all__ = ["Child", "MAX_RESTARTS", "Supervisor", "describe_status"]
