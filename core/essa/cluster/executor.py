"""The executor: runs function calls of Wasm modules.

An executor subscribes to ``essa/executor/{id}/calls``, announces itself with
the liveliness token ``essa/live/executor/{id}``, and runs each placed call on
its work pool. While a guest runs, its host functions reach the rest of the
system through :class:`_CallHost`: remote calls start through the process's
:class:`~essa.cluster.calls.Caller`, state goes to the store under
``{namespace}/data/{key}``, and output is published to the run's output topic
so it reaches the ``essa run`` console (unless the caller reads none), and a
deployment's call's output is kept in the process's log book
(:mod:`essa.cluster.logbook`). The reply goes straight to the caller's
inbox; a notice to the scheduler tells it the call is done.

A cancel for a run (:data:`essa.cluster.topics.CANCEL`) ends the run's invocations
running here (:meth:`essa.wasm.invocation.Invocation.cancel`), fails the remote calls
they wait for, and refuses the run's calls still queued here when they start.

A call keeps its id when it is placed again (its executor died, or its
scheduler did and its caller sent it to another): a request whose id is
queued or running here already is not run twice, and a scheduler looking for
the call (:mod:`essa.cluster.adopt`) learns that it runs here, or gets the
recorded reply sent again if it finished here lately. A guest's remote calls
get ids derived from their parent's (:func:`essa.cluster.adopt.child_id`),
so a re-executed call's remote calls that finished answer from their
recorded result.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from essa.cluster import metrics, topics
from essa.cluster.adopt import FinishedReplies, check_find, child_id
from essa.cluster.authorize import REFUSED, Authorizer, Refused
from essa.cluster.calls import (
    LOCAL,
    Caller,
    IdBatches,
    call_request,
    cancelled_reply,
    check_request,
    reply_message,
    send_reply,
)
from essa.cluster.consistency import CallState, Snapshots, TrackedCall, check_fields
from essa.cluster.deployments import DEFAULT_RETRIES, display_name
from essa.cluster.logbook import LogBook, with_stderr
from essa.cluster.pool import WorkPool
from essa.cluster.programs import ProgramCache, publish_module
from essa.cluster.stages import Stages
from essa.cluster.stdin import RemoteStdin
from essa.cluster.tracing import span
from essa.errors import (
    CallCancelled,
    EssaError,
    GuestExit,
    GuestTrap,
    LimitExceeded,
    ModuleError,
    StoreError,
)
from essa.placement import MAX_CALL_KEYS
from essa.state.store import Store
from essa.transport.base import Message, Transport
from essa.util.ratelimit import RateLimitedLog, describe
from essa.wasm.abi import EssaResult, Output
from essa.wasm.engine import START
from essa.wasm.invocation import GuestFault, Invocation
from essa.wasm.invocation import current as current_invocation
from essa.wasm.limits import Grants

log = logging.getLogger("essa.cluster.executor")
_problems = RateLimitedLog(log)

_CALLABLE_STATUS = {
    "ok": EssaResult.Ok,
    "missing": EssaResult.NoSuchFunction,
    "bad-signature": EssaResult.InvalidFunctionSignature,
}


@dataclass
class ExecutorStats:
    """Counters an executor keeps (shown by ``essa status`` and used by tests)."""

    calls: int = 0
    runs: int = 0
    failures: int = 0
    cancelled: int = 0
    by_function: dict[str, int] = field(default_factory=dict)


class Executor:
    """Runs the calls the scheduler places on it.

    :param executor_id: unique among the cluster's executors.
    :param programs: compiled modules (shared by executors of one process).
    :param caller: starts the remote calls of this executor's guests.
    :param workers: threads for queued calls (blocked callers get helpers).
    :param authorizer: if given, only calls whose token it allows run
        (:mod:`essa.cluster.authorize`); others are refused in one line.
    :param logbook: where the output of deployments' calls is kept
        (:mod:`essa.cluster.logbook`; executors of one process share one).
    :param state: where guests' state goes (default: ``store``): the process's
        :class:`~essa.state.cache.CachedStore` when the store pushes updates.
    """

    #: Cancelled runs remembered, so that their queued calls are refused when they start.
    remembered_cancels = 10_000
    #: Seconds a done notice waits for others to share its message.
    done_linger = 0.005
    #: Seconds a DAG stage may take before the stages queued with it spread over more workers; a stage whose
    #: function last ran within it is *short* (see :meth:`submit_stages`).
    spread_after = 0.001
    #: Seconds the thread receiving stage inputs may spend running short stages itself before it hands the
    #: rest to the workers (see :meth:`submit_stages`).
    receiver_budget = 0.005
    #: Functions whose last stage run time is remembered (beyond it the record starts again).
    remembered_stage_times = 4096

    def __init__(
        self,
        executor_id: str,
        programs: ProgramCache,
        store: Store,
        transport: Transport,
        caller: Caller,
        workers: int = 1,
        authorizer: Authorizer | None = None,
        logbook: LogBook | None = None,
        state: Store | None = None,
    ) -> None:
        if not topics.is_chunk(executor_id):
            raise EssaError(
                f"executor ID {executor_id!r} must be 1-200 letters, digits or any of _.~+=:@,- (it names topics)"
            )
        self.id = executor_id
        self.programs = programs
        self.store = store
        self.state = state if state is not None else store
        self.snapshots = Snapshots(executor_id, transport, self.state)
        self.transport = transport
        self.caller = caller
        self.workers = workers
        self.authorizer = authorizer
        self.logbook = logbook or LogBook(executor_id)
        self.pool = WorkPool(workers, name=f"essa-executor-{executor_id}")
        self.stats = ExecutorStats()
        self._stats_lock = threading.Lock()
        self._undo: list[Any] = []
        self._calls: Any = None
        #: run -> the invocations of that run executing here
        self._running: dict[str, set[Invocation]] = {}
        #: cancelled run -> reason (the most recent :attr:`remembered_cancels`)
        self._cancelled: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._runs_lock = threading.Lock()
        #: Run times (seconds) of the most recent calls, for ``essa status`` and ``essa top``.
        self._recent: collections.deque[float] = collections.deque(maxlen=2000)
        #: The calls queued or running here, by id.
        self._active: dict[str, Message] = {}
        self._active_lock = threading.Lock()
        self._finished = FinishedReplies()
        # Done notices go out in batches (a few ms): one message per call was a fifth of a scheduler's CPU.
        self._done = IdBatches(transport, f"done-{executor_id}", topics.scheduler_done,
                               lambda: {"executor": self.id, "load": len(self._active)}, linger=self.done_linger)
        #: DAG stages: their inputs, and where their results go.
        self._stages = Stages(self)
        #: On a thread passing stage results on (``queues`` set): the stages of this executor they made ready.
        self._next_stages = threading.local()
        #: (module, function) -> seconds its last DAG stage ran.
        self._stage_times: dict[tuple[str, str], float] = {}

    def start(self) -> None:
        """Begin serving calls and announce this executor."""
        metrics.serving("executor")
        self._undo.append(self.transport.subscribe(topics.CANCEL, self.cancel))
        self._calls = self.transport.subscribe(topics.executor_calls(self.id), self.submit)
        self._undo.append(self.transport.subscribe(topics.executor_stages(self.id), self._stages.receive))
        self._undo.append(self.transport.serve(f"{topics.STATUS}/executor/{self.id}", self.status))
        self._undo.append(self.transport.serve(topics.executor_find(self.id), self.find))
        self._undo.append(self.snapshots.serve())
        self._undo.append(self.transport.declare_token(topics.live_executor(self.id)))

    def also_close(self, subscription: Any) -> None:
        """Close ``subscription`` when the executor stops (a service serving beside it)."""
        self._undo.append(subscription)

    def drain(self, timeout: float = 30.0) -> bool:
        """Stop taking calls and let the running ones finish; return whether they did."""
        if self._calls is not None:
            self._calls.close()
            self._calls = None
        return self.pool.wait_idle(timeout)

    def stop(self) -> None:
        if self._calls is not None:
            self._calls.close()
            self._calls = None
        for undo in reversed(self._undo):
            undo.close()
        self._undo.clear()
        self.pool.close()
        self._done.close()

    def status(self, _query: Message | None = None) -> Message:
        """Counters and cached modules, for ``essa status``."""
        with self._stats_lock:
            stats = asdict(self.stats)
        with self._runs_lock:
            running = sum(len(invocations) for invocations in self._running.values())
        recent = sorted(self._recent)
        return {
            "running": running,
            "latency_ms": {
                "p50": round(recent[len(recent) // 2] * 1e3, 3) if recent else None,
                "p99": round(recent[min(len(recent) - 1, int(len(recent) * 0.99))] * 1e3, 3) if recent else None,
            },
            "role": "executor",
            "id": self.id,
            "engine": self.programs.engine.artifact_tag,
            "workers": self.workers,
            "modules": sorted(self.programs.sources),
            "limits": asdict(self.programs.engine.limits),
            "grants": _describe(getattr(self.programs.engine, "grants", None) or Grants()),
            "logs": self.logbook.stats(),
            "cache": self.state.status() if self.state is not self.store else None,
            "snapshots": self.snapshots.status(),
            **stats,
        }

    def submit(self, request: Message) -> None:
        """Queue a placed call; its reply goes to the caller when it ends.

        A request that is malformed or larger than the message size limit is
        answered with ``UnknownError`` at once (or dropped with a warning if
        it does not even say where to answer); it never reaches the pool.
        """
        if not self._admit(request):
            return
        task = self.pool.submit(self._serve, request, time.time())
        LOCAL.tasks[request["id"]] = task  # lets a waiter of this process run it
        if task.started():  # a worker was quicker; it may have missed the entry
            LOCAL.tasks.pop(request["id"], None)

    def submit_stages(self, requests: list[Message], received: bool = False) -> None:
        """Queue DAG stages that became ready together (:mod:`essa.cluster.stages`), in a few pool tasks.

        Each is checked as :meth:`submit` checks a call. The ones admitted
        wait in one queue, which one pool task works through; after a stage
        that took longer than :attr:`spread_after` it asks for another, up to
        :attr:`workers` (so short stages, a fan-out's typical branches, cost no
        wake-up of a worker each nor turns at the interpreter lock between
        threads, and long ones still run side by side). Each task's results go
        on together (:meth:`Stages.finished_many`), and the stages of this
        executor they make ready (a fan-in, the next stage of a chain) go on
        on the same thread. No one
        waits on a stage's id, so stages skip what only calls need: a waiter
        running them inline, the record of recent replies (a DAG's stages
        are never looked for, nor placed again).

        ``received``: the caller is the thread that receives this executor's
        stage inputs. When nothing else is queued or running here and each
        stage is short (its function's last stage ran within
        :attr:`spread_after`), that thread runs them itself: waking a worker
        costs more than such a stage on a busy machine. It stops after
        :attr:`receiver_budget` seconds or after a stage slower than
        :attr:`spread_after`, the workers taking the rest (and the stages
        those make ready): more inputs wait at most for one stage that was
        short last time. A function never seen, or slow last time, starts on
        a worker.
        """
        admitted = collections.deque(request for request in requests if self._admit(request))
        if not admitted:
            return
        follow = getattr(self._next_stages, "queues", None)
        if follow is not None:  # made ready by stages that ended on this thread: it goes on with them
            follow.append((admitted, time.time(), [1]))
        elif received and self._idle_but(admitted) and self._short(admitted):
            self._serve_stages(admitted, time.time(), [1], time.monotonic() + self.receiver_budget)
        else:
            self.pool.submit(self._serve_stages, admitted, time.time(), [1])

    def _idle_but(self, queue: collections.deque) -> bool:
        """Whether the stages of ``queue`` are all this executor has queued or running."""
        with self._active_lock:
            return len(self._active) == len(queue)

    def _short(self, queue: collections.deque) -> bool:
        """Whether the last stage run of each function in ``queue`` took at most :attr:`spread_after`."""
        times, limit = self._stage_times, self.spread_after
        return all(times.get((request["module"], request["function"]), limit + 1) <= limit for request in queue)

    def _admit(self, request: Message) -> bool:
        """Check ``request`` (refusing it in one line) and count it as active; whether it may run."""
        problem = check_request(request, "executor", self.programs.engine.limits.max_message_bytes)
        if problem is None:
            problem = check_fields(request)
        if problem is None and self.authorizer is not None:
            try:
                self.authorizer.check_call(request)
            except Refused as exc:
                problem = str(exc)
        if problem is not None:
            self._refuse(request, problem)
            return False
        with self._active_lock:
            duplicate = request["id"] in self._active
            if not duplicate:
                self._active[request["id"]] = request
        if duplicate:
            log.debug("executor %s: call %.80s is queued or running here already", self.id, request["id"])
        return not duplicate

    def _refuse(self, request: Message, problem: str) -> None:
        call_id, reply_to = request.get("id"), request.get("reply_to")
        with self._stats_lock:
            self.stats.failures += 1
        if not (isinstance(call_id, str) and topics.is_inbox(reply_to)):
            _problems.warning("dropped", "executor %s: dropped a call request: %s", self.id, problem)
            return
        _problems.warning("refused", "executor %s: refused call %.80s: %s", self.id, call_id, problem)
        kind = "message-size" if "size limit" in problem else "refused" if problem.startswith(REFUSED) else "invalid"
        self._answer(request, reply_message(call_id, EssaResult.UnknownError, message=problem, exit=1, kind=kind))

    def _answer(self, request: Message, reply: Message, keys: list[str] | None = None) -> None:
        """Send ``reply`` to the caller and the done notice (with this executor's load) to the scheduler (never raises).

        The notice's batch also reports the state ``keys`` the call read (with
        the call's module, function and namespace), for locality-aware
        placement (see :class:`essa.cluster.calls.IdBatches`). A DAG stage's
        reply goes on to its downstream stages instead (:mod:`essa.cluster.stages`);
        the keys it read go to the scheduler that placed the DAG call the same
        way, under the stage's id, which that scheduler does not track.
        """
        try:
            if "dag_run" in request:
                self._stage_reads(request, keys)
                self._stages.finished(request, reply)
                return
            record = [request["module"], request["function"], request["namespace"], keys] if keys else None
            scheduler = request.get("scheduler")
            if scheduler is None:
                send_reply(self.transport, request["reply_to"], reply)
                return
            if self._active:
                send_reply(self.transport, request["reply_to"], reply)
                self._done.add(request["id"], scheduler, record)
            else:
                # An idle executor sends the notice at once, and before the reply: nothing else would share
                # its message soon, and the caller's next call then finds the scheduler's view of this
                # executor (its load, the keys its calls read) current. (A notice may come before its reply
                # anyway: the scheduler keeps the call until the caller's receipt.)
                self._done.add(request["id"], scheduler, record, now=True)
                send_reply(self.transport, request["reply_to"], reply)
        except Exception as exc:
            _problems.warning("answer", "executor %s: cannot answer call %.80s: %s", self.id, request["id"], describe(exc))

    def _stage_reads(self, request: Message, keys: list[str] | None) -> None:
        """Report the keys DAG stage ``request`` read, under its id, to the scheduler of its DAG call (it only learns)."""
        if keys:
            record = [request["module"], request["function"], request["namespace"], keys]
            self._done.add(request["id"], request["dag_scheduler"], record, now=not self._active)

    def _run(self, request: Message, read: list[str]) -> Message:
        """:meth:`execute`, whose failure of its own is the reply too (a caller is never left hanging)."""
        try:
            return self.execute(request, read)
        except Exception as exc:
            call_id = request["id"]
            _problems.warning("failed", "executor %s: call %.80s failed: %s", self.id, call_id, describe(exc), exc_info=exc)
            return reply_message(call_id, EssaResult.UnknownError, message=f"executor {self.id} failed: {describe(exc)}",
                                 kind="error")

    def _serve(self, request: Message, received: float) -> None:
        call_id = request["id"]
        LOCAL.tasks.pop(call_id, None)
        started = time.time()
        read: list[str] = []
        reply = self._run(request, read)
        ended = time.time()
        self._recent.append(ended - started)
        if request.get("trace") is True:
            self._publish_span(request, received, started, ended, reply)
        with self._active_lock:
            # Recorded before it leaves the active calls, so that a search always finds it one way or the other.
            self._finished.record(call_id, request["namespace"], reply)
            self._active.pop(call_id, None)
        self._answer(request, reply, read)
        metrics.calls_ended([_measured(request, reply, received, started, ended)])

    def _serve_stages(self, queue: collections.deque, received: float, tasks: list[int],
                      until: float | None = None) -> None:
        """Run DAG stages from ``queue`` until it is empty, pass their results on together, and go on with the
        stages of this executor they made ready (see :meth:`submit_stages`; ``tasks``: how many tasks work on
        ``queue``, in a list they share). ``until``: the receiving thread runs them, and hands what is left at
        that ``time.monotonic()`` (and any stage not short) to the workers."""
        work = [(queue, received, tasks)]
        ran: list[tuple] = []  # (request, reply, received, started, ended) of each stage that ran
        while work:
            queue, received, tasks = work.pop()
            if until is not None and (time.monotonic() > until or not self._short(queue)):
                self.pool.submit(self._serve_stages, queue, received, tasks)
                continue
            results = self._work_through(queue, received, tasks, ran, until)
            if not results:  # the other tasks took them all
                continue
            self._next_stages.queues = []  # what finished_many makes ready here: no worker to wake for it
            try:
                self._stages.finished_many(results)
            except Exception as exc:
                _problems.warning("answer", "executor %s: cannot pass on the results of DAG %.80s: %s", self.id,
                                  results[0][0]["dag_run"], describe(exc))
            finally:
                work.extend(reversed(self._next_stages.queues))
                self._next_stages.queues = None
        # Once every result went on (the stages they made ready here ran too): not on the DAGs' path.
        metrics.calls_ended([_measured(*stage) for stage in ran])

    def _work_through(self, queue: collections.deque, received: float, tasks: list[int],
                      ended_calls: list[tuple], until: float | None = None) -> list[tuple[Message, Message]]:
        """Run the stages of ``queue`` one after another; their requests and replies (appended to
        ``ended_calls`` too, with ``received`` and when each started and ended, for :func:`_measured`).
        ``until``: see :meth:`_serve_stages`."""
        results: list[tuple[Message, Message]] = []
        times = self._stage_times
        while True:
            try:
                request = queue.popleft()
            except IndexError:
                return results
            started = time.time()
            read: list[str] = []
            reply = self._run(request, read)
            ended = time.time()
            self._recent.append(ended - started)
            if len(times) >= self.remembered_stage_times:
                times.clear()
            times[(request["module"], request["function"])] = ended - started
            with self._active_lock:
                self._active.pop(request["id"], None)
            self._stage_reads(request, read)
            ended_calls.append((request, reply, received, started, ended))
            results.append((request, reply))
            if until is not None:  # the receiving thread: no other task works on this queue
                if queue and (ended - started > self.spread_after or time.monotonic() > until
                              or not self._short(queue)):
                    self.pool.submit(self._serve_stages, queue, received, tasks)  # it goes back to receiving
                    return results
                continue
            if queue and ended - started > self.spread_after and tasks[0] < self.workers:
                tasks[0] += 1  # long stages: another worker takes some (a race only adds one more task)
                self.pool.submit(self._serve_stages, queue, received, tasks)

    def _publish_span(self, request: Message, received: float, started: float, ended: float, reply: Message) -> None:
        try:
            self.transport.publish(topics.run_trace(request["run"]), span(request, self.id, received, started, ended, reply),
                                   patient=True)
        except Exception as exc:
            _problems.warning("span", "executor %s: cannot publish a span: %s", self.id, describe(exc))

    def find(self, query: Message) -> Message:
        """A scheduler looks for calls (see :mod:`essa.cluster.adopt`): which of them run here or finished here.

        A running one will answer the asking caller and scheduler; a finished
        one's recorded reply is sent again to the asking caller. Only calls
        of the namespace the asking request names are found.
        """
        checked = check_find(query)
        if checked is None:
            _problems.warning("find", "executor %s: ignored a malformed find query", self.id)
            return {"executor": self.id, "running": [], "finished": []}
        scheduler, calls = checked
        running, finished = [], []
        with self._active_lock:
            for call_id, reply_to, namespace in calls:
                request = self._active.get(call_id)
                if request is not None:
                    if request["namespace"] == namespace:
                        request["reply_to"], request["scheduler"] = reply_to, scheduler
                        running.append(call_id)
                    continue
                reply = self._finished.get(call_id, namespace)
                if reply is not None:
                    finished.append((call_id, reply_to, reply))
        for call_id, reply_to, reply in finished:
            try:
                # Marked: its caller may have the first one already (it was on its way when the caller moved
                # the call to another scheduler); a caller drops a second reply, and observers can tell it.
                send_reply(self.transport, reply_to, {**reply, "again": True})
            except Exception as exc:
                _problems.warning("answer", "executor %s: cannot answer call %.80s again: %s", self.id, call_id,
                                  describe(exc))
        return {"executor": self.id, "running": running, "finished": [f[0] for f in finished]}

    # -- cancellation --------------------------------------------------------------

    def cancel(self, message: Message) -> None:
        """End the calls of a cancelled run: ``{"run": RUN, "reason": TEXT}`` (see :data:`essa.cluster.topics.CANCEL`)."""
        run, reason = message.get("run"), message.get("reason", "cancelled")
        if not (topics.is_chunk(run) and isinstance(reason, str)):
            _problems.warning("cancel", "executor %s: ignored a malformed cancel message", self.id)
            return
        reason = reason[:200]
        with self._runs_lock:
            self._cancelled[run] = reason
            self._cancelled.move_to_end(run)
            while len(self._cancelled) > self.remembered_cancels:
                self._cancelled.popitem(last=False)
            running = list(self._running.get(run, ()))
        for invocation in running:
            invocation.cancel(reason)
        # Wake the run's guests that wait for remote results here.
        self.caller.cancel_run(run, reason)
        if running:
            log.info("executor %s: cancelled %d calls of run %s: %s", self.id, len(running), run, reason)

    def _begin(self, run: str, invocation: Invocation) -> None:
        metrics.CALLS_RUNNING.inc()
        with self._runs_lock:
            self._running.setdefault(run, set()).add(invocation)
            reason = self._cancelled.get(run)
        if reason is not None:  # cancelled before it started, or while it was being set up
            invocation.cancel(reason)

    def _end(self, run: str, invocation: Invocation) -> None:
        metrics.CALLS_RUNNING.dec()
        with self._runs_lock:
            invocations = self._running.get(run)
            if invocations is not None:
                invocations.discard(invocation)
                if not invocations:
                    del self._running[run]

    def execute(self, request: Message, read: list[str] | None = None) -> Message:
        """Run one call request to its end and return the reply message.

        A failed call's reply says what happened in ``message`` (one line,
        naming the function as users wrote it, ending with the last lines of
        the call's stderr, which ``stderr`` lists) and how in ``kind`` (see
        :func:`essa.cluster.calls.reply_message`). The guest's output goes to
        the run's output topic (unless the caller said it does not read it,
        ``"output": False``) and, for a deployment's call, into this
        executor's log book (:mod:`essa.cluster.logbook`). The first state
        keys the call read are appended to ``read``.
        """
        output = RunOutput(self.transport, request["run"], request["id"]) if request.get("output", True) else _NO_OUTPUT
        call_log = self.logbook.call_log(request, self.id, output)
        try:
            reply = self._execute(request, output, call_log, read)
        finally:
            call_log.close()
        if reply["code"] != EssaResult.Ok and request["function"] != START:
            tail = call_log.stderr_tail()
            if reply.get("message"):
                call_log.note(reply["message"])  # the log says why too
            reply = with_stderr(reply, tail)
        return reply

    def _execute(self, request: Message, output: "RunOutput", guest_output: Output,
                 read: list[str] | None = None) -> Message:
        call_id = request["id"]
        function = request["function"]
        is_run = function == START
        what = "the module" if is_run else display_name(function)
        # A guest's remote call that fails also warns on the run's console: its
        # caller only sees an error code. A client gets the message in the reply.
        nested = request.get("nested") is True
        with self._stats_lock:
            if is_run:
                self.stats.runs += 1
            else:
                self.stats.calls += 1
            by_function = self.stats.by_function
            if function in by_function or len(by_function) < 1000:  # names come from peers: bounded
                by_function[function] = by_function.get(function, 0) + 1
        with self._runs_lock:
            cancelled = self._cancelled.get(request["run"])
        if cancelled is not None:  # queued before its run was cancelled
            with self._stats_lock:
                self.stats.cancelled += 1
            return cancelled_reply(call_id, what, cancelled)
        if self.authorizer is not None:
            try:
                self.authorizer.check_module(request, self.authorizer.check_call(request))
            except EssaError as exc:  # refused, or the store cannot say which modules a deployment has
                self._failed()
                _problems.warning("refused", "executor %s: refused call %.80s: %s", self.id, call_id, exc)
                return reply_message(call_id, EssaResult.UnknownError, message=str(exc), exit=1,
                                     kind="refused" if isinstance(exc, Refused) else "error")
        stdin = (RemoteStdin(self.transport, request["run"], request.get("token") if self.authorizer else None)
                 if is_run and request.get("stdin") else None)
        try:
            if "wasm" in request and not self.programs.loaded(request["module"]):
                # a loaded module is in the store already: a call that touches no state needs no store
                publish_module(self.store, request["wasm"])
            program = self.programs.get(request["module"])
            status = program.info.callable_status(function)
            if is_run and status == "missing":
                raise ModuleError("the module has no _start function (is it a WASI command?)")
            if is_run and program.info.functions[START] != ((), ()):
                params, results = program.info.functions[START]
                raise ModuleError(
                    f"the module's _start has type ({', '.join(params)}) -> ({', '.join(results)}), "
                    "not () -> () (is it a WASI command?)"
                )
            if not is_run and status != "ok":
                why = "no such function" if status == "missing" else "it is not a callable function (i32) -> ()"
                return reply_message(call_id, _CALLABLE_STATUS[status], message=f"cannot call {what}: {why}",
                                     kind="no-such-function" if status == "missing" else "bad-signature")
            limits = self.programs.engine.limits
            host = _CallHost(self, program, request, guest_output, read)
            invocation = Invocation(request["args"], host, guest_output, limits, argv=request.get("argv", ()),
                                    stdin=stdin, clock=_call_clock(request))
            self._begin(request["run"], invocation)
            try:
                program.run(invocation, function, None if is_run else len(request["args"]))
            finally:
                self._end(request["run"], invocation)
                host.state.end()
        except CallCancelled as exc:
            with self._stats_lock:
                self.stats.cancelled += 1
            return cancelled_reply(call_id, what, str(exc))
        except GuestExit as exc:
            if invocation.exceeded or invocation.memory_refused:  # e.g. malloc failed, then exit(1)
                return self._over_limit(call_id, what, invocation.failure(str(exc)), output if nested else None,
                                        exc.status)
            if is_run:  # the guest's own way to fail; it printed why
                return reply_message(call_id, EssaResult.UnknownError, exit=exc.status, kind="exit")
            if nested:
                output.warn(f"remote call of {what} exited with status {exc.status}")
            return reply_message(call_id, EssaResult.UnknownError, message=f"{what} exited with status {exc.status}",
                                 kind="exit")
        except LimitExceeded as exc:
            return self._over_limit(call_id, what, exc, output if nested else None)
        except GuestTrap as exc:
            self._failed()
            if is_run:
                return reply_message(call_id, EssaResult.UnknownError, message=f"the module trapped: {exc}", exit=1,
                                     kind="trap")
            if nested:
                output.warn(f"remote call of {what} trapped: {exc}")
            return reply_message(call_id, EssaResult.UnknownError, message=f"{what} trapped: {exc}", kind="trap")
        except EssaError as exc:  # a module that cannot be loaded, a store failure, ...
            self._failed()
            if nested:
                output.warn(f"remote call of {what} failed: {exc}")
            return reply_message(call_id, EssaResult.UnknownError, message=str(exc), exit=1,
                                 kind="module" if isinstance(exc, ModuleError) else "error")
        finally:
            if stdin is not None:
                stdin.close()
        if invocation.exceeded is not None:  # an engine that let the guest finish (wasmtime: output)
            return self._over_limit(call_id, what, invocation.failure(""), output if nested else None)
        if host.state.write_error is not None:
            self._failed()
            return reply_message(call_id, EssaResult.UnknownError, exit=1, kind="error",
                                 message=f"{what}: its writes were not stored: {host.state.write_error}")
        if is_run:
            return reply_message(call_id, EssaResult.Ok, exit=0)
        if invocation.result is None:
            if invocation.refused_result is not None:
                message = f"{what} returned no result: it refused {invocation.refused_result}"
                return reply_message(call_id, EssaResult.UnknownError, message=message, kind="message-size")
            return reply_message(call_id, EssaResult.NoResult, message=f"{what} returned without essa_set_result",
                                 kind="no-result")
        clock = invocation.clock_end()
        return reply_message(call_id, EssaResult.Ok, value=invocation.result, **host.state.reply_extra(),
                             **({} if clock is None else {"clock": clock}))

    def _over_limit(self, call_id: str, what: str, exc: LimitExceeded, output: "RunOutput | None",
                    status: int = 1) -> Message:
        """The reply to a call that exceeded a limit, and the warning on the run's console (``output``)."""
        self._failed()
        kind = f"{exc.limit.replace(' ', '-')}-limit" if exc.limit != "message size" else "message-size"
        if what == "the module":
            return reply_message(call_id, EssaResult.UnknownError, message=f"the module's {START}: {exc}", exit=status,
                                 kind=kind)
        if output is not None:
            output.warn(f"remote call of {what}: {exc}")
        return reply_message(call_id, EssaResult.UnknownError, message=f"{what}: {exc}", kind=kind)

    def _failed(self) -> None:
        with self._stats_lock:
            self.stats.failures += 1


