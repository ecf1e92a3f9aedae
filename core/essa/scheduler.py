"""The scheduler: places calls on executors.

It serves :data:`essa.topics.SCHEDULER_CALL` and forwards each call to the
executor a :class:`Placement` policy picks. The default policy is load-aware:
the executor with the fewest calls in flight wins.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from . import topics
from .errors import EssaError
from .transport.base import Message, Reply, Transport


@dataclass
class ExecutorState:
    """What the scheduler knows about one executor."""

    id: str
    in_flight: int = 0
    placed: int = 0


class Placement:
    """Chooses an executor for a call. Subclass to change the policy."""

    def choose(self, executors: list[ExecutorState], request: Message) -> ExecutorState:
        return min(executors, key=lambda e: e.in_flight)


class NoExecutors(EssaError):
    """No executor is available to run a call."""


class Scheduler:
    """Places calls arriving over ``transport`` on known executors."""

    def __init__(self, transport: Transport, placement: Placement | None = None) -> None:
        self.transport = transport
        self.placement = placement or Placement()
        self.executors: dict[str, ExecutorState] = {}
        self._lock = threading.Lock()
        self._served = None

    def start(self) -> None:
        self._served = self.transport.serve(topics.SCHEDULER_CALL, self.place)

    def stop(self) -> None:
        if self._served is not None:
            self._served.close()
            self._served = None

    def add_executor(self, executor_id: str) -> None:
        with self._lock:
            self.executors.setdefault(executor_id, ExecutorState(executor_id))

    def remove_executor(self, executor_id: str) -> None:
        with self._lock:
            self.executors.pop(executor_id, None)

    def place(self, request: Message) -> Reply:
        """Forward ``request`` to an executor; return its future reply."""
        with self._lock:
            candidates = list(self.executors.values())
            if not candidates:
                raise NoExecutors("no executor is available to run the call")
            target = self.placement.choose(candidates, request)
            target.in_flight += 1
            target.placed += 1
        try:
            reply = self.transport.request(topics.executor_call(target.id), request)
        except BaseException:
            self._finished(target)
            raise
        reply.add_done_callback(lambda _reply: self._finished(target))
        return reply

    def _finished(self, target: ExecutorState) -> None:
        with self._lock:
            target.in_flight -= 1
