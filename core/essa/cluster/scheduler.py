"""The scheduler: places calls on executors and answers for them.

A cluster runs any number of schedulers, all active, found through their
liveliness tokens (``essa/live/scheduler/<id>``) like executors. Each has its
own topics: it receives call requests on :func:`essa.cluster.topics.scheduler_calls`
(callers spread their calls over the live schedulers), asks its
:class:`Placement` policy for an executor, and forwards the request there,
stamped with its id. The executor replies to the caller directly and sends
the scheduler that placed the call a done notice carrying its load (its calls
queued and running, from every scheduler), so each scheduler knows its own
calls in flight on each executor, the others' share of its load as of its
last notice, and which modules each has loaded (it placed them there).
Schedulers share no state and never talk to each other: the load reports
ride on messages that exist anyway, where gossip between schedulers would
cost messages per call.

A call is tracked from the moment it is forwarded until its caller's receipt
(:func:`essa.cluster.topics.scheduler_received`) says the reply arrived: queued on
the executor, in transit to it, running, and *replied* (done notice in, no
receipt yet). The done notice alone is not enough: it travels to the
scheduler on another link than the reply to the caller, so under load it
arrives while the reply still waits in the executor's outgoing queue, and a
killed executor takes such replies with it. A reply the caller never
confirms (it went away) is forgotten after :attr:`Scheduler.receipt_timeout`.

Membership comes from liveliness tokens (``essa/live/executor/<id>``): a new
executor is used as soon as its token appears, in any start order. When a
token vanishes (the executor stopped or died), each call it had (whatever its
state, replied but unconfirmed included) whose caller does not confirm a
reply within :attr:`Scheduler.recover_after` (the receipts of replies that
reached their callers just before are on their way) is placed once more on
another executor under the same call id (a module's ``_start`` too), up to the
request's ``retries`` (its deployment's retry limit, default
:data:`DEFAULT_RETRIES`), or fails with a clear message when its retries
are used up or no executor is left. A request whose id is already tracked
for the same caller is a duplicate and is dropped. A request that may name
a call some executor already runs or finished (resubmitted by its caller
after its scheduler went away, or a remote call of a re-executed call, or
an id tracked here for another caller) is looked for on the executors
first (:mod:`essa.cluster.adopt`). Calls that arrive
while no executor is known wait up to ``wait_for_executors`` seconds (at most
:attr:`Scheduler.max_backlog` of them).

A cancel (:data:`essa.cluster.topics.CANCEL`) fails the run's waiting calls; the
executors end its running ones. Waiting callers ask which calls the scheduler
still tracks (:data:`essa.cluster.topics.TRACKING`). Malformed messages are refused
with one rate-limited line; no message can stop the scheduler's loops.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from dataclasses import dataclass

from essa.cluster import metrics, topics
from essa.cluster.adopt import Finder
from essa.cluster.authorize import Authorizer, Refused
from essa.cluster.calls import MAX_RECEIPTS, cancelled_reply, check_request, reply_message, send_reply
from essa.cluster.dag_runs import DagRuns
from essa.cluster.deployments import DEFAULT_RETRIES, display_name
from essa.placement import ExecutorState, Placement, call_keys
from essa.transport.base import Message, Transport, last_segment
from essa.util.ratelimit import RateLimitedLog, describe
from essa.wasm.abi import EssaResult
from essa.wasm.engine import START

log = logging.getLogger("essa.cluster.scheduler")
_problems = RateLimitedLog(log)


#: The executor of a call whose executor went away, until it is placed again.
_GONE = ""


@dataclass(slots=True)
class _Call:
    """A call placed on an executor, tracked until its caller confirms the reply."""

    #: The request as its caller sent it (the scheduler forwards a copy stamped with its id).
    request: Message
    executor: str
    #: How many times it was placed (a retry after its executor went away counts).
    attempts: int = 1
    #: When the executor's done notice came (``time.monotonic()``); ``None`` before.
    replied: float | None = None


class Scheduler:
    """Places calls arriving over ``transport`` on the executors it sees.

    :param placement: the placement policy (default :class:`Placement`).
    :param wait_for_executors: how long a call waits for a first executor.
    :param authorizer: if given, only calls whose token it allows are placed
        (:mod:`essa.cluster.authorize`); others are refused in one line.
    """

    #: Most calls kept waiting for an executor; more are refused at once.
    max_backlog = 100_000
    #: Seconds a replied call waits for its caller's receipt before it is forgotten.
    receipt_timeout = 60.0
    #: Seconds the calls of an executor that went away wait before they are placed again (0: at once). A
    #: reply that reached its caller just before the executor died is confirmed meanwhile (callers send
    #: receipts every 50 ms), so its call does not run a second time; only the others are placed again.
    recover_after = 1.0

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
        #: Every call placed and not confirmed by its caller, by id.
        self._calls: dict[str, _Call] = {}
        #: The ids of the replied ones (``_Call.replied`` set), oldest reply first.
        self._unconfirmed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._backlog: list[tuple[float, Message]] = []
        #: (when, executor, call ids): the calls of executors that went away, to place again then.
        self._orphans: list[tuple[float, str, list[str]]] = []
        self._lock = threading.Lock()
        self._undo: list = []
        self._stopped = threading.Event()
        self._finder: Finder | None = None
        #: DAG calls (:mod:`essa.cluster.dag_runs`): placed stage by stage, tracked until their receipt.
        self._dags = DagRuns(self)

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        metrics.SCHEDULER_IN_FLIGHT.set_function(lambda: len(self._calls) - len(self._unconfirmed))
        metrics.SCHEDULER_UNCONFIRMED.set_function(lambda: len(self._unconfirmed))
        metrics.SCHEDULER_WAITING.set_function(lambda: len(self._backlog))
        metrics.SCHEDULER_EXECUTORS.set_function(lambda: len(self.executors))
        metrics.serving("scheduler")
        self._finder = Finder(self.transport, self.id, self._adopt, self._answered_again, self._place_found)
        self._undo.append(self._finder)
        self._undo.append(self.transport.subscribe(topics.scheduler_calls(self.id), self.place))
        self._undo.append(self.transport.subscribe(topics.scheduler_done(self.id), self._done))
        self._undo.append(self.transport.subscribe(topics.scheduler_received(self.id), self._received))
        self._undo.append(self.transport.subscribe(topics.CANCEL, self.cancel))
        self._undo.append(self.transport.serve(f"{topics.TRACKING}/scheduler/{self.id}", self.tracking))
        self._undo.append(self.transport.watch_tokens(topics.LIVE_EXECUTORS, self._membership))
        self._undo.append(self.transport.serve(f"{topics.STATUS}/scheduler/{self.id}", self.status))
        self._undo.append(self.transport.declare_token(topics.live_scheduler(self.id)))
        threading.Thread(target=self._housekeeping, name="essa-scheduler-housekeeping", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        for undo in reversed(self._undo):
            undo.close()
        self._undo.clear()

    def status(self, _query: Message | None = None) -> Message:
        """What ``essa status`` shows of this scheduler.

        ``in_flight``: calls placed and not done; ``unconfirmed``: calls done
        whose callers have not confirmed the reply yet; ``waiting``: calls
        waiting for an executor; ``dags``: DAG calls placed and not confirmed;
        the same per executor (``placed``: calls placed there so far).
        """
        with self._lock:
            unconfirmed = collections.Counter(self._calls[i].executor for i in self._unconfirmed)
            return {
                "role": "scheduler",
                "id": self.id,
                "placement": self.placement.name,
                "executors": {
                    e.id: {"in_flight": e.in_flight, "others": e.others, "unconfirmed": unconfirmed[e.id],
                           "placed": e.placed, "modules": len(e.modules)}
                    for e in self.executors.values()
                },
                "in_flight": len(self._calls) - len(self._unconfirmed),
                "unconfirmed": len(self._unconfirmed),
                "waiting": len(self._backlog),
                "dags": len(self._dags),
            }

    # -- placing ---------------------------------------------------------------

    def place(self, request: Message) -> None:
        """Forward ``request`` to an executor, or keep it until one joins.

        A malformed request (:func:`essa.cluster.calls.check_request`) is answered
        with an error if it says where to answer, else dropped with a warning;
        so is one the transport refused to read (``oversized``). A request
        whose call is placed already (same id, same caller) is dropped: that
        call's reply answers it. One that may name a call an executor runs or
        finished already is looked for first (:mod:`essa.cluster.adopt`).
        """
        problem = check_request(request, "scheduler")
        if problem is not None:
            self._refuse(request, problem)
            return
        if "dag" in request:
            self._dags.place(request)
            return
        if self.authorizer is not None:
            try:
                self.authorizer.check_call(request)
            except Refused as exc:
                _problems.warning("unauthorized", "refused call %.80s: %s", request["id"], exc.reason)
                self._fail(request, str(exc), kind=exc.kind)
                return
        with self._lock:
            known = self._calls.get(request["id"])
            if known is not None and known.request["reply_to"] == request["reply_to"]:
                log.debug("dropped call %.80s: it is placed already", request["id"])
                return
            search = known is not None or request.get("adopt") is True
        if search:
            assert self._finder is not None
            self._finder.search(request)
            return
        self._place_found(request)

    def _place_found(self, request: Message) -> None:
        """Place ``request``, a call no executor runs (searched for, or new)."""
        with self._lock:
            self._forget(request["id"])  # tracked here for a caller that went away, found nowhere
            target = self._choose(request)
            if target is not None:
                self._calls[request["id"]] = _Call(request, target.id)
            elif len(self._backlog) < self.max_backlog:
                self._backlog.append((time.monotonic() + self.wait_for_executors, request))
                return
        if target is None:
            self._fail(request, f"no executor is available, and {self.max_backlog} calls already wait for one")
            return
        self._send(request, target)

    def _send(self, request: Message, target: ExecutorState, attempt: int = 1) -> None:
        metrics.PLACED.inc()
        forwarded = {**request, "scheduler": self.id}
        if attempt > 1:
            forwarded["attempt"] = attempt
        self.transport.publish(topics.executor_calls(target.id), forwarded, patient=True)

    def _adopt(self, request: Message, executor: str) -> None:
        """Track ``request``'s call, found running on ``executor`` (which now answers its caller and this scheduler)."""
        with self._lock:
            known = self._calls.get(request["id"])
            if known is not None and known.executor == executor and known.replied is None:
                known.request = request
                return
            self._forget(request["id"])
            state = self.executors.get(executor)
            if state is not None:
                state.in_flight += 1
                self._calls[request["id"]] = _Call(request, executor)
                return
        self._place_found(request)  # gone meanwhile: place it afresh

    def _answered_again(self, request: Message) -> None:
        """``request``'s call had finished on an executor, which sent its recorded reply again: track it no more."""
        with self._lock:
            self._forget(request["id"])

    def _forget(self, call_id: str) -> None:  # lock held
        known = self._calls.pop(call_id, None)
        if known is not None:
            self._unconfirmed.pop(call_id, None)
            if known.replied is None:
                self._ended_on_executor(known)

    def _choose(self, request: Message, candidates: list[ExecutorState] | None = None) -> ExecutorState | None:  # lock held
        """The executor for ``request``, counted as placed there (``candidates``: the executors' states, if the
        caller has them listed already)."""
        if candidates is None:
            candidates = list(self.executors.values())
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
        """An executor's done notice: the replies to ``ids`` have left it; they stay tracked until their receipts.

        It carries the executor's ``load`` (its calls queued and running,
        from every scheduler) when it was sent, and ``reads``: what those of
        the calls that read state read, for locality-aware placement (each
        scheduler learns from the notices of the calls it placed).
        """
        if notice.get("dag") is True:  # a DAG call's one notice, from the stage that answered it
            self._dags.done(notice)
            return
        ids, executor, load = notice.get("ids"), notice.get("executor"), notice.get("load", 0)
        if not (isinstance(ids, list) and isinstance(executor, str) and isinstance(load, int)):
            _problems.warning("done", "ignored a malformed done notice (it needs 'ids' and 'executor')")
            return
        now = time.monotonic()
        with self._lock:
            for call_id in ids[:MAX_RECEIPTS]:
                call = self._calls.get(call_id) if isinstance(call_id, str) else None
                if call is None or call.executor != executor or call.replied is not None:
                    continue  # confirmed already, or a late notice of an attempt placed again since
                call.replied = now
                self._unconfirmed[call_id] = None
                self._ended_on_executor(call)
            state = self.executors.get(executor)
            if state is not None:  # its calls from other schedulers: its load less what this one sees there
                state.others = max(0, load - state.in_flight)
            reads = notice.get("reads")
            if state is not None and isinstance(reads, list):
                self._observe(state, reads)

    def _observe(self, state: ExecutorState, reads: list) -> None:
        """Tell placement what the calls of a done notice read on ``state``'s executor (under the lock).

        Each record is ``[module, function, namespace, keys]`` (see
        :class:`essa.cluster.calls.IdBatches`); the state keys a call read are
        likely cached there now. Malformed records are skipped.
        """
        for record in reads[:MAX_RECEIPTS]:
            if not (isinstance(record, list) and len(record) == 4
                    and all(isinstance(f, str) for f in record[:3])):
                continue
            keys = call_keys({"keys": record[3]})
            if keys:
                self.placement.observe(state, {"module": record[0], "function": record[1], "namespace": record[2]},
                                       keys)

    def _received(self, receipt: Message) -> None:
        """A caller's receipt: the replies to ``receipt['ids']`` reached its inbox ``receipt['inbox']``."""
        ids, inbox = receipt.get("ids"), receipt.get("inbox")
        if not (isinstance(ids, list) and topics.is_inbox(inbox)):
            _problems.warning("receipt", "ignored a malformed receipt (it needs 'ids' and an 'inbox')")
            return
        with self._lock:
            if self._dags:
                self._dags.received(inbox, ids[:MAX_RECEIPTS])
            for call_id in ids[:MAX_RECEIPTS]:
                call = self._calls.get(call_id) if isinstance(call_id, str) else None
                if call is None or call.request["reply_to"] != inbox:
                    continue  # not ours, confirmed already, or not this caller's
                del self._calls[call_id]
                if call.replied is None:  # the reply overtook the done notice
                    self._ended_on_executor(call)
                else:
                    del self._unconfirmed[call_id]

    def _ended_on_executor(self, call: _Call) -> None:  # lock held
        """The load ``call`` put on its executor is gone (done notice or receipt, whichever came first)."""
        state = self.executors.get(call.executor)
        if state is not None:
            state.in_flight -= 1
            state.modules.add(call.request["module"])

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
            orphans = [call_id for call_id, call in self._calls.items() if call.executor == executor_id]
            replied = 0
            for call_id in orphans:
                # Off the executor (a restarted executor may come back under the same id: not its load).
                call = self._calls[call_id]
                call.executor = _GONE
                if call.replied is not None:
                    call.replied = None
                    del self._unconfirmed[call_id]
                    replied += 1
            if orphans and self.recover_after > 0:
                self._orphans.append((time.monotonic() + self.recover_after, executor_id, orphans))
        # Calls held for it are placed again below; its publisher is not needed any more.
        self.transport.forget(topics.executor_calls(executor_id))
        self.transport.forget(topics.executor_stages(executor_id))
        dags = self._dags.executor_gone(executor_id)
        if dags:
            log.warning("executor %s went away: %d DAG calls failed", executor_id, dags)
        if not orphans:
            log.info("executor %s left", executor_id)
            return
        log.warning("executor %s went away with %d calls in flight and %d replies not confirmed by their callers",
                    executor_id, len(orphans) - replied, replied)
        if self.recover_after <= 0:
            self._recover_all(executor_id, orphans)

    def _recover_due(self, now: float) -> None:
        """Place again (or fail) the calls of executors that went away ``recover_after`` s before ``now``."""
        with self._lock:
            due = [(executor, orphans) for when, executor, orphans in self._orphans if when <= now]
            if due:
                self._orphans = [entry for entry in self._orphans if entry[0] > now]
        for executor, orphans in due:
            self._recover_all(executor, orphans)

    def _recover_all(self, dead: str, orphans: list[str]) -> None:
        retried = failed = 0
        for call_id in orphans:
            placed = self._recover(call_id, dead)
            if placed is not None:
                retried, failed = retried + placed, failed + (not placed)
        confirmed = len(orphans) - retried - failed
        log.warning("calls of executor %s, which went away: %d placed again elsewhere, %d failed%s", dead, retried,
                    failed, f", {confirmed} confirmed by their callers meanwhile" if confirmed else "")

    def _recover(self, call_id: str, dead: str) -> bool | None:
        """Place call ``call_id`` of executor ``dead`` (gone) on another, or fail it; return whether it was placed.

        The same rules for every state the call may have been in (queued, in
        transit, running, replied but unconfirmed): placed once more (a
        module's ``_start`` too), unless it was retried ``request['retries']``
        times already or no executor is left. ``None``: its caller confirmed
        its reply meanwhile (nothing to do).
        """
        with self._lock:
            call = self._calls.get(call_id)
            if call is None or call.executor != _GONE:
                return None  # confirmed meanwhile
            request = call.request
            retries = request.get("retries", DEFAULT_RETRIES)
            retry = call.attempts <= retries
            # Any live executor: one restarted under the dead one's id (it joined meanwhile) too.
            target = self._choose(request) if retry else None
            if target is None:
                del self._calls[call_id]
            else:
                call.executor, call.attempts, call.replied = target.id, call.attempts + 1, None
        what = "the module" if request["function"] == START else display_name(request["function"])
        if target is None:
            why = ("no executor is left" if retry else
                   "it may not run again (retries 0)" if retries == 0 else f"its {retries} retries are used up")
            self._fail(request, f"executor {dead} went away while running {what}, and {why}")
            return False
        log.info("retrying %s (call %s) on executor %s: executor %s went away", what, call_id, target.id, dead)
        self._send(request, target, call.attempts)
        return True

    def _fail(self, request: Message, message: str, reply: Message | None = None, kind: str = "unavailable") -> None:
        """Answer ``request`` with an error (never raises: the caller may be gone)."""
        reply = reply or reply_message(request["id"], EssaResult.UnknownError, message=message, exit=1, kind=kind)
        try:
            send_reply(self.transport, request["reply_to"], reply)
        except Exception as exc:
            _problems.warning("reply", "cannot answer call %.80s: %s", request.get("id"), describe(exc))

    def _housekeeping(self) -> None:
        """Every 0.25 s: place again the calls of executors that went away; fail the calls that waited too long
        for an executor; forget unconfirmed replies."""
        while not self._stopped.wait(0.25):
            try:
                self._recover_due(time.monotonic())
                self._expire_backlog()
                self._expire_unconfirmed()
                self._dags.fail_overdue()
            except Exception as exc:  # the loop must outlive any one failure
                _problems.warning("housekeeping", "scheduler housekeeping failed: %s", describe(exc), exc_info=exc)

    def _expire_backlog(self) -> None:
        now = time.monotonic()
        with self._lock:
            expired = [r for deadline, r in self._backlog if deadline <= now]
            if expired:
                self._backlog = [(d, r) for d, r in self._backlog if d > now]
        for request in expired:
            self._fail(request, f"no executor joined within {self.wait_for_executors:g} s")

    def _expire_unconfirmed(self) -> None:
        """Forget the calls replied more than :attr:`receipt_timeout` ago whose caller sent no receipt.

        Their caller went away, or will find out with its liveness check
        (:meth:`essa.calls.Caller.check_liveness`) that the reply was lost.
        """
        cutoff = time.monotonic() - self.receipt_timeout
        forgotten = 0
        with self._lock:
            while self._unconfirmed:
                call_id = next(iter(self._unconfirmed))
                replied = self._calls[call_id].replied
                if replied is not None and replied > cutoff:
                    break
                del self._unconfirmed[call_id], self._calls[call_id]
                forgotten += 1
            forgotten += self._dags.expire(cutoff)
        if forgotten:
            log.info("forgot %d replied calls: their callers sent no receipt within %g s", forgotten,
                     self.receipt_timeout)

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
        """Which of ``query['ids']`` (at most 1000) this scheduler still tracks (waiting, placed or unconfirmed)."""
        ids = query.get("ids")
        if not isinstance(ids, list):
            return {"known": []}
        with self._lock:
            waiting = {r["id"] for _d, r in self._backlog}
            finder = self._finder
            known = [i for i in ids[:1000] if isinstance(i, str) and (
                i in self._calls or i in waiting or i in self._dags or (finder is not None and finder.searching(i)))]
        return {"known": known}