def _measured(request: Message, reply: Message, received: float, started: float, ended: float) -> tuple:
    """What the metrics count of a call that ended (an item of :func:`metrics.calls_ended`)."""
    kind = reply.get("kind") or "error"
    outcome = "ok" if reply["code"] == EssaResult.Ok else kind
    function = "-" if kind in ("no-such-function", "bad-signature", "invalid") else display_name(request["function"])
    return (metrics.label(request.get("deployment")), function, outcome, started - received, ended - started,
            len(request["args"]), len(reply.get("value", b"")))


def _call_clock(request: Message) -> int | None:
    """The realtime clock of a call that may be executed again (see :meth:`Invocation.realtime_ns`), else ``None``.

    A deployment with ``retries`` 0 never runs a call twice: its guests read the system's clock.
    """
    clock = request.get("clock")
    return clock if clock is not None and request.get("retries", DEFAULT_RETRIES) > 0 else None


def _describe(grants: Grants) -> dict:
    """Grants for ``essa status``: directories, and environment variable names (not values)."""
    return {
        "dirs": [f"{g.host}:{g.guest}:{'rw' if g.writable else 'ro'}" for g in grants.dirs],
        "env": sorted(key for key, _value in grants.env),
    }


class RunOutput:
    """A guest's stdout/stderr, published to its run's output topic.

    Large writes go out in chunks of at most :attr:`chunk` bytes, so no output
    message is larger than that. Each message names its call and its number
    within the call's output (``call``, ``n``): a re-executed call's output
    carries the same numbers, and the client shows each number once
    (:class:`essa.cluster.client.OutputOnce`).
    """

    __slots__ = ("_transport", "_topic", "_call", "_n")

    chunk = 1 << 20

    def __init__(self, transport: Transport, run: str, call_id: str = "") -> None:
        self._transport = transport
        self._topic = topics.run_output(run)
        self._call = call_id
        self._n = 0

    def write(self, stream: int, data: bytes) -> None:
        chunk = self.chunk
        view = memoryview(data) if len(data) > chunk else None
        for start in range(0, max(len(data), 1), chunk):
            self._n += 1
            piece = data if view is None else bytes(view[start : start + chunk])
            self._transport.publish(self._topic, {"stream": stream, "data": piece, "call": self._call, "n": self._n},
                                    patient=True)

    def warn(self, message: str) -> None:
        self.write(2, f"essa: {message}\n".encode())


