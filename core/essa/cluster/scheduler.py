"""The scheduler: places calls on executors and answers for them.

It receives call requests on :data:`essa.cluster.topics.SCHEDULER_CALLS`, asks its
:class:`Placement` policy for an executor, and forwards the request there. The
executor replies to the caller directly and sends the scheduler a done notice,
so the scheduler always knows each executor's calls in flight and which
modules each has loaded (it placed them there).

Membership comes from liveliness tokens (``essa/live/executor/<id>``): a new
executor is used as soon as its token appears, in any start order. When a
token vanishes (the executor stopped or died), each of its calls in flight is
placed once more on another executor, or fails with a clear message if it was
a module's main function, already retried, or no executor is left. Calls that
arrive while no executor is known wait up to ``wait_for_executors`` seconds
(at most :attr:`Scheduler.max_backlog` of them).

A cancel (:data:`essa.cluster.topics.CANCEL`) fails the run's waiting calls; the
executors end its running ones. Waiting callers ask which calls the scheduler
still tracks (:data:`essa.cluster.topics.TRACKING`). Malformed messages are refused
with one rate-limited line; no message can stop the scheduler's loops.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from essa.cluster import metrics, topics
from essa.cluster.authorize import Authorizer, Refused
from essa.cluster.calls import cancelled_reply, check_request, reply_message, send_reply
from essa.cluster.deployments import display_name
from essa.placement import ExecutorState, Placement
from essa.transport.base import Message, Transport, last_segment
from essa.util.ratelimit import RateLimitedLog, describe
from essa.wasm.abi import EssaResult
from essa.wasm.engine import START

log = logging.getLogger("essa.cluster.scheduler")
_problems = RateLimitedLog(log)


@dataclass
class _InFlight:
    request: Message
    executor: str
    attempts: int = 1


class Scheduler:
    """Places calls arriving over ``transport`` on the executors it sees.

    :param placement: the placement policy (default :class:`Placement`).
    :param wait_for_executors: how long a call waits for a first executor.
    :param authorizer: if given, only calls whose token it allows are placed
        (:mod:`essa.cluster.authorize`); others are refused in one line.
    """

    #: Most calls kept waiting for an executor; more are refused at once.
    max_backlog = 100_000

    def __init__(
        self,
        transport: Transport,
        placement: Placement | None = None,
        scheduler_id: str | None = None,
        wait_for_executors: float = 10.0,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.transport = transport
        self.authorizer = authorizer
        self.placement = placement or Placement()
        self.id = scheduler_id or uuid.uuid4().hex[:12]
        self.wait_for_executors = wait_for_executors
        self.executors: dict[str, ExecutorState] = {}
        self._in_flight: dict[str, _InFlight] = {}
        self._backlog: list[tuple[float, Message]] = []
        self._lock = threading.Lock()
        self._undo: list = []
        self._stopped = threading.Event()

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        metrics.SCHEDULER_IN_FLIGHT.set_function(lambda: len(self._in_flight))
        metrics.SCHEDULER_WAITING.set_function(lambda: len(self._backlog))
        metrics.SCHEDULER_EXECUTORS.set_function(lambda: len(self.executors))
        metrics.serving("scheduler")
        self._undo.append(self.transport.subscribe(topics.SCHEDULER_CALLS, self.place))
        self._undo.append(self.transport.subscribe(topics.SCHEDULER_DONE, self._done))
        self._undo.append(self.transport.subscribe(topics.CANCEL, self.cancel))
        self._undo.append(self.transport.serve(f"{topics.TRACKING}/scheduler/{self.id}", self.tracking))
        self._undo.append(self.transport.watch_tokens(topics.LIVE_EXECUTORS, self._membership))
        self._undo.append(self.transport.serve(f"{topics.STATUS}/scheduler/{self.id}", self.status))
        self._undo.append(self.transport.declare_token(topics.live_scheduler(self.id)))
        threading.Thread(target=self._expire_backlog, name="essa-scheduler-backlog", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        for undo in reversed(self._undo):
            undo.close()
        self._undo.clear()

    def status(self, _query: Message | None = None) -> Message:
        with self._lock:
            return {
                "role": "scheduler",
                "id": self.id,
                "placement": self.placement.name,
                "executors": {
                    e.id: {"in_flight": e.in_flight, "placed": e.placed, "modules": len(e.modules)}
                    for e in self.executors.values()
                },
                "in_flight": len(self._in_flight),
                "waiting": len(self._backlog),
            }

    # -- placing ---------------------------------------------------------------

    def place(self, request: Message, exclude: str | None = None) -> None:
        """Forward ``request`` to an executor, or keep it until one joins.

        A malformed request (:func:`essa.cluster.calls.check_request`) is answered
        with an error if it says where to answer, else dropped with a warning;
        so is one the transport refused to read (``oversized``).
        """
        problem = check_request(request, "scheduler")
        if problem is not None:
            self._refuse(request, problem)
            return
        if self.authorizer is not None and exclude is None:
            try:
                self.authorizer.check_call(request)
            except Refused as exc:
                _problems.warning("unauthorized", "refused call %.80s: %s", request["id"], exc.reason)
                self._fail(request, str(exc), kind=exc.kind)
                return
        with self._lock:
            target = self._choose(request, exclude)
            if target is not None:
                entry = self._in_flight.get(request["id"])
                if entry is None:
                    self._in_flight[request["id"]] = _InFlight(request, target.id)
                else:
                    entry.executor, entry.attempts = target.id, entry.attempts + 1
            elif len(self._backlog) < self.max_backlog:
                self._backlog.append((time.monotonic() + self.wait_for_executors, request))
                return
        if target is None:
            self._fail(request, f"no executor is available, and {self.max_backlog} calls already wait for one")
            return
        metrics.PLACED.inc()
        self.transport.publish(topics.executor_calls(target.id), request, patient=True)

    def _choose(self, request: Message, exclude: str | None) -> ExecutorState | None:  # lock held
        candidates = [e for e in self.executors.values() if e.id != exclude]
        if not candidates:
            return None
        target = self.placement.choose(candidates, request)
        target.in_flight += 1
        target.placed += 1
        return target

    def _refuse(self, request: Message, problem: str) -> None:
        """Answer a request that cannot be placed, if it says where; else drop it. One line either way."""
        call_id, reply_to = request.get("id"), request.get("reply_to")
        if isinstance(call_id, str) and topics.is_inbox(reply_to):
            _problems.warning("refused", "refused call %.80s: %s", call_id, problem)
            self._fail(request, problem, kind="message-size" if "oversized" in request else "invalid")
        else:
            _problems.warning("dropped", "dropped a call request: %s", problem)

    def _done(self, notice: Message) -> None:
        call_id, executor = notice.get("id"), notice.get("executor")
        if not (isinstance(call_id, str) and isinstance(executor, str)):
            _problems.warning("done", "ignored a malformed done notice (it needs 'id' and 'executor')")
            return
        with self._lock:
            entry = self._in_flight.pop(call_id, None)
            state = self.executors.get(executor)
            if state is not None and entry is not None and entry.executor == state.id:
                state.in_flight -= 1
                state.modules.add(entry.request["module"])

    # -- membership ------------------------------------------------------------

    def _membership(self, key: str, alive: bool) -> None:
        executor_id = last_segment(key)
        if alive:
            with self._lock:
                self.executors.setdefault(executor_id, ExecutorState(executor_id))
                backlog, self._backlog = self._backlog, []
            log.info("executor %s joined", executor_id)
            for _deadline, request in backlog:
                self.place(request)
            return
        with self._lock:
            self.executors.pop(executor_id, None)
            orphans = [e for e in self._in_flight.values() if e.executor == executor_id]
        if orphans:
            log.warning("executor %s went away with %d calls in flight", executor_id, len(orphans))
        else:
            log.info("executor %s left", executor_id)
        for entry in orphans:
            self._recover(entry, executor_id)

    def _recover(self, entry: _InFlight, dead: str) -> None:
        request = entry.request
        what = "the module" if request["function"] == START else display_name(request["function"])
        if request["function"] != START and entry.attempts < 2 and self.executors:
            log.warning("retrying %s (call %s) elsewhere: executor %s went away", what, request["id"], dead)
            self.place(request, exclude=dead)
            return
        with self._lock:
            self._in_flight.pop(request["id"], None)
        self._fail(request, f"executor {dead} went away while running {what}")

    def _fail(self, request: Message, message: str, reply: Message | None = None, kind: str = "unavailable") -> None:
        """Answer ``request`` with an error (never raises: the caller may be gone)."""
        reply = reply or reply_message(request["id"], EssaResult.UnknownError, message=message, exit=1, kind=kind)
        try:
            send_reply(self.transport, request["reply_to"], reply)
        except Exception as exc:
            _problems.warning("reply", "cannot answer call %.80s: %s", request.get("id"), describe(exc))

    def _expire_backlog(self) -> None:
        while not self._stopped.wait(0.25):
            try:
                now = time.monotonic()
                with self._lock:
                    expired = [r for deadline, r in self._backlog if deadline <= now]
                    if expired:
                        self._backlog = [(d, r) for d, r in self._backlog if d > now]
                for request in expired:
                    self._fail(request, f"no executor joined within {self.wait_for_executors:g} s")
            except Exception as exc:  # the loop must outlive any one failure
                _problems.warning("backlog", "backlog expiry failed: %s", describe(exc), exc_info=exc)

    # -- cancellation and liveness ---------------------------------------------

    def cancel(self, message: Message) -> None:
        """A run was cancelled: fail its calls that wait for an executor.

        Its running calls are ended by their executors, which got the same message.
        """
        run, reason = message.get("run"), message.get("reason", "cancelled")
        if not (topics.is_chunk(run) and isinstance(reason, str)):
            _problems.warning("cancel", "ignored a malformed cancel message (it needs a 'run' id and a 'reason')")
            return
        with self._lock:
            waiting = [r for _d, r in self._backlog if r["run"] == run]
            if waiting:
                self._backlog = [(d, r) for d, r in self._backlog if r["run"] != run]
        for request in waiting:
            what = "the module" if request["function"] == START else display_name(request["function"])
            self._fail(request, "", cancelled_reply(request["id"], what, reason[:200]))

    def tracking(self, query: Message) -> Message:
        """Which of ``query['ids']`` (at most 1000) this scheduler still tracks (waiting or in flight)."""
        ids = query.get("ids")
        if not isinstance(ids, list):
            return {"known": []}
        with self._lock:
            waiting = {r["id"] for _d, r in self._backlog}
            known = [i for i in ids[:1000] if isinstance(i, str) and (i in self._in_flight or i in waiting)]
        return {"known": known}