class _NoOutput:
    """The output of a call whose caller does not read it (``"output": False``): nowhere (its log keeps it)."""

    __slots__ = ()

    def write(self, stream: int, data: bytes) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


_NO_OUTPUT = _NoOutput()


class _CallHost:
    """The ABI's view of the runtime, for one invocation."""

    __slots__ = ("_executor", "_program", "_request", "_output", "_prefix", "_read_only", "_children", "state",
                 "_read")

    def __init__(self, executor: Executor, program, request: Message, output, read: list[str] | None = None) -> None:
        self._executor = executor
        self._program = program
        self._request = request
        self._output = output
        self._prefix = f"{request['namespace']}/data/"
        authorizer = executor.authorizer
        self._read_only = authorizer is not None and authorizer.read_only(request)
        self._children = 0
        #: the first keys the call read (:data:`essa.placement.MAX_CALL_KEYS`), for placement
        self._read = read if read is not None else []
        #: the call's view of the state at its consistency level
        self.state = CallState(request, executor.id, executor.state, executor.snapshots)

    def function_status(self, name: str) -> EssaResult:
        return _CALLABLE_STATUS[self._program.info.callable_status(name)]

    def start_call(self, name: str, args: bytes):
        req = self._request
        extra = {"trace": True, "parent": req["id"], "sent": time.time()} if req.get("trace") is True else {}
        if "argv" in req:
            extra["argv"] = req["argv"]  # remote calls see the run's arguments too
        if "token" in req:
            extra["token"] = req["token"]  # and run with its authorization: same module, same namespace
        for key in ("deployment", "version", "output", "retries"):  # the deployment's (metrics, logs, retry limit)
            if key in req:
                extra[key] = req[key]
        if req.get("attempt", 1) > 1 or req.get("adopt") is True:
            extra["adopt"] = True  # an earlier execution may have started this call already
        extra.update(self.state.request_extra())  # and at its consistency level
        extra["clock"] = current_invocation().realtime_ns()  # the same in every execution of this call
        try:
            self.state.store_writes()  # the callee (on any executor) sees what this call wrote
        except StoreError as exc:  # the guest traps: it was told its writes were made
            raise GuestFault(f"the call's writes were not stored: {exc}") from None
        self._children += 1
        future = self._executor.caller.start(call_request(req["module"], name, args, req["namespace"], req["run"],
                                                          nested=True, **extra),
                                             child_id(req["id"], self._children))
        return future if "consistency" not in extra else TrackedCall(future, self.state)

    def get_state(self, key: str) -> bytes | None:
        read = self._read
        if len(read) < MAX_CALL_KEYS and key not in read:
            read.append(key)
        with metrics.store_operation("get"):
            return self.state.get(self._prefix + key)

    def merge_state(self, key: str, value: bytes) -> None:
        if self._read_only:
            raise StoreError(f"the call's token is read-only: it cannot write namespace {self._request['namespace']!r}")
        with metrics.store_operation("put"):
            self.state.put(self._prefix + key, value)

    def warn(self, message: str) -> None:
        self._output.warn(f"{display_name(self._request['function'])}: {message}")
