"""The call protocol, on top of any transport's publish/subscribe.

A call travels as three one-way messages::

    caller --(essa/scheduler/S/calls)--> scheduler S --(essa/executor/E/calls)--> executor E
    caller <-----------------------(the caller's reply inbox)------------------------+

A request carries its id, the caller's inbox (``reply_to``), the module, the
function, the argument bytes, the state namespace and the run it belongs to.
A cluster may run several schedulers: a caller sends each call to one of
the live ones in turn, and that one places it. The executor answers the
caller directly and tells the scheduler that placed the call (the request's
``scheduler``) that it is done (``essa/scheduler/S/done``), so the scheduler
knows every executor's load. The caller confirms the replies it received to
that scheduler, in batches (``essa/scheduler/S/received``, see
:class:`Receipts`): until then the
scheduler keeps the call, and places it again if its executor dies, since a
reply can still be on its way when the executor's done notice arrives, and
dies with the executor. A call keeps its id wherever it is placed.

Within one process two shortcuts keep calls cheap: a reply to an inbox of this
process is handed over without the transport, and a caller waiting for a call
that is still queued on an executor of this process runs it itself (see
:mod:`essa.cluster.pool`), so waiting never starves the executors.

No wait hangs: when a scheduler's liveliness token vanishes, a caller sends
its calls pending there to another scheduler with the same ids (they fail
only when no scheduler appears within the caller's timeout, or
:attr:`Caller.failover_wait` for a call without one), and every
:attr:`Caller.liveness_interval` it asks
the schedulers whether they still track the calls it has waited for that
long; a call no scheduler knows twice in a row fails (the cluster lost it:
a scheduler keeps a call until its receipt, so that takes a scheduler that
restarted, or a reply lost by a live executor and not confirmed within the
scheduler's ``receipt_timeout``).
A cancelled run (:data:`essa.cluster.topics.CANCEL`) fails its pending calls at once.

Messages from peers are checked before use (:func:`check_request`,
:func:`check_reply`); a malformed one is refused in one line.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
import zlib
from typing import Any, Callable

from essa.cluster import topics
from essa.cluster.deployments import MAX_RETRIES
from essa.cluster.pool import Task, blocking
from essa.transport.base import Message, Subscription, Transport, last_segment
from essa.util.ratelimit import RateLimitedLog, describe
from essa.util.units import format_bytes
from essa.wasm.abi import CallOutcome, EssaResult

log = logging.getLogger("essa.cluster.calls")
_problems = RateLimitedLog(log)

#: Longest id, module name, function name or namespace a request may carry.
MAX_NAME = 1024
#: Most call ids one receipt confirms (a scheduler ignores more).
MAX_RECEIPTS = 1000


def call_request(module: str, function: str, args: bytes, namespace: str, run: str, **extra) -> Message:
    """A call request without id and inbox (:meth:`Caller.start` adds them)."""
    return {"module": module, "function": function, "args": args, "namespace": namespace, "run": run, **extra}


def reply_message(call_id: str, code: EssaResult, value: bytes = b"", message: str = "", **extra) -> Message:
    """The answer to call ``call_id``: an :class:`EssaResult` code with value or message.

    A failed call's reply also says how it failed, in ``kind``: ``trap``,
    ``time-limit``, ``memory-limit``, ``output-limit``, ``message-size``,
    ``exit``, ``no-result``, ``no-such-function``, ``bad-signature``,
    ``module`` (the module cannot be used), ``cancelled``, ``unavailable``
    (no executor, no scheduler, or the call was lost), ``invalid`` (a
    malformed request) or ``error``.
    """
    return {"id": call_id, "code": int(code), "value": value, "message": message, **extra}


def outcome(reply: Message) -> CallOutcome:
    """The :class:`CallOutcome` a reply message (checked by :func:`check_reply`) stands for."""
    stderr = reply.get("stderr", ())
    if not (isinstance(stderr, list) and len(stderr) <= 20 and all(isinstance(line, str) for line in stderr)):
        stderr = ()
    clock = reply.get("clock")
    if isinstance(clock, bool) or not isinstance(clock, int) or not 0 <= clock < 1 << 63:
        clock = None
    return CallOutcome(EssaResult(reply["code"]), reply.get("value", b""), reply.get("message", ""),
                       reply.get("kind", ""), tuple(stderr), reply["id"], clock)


def cancelled_reply(call_id: str, what: str, reason: str) -> Message:
    """The answer to a call that was cancelled (``reason`` says by whom)."""
    return reply_message(call_id, EssaResult.UnknownError, message=f"{what} was cancelled: {reason}",
                         cancelled=True, exit=1, kind="cancelled")


_CODES = frozenset(int(code) for code in EssaResult)


def check_reply(reply: Message) -> Message | None:
    """``reply`` if it is a well-formed reply message, else ``None`` (it is then ignored)."""
    if not isinstance(reply.get("id"), str):
        return None
    code, value, message, exit_status = reply.get("code"), reply.get("value", b""), reply.get("message", ""), reply.get("exit")
    if (
        not isinstance(code, int) or code not in _CODES
        or not isinstance(value, (bytes, bytearray))
        or not isinstance(message, str)
        or not isinstance(reply.get("kind", ""), str)
        or not (exit_status is None or (isinstance(exit_status, int) and 0 <= exit_status <= 255))
    ):
        return None
    return reply


def check_request(request: Message, receiver: str, max_message_bytes: int | None = None) -> str | None:
    """Why a call request cannot be placed or run (one line), or ``None`` if it can.

    :param receiver: who checks, for the message: ``"scheduler"``, ``"executor"``.
    :param max_message_bytes: also refuse arguments or a module larger than this.
    """
    if not isinstance(request, dict):
        return "not a call request"
    get = request.get
    call_id = get("id")
    if not isinstance(call_id, str) or not 0 < len(call_id) <= MAX_NAME:
        return "malformed call request: 'id' is missing, not a string or too long"
    if not topics.is_inbox(get("reply_to")):
        return "malformed call request: 'reply_to' is not a caller's inbox (essa/inbox/...)"
    if "oversized" in request:  # the transport refused to read it (see essa.transport.zenoh)
        return f"the call request of {request['oversized']} bytes exceeds the {receiver}'s message size limit"
    for key in _NAMES:
        value = get(key)
        if not isinstance(value, str) or len(value) > MAX_NAME:
            return f"malformed call request: {key!r} is missing, not a string or too long"
    if not topics.is_chunk(get("run")):
        return "malformed call request: 'run' is not a run id"
    # The optional fields are checked only when present: a scheduler checks every call it places.
    if "argv" in request:
        argv = request["argv"]
        if not isinstance(argv, list) or not all(isinstance(arg, str) and "\0" not in arg for arg in argv):
            return "malformed call request: 'argv' is not a list of strings"
    for flag in _FLAGS:
        if flag in request and not isinstance(request[flag], bool):
            return f"malformed call request: {flag!r} is not a boolean"
    for key, most in _COUNTS:
        if key in request:
            value = request[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
                return f"malformed call request: {key!r} is not a whole number from 0 to {most}"
    clock = get("clock", 0)
    if isinstance(clock, bool) or not isinstance(clock, int) or not 0 <= clock < 1 << 63:
        return "malformed call request: 'clock' is not a time in nanoseconds since 1970"
    if "scheduler" in request and not topics.is_chunk(request["scheduler"]):
        return "malformed call request: 'scheduler' is not a scheduler id"
    for key in _BYTES:
        value = get(key, b"")
        if not isinstance(value, (bytes, bytearray)):
            return f"malformed call request: {key!r} is not bytes"
        if max_message_bytes is not None and len(value) > max_message_bytes:
            what = "arguments" if key == "args" else "module"
            return (
                f"the call's {what} of {len(value)} bytes exceed the message size limit "
                f"({format_bytes(max_message_bytes)}) of this {receiver}"
            )
    return None


_NAMES = ("module", "function", "namespace")
_FLAGS = ("stdin", "output", "adopt")
_COUNTS = (("retries", MAX_RETRIES), ("attempt", MAX_RETRIES + 1))
_BYTES = ("args", "wasm")


class IdBatches:
    """Sends call ids to the schedulers, many to a message: receipts and done notices.

    Each id goes to one scheduler's topic (``topic(scheduler)``). The ids
    gathered while one message is sent, or in ``linger`` seconds after the
    first, go out together as ``{**fields(), "ids": [...]}``, at most
    :attr:`most` to a message. One thread, waiting for ids.

    An id may come with a record (done notices: ``[module, function,
    namespace, keys]``, the state keys the call read, for placement, see
    :meth:`essa.placement.Placement.observe`); the records of a message's
    ids go in it as ``"reads": [record, ...]`` (only calls that read keys
    have one, so most messages carry none).
    """

    #: Most ids in one message.
    most = MAX_RECEIPTS
    #: Most ids kept unsent (a scheduler forgets unconfirmed calls on its own, later).
    limit = 100_000

    def __init__(self, transport: Transport, name: str, topic: Callable[[str], str], fields: Callable[[], Message],
                 linger: float) -> None:
        self._transport = transport
        self._name = name
        self._topic = topic
        self._fields = fields
        #: Seconds the first id waits for others to share its message.
        self.linger = linger
        #: scheduler id -> the ids to send it
        self._ids: dict[str, list[str]] = {}
        #: scheduler id -> (index of the id in its list, record) of the ids that came with one
        self._records: dict[str, list[tuple[int, Any]]] = {}
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"essa-{name}", daemon=True)
        self._thread.start()

    def add(self, call_id: str, scheduler: str, record: Any = None, now: bool = False) -> None:
        """Send ``call_id`` to ``scheduler`` (soon), and ``record`` with it unless ``None``.

        With ``now``, the ids gathered go at once, from this thread (an
        executor with nothing else running: no other id is coming soon, and
        the schedulers' view of its load and of what its calls read stays
        current; a thread hop would let the caller's next call overtake it).
        """
        with self._cond:
            if self._count >= self.limit:
                _problems.warning(self._name, "%s: %d ids unsent; dropped one", self._name, self._count)
                return
            ids = self._ids.setdefault(scheduler, [])
            if record is not None:
                self._records.setdefault(scheduler, []).append((len(ids), record))
            ids.append(call_id)
            self._count += 1
            if now:
                batches, records, self._ids, self._records, self._count = self._ids, self._records, {}, {}, 0
            else:
                if self._count == 1:
                    self._cond.notify()
                return
        self._send(batches, records)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._count or self._closed)
                if not self._closed:
                    self._cond.wait(self.linger)  # more may come; close() ends the wait
                batches, records, self._ids, self._records, self._count = self._ids, self._records, {}, {}, 0
                closed = self._closed
            self._send(batches, records)
            if closed:
                return

    def _send(self, batches: dict[str, list[str]], records: dict[str, list[tuple[int, Any]]]) -> None:
        for scheduler, ids in batches.items():
            kept = records.get(scheduler, ())
            for start in range(0, len(ids), self.most):
                message = {**self._fields(), "ids": ids[start : start + self.most]}
                reads = [r for i, r in kept if start <= i < start + self.most]
                if reads:
                    message["reads"] = reads
                try:
                    self._transport.publish(self._topic(scheduler), message)
                except Exception as exc:  # the loop must outlive any one failure
                    _problems.warning(self._name, "%s: cannot send: %s", self._name, describe(exc))

    def close(self, timeout: float = 2.0) -> None:
        """Send the ids gathered so far (waiting up to ``timeout`` s), then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


class Receipts(IdBatches):
    """Tells the schedulers which replies reached a caller (inbox ``inbox``).

    Each id goes to the scheduler that placed its call, on its
    :func:`essa.cluster.topics.scheduler_received` topic, with the ids
    gathered within :attr:`linger` seconds; a scheduler forgets those calls
    then (see :mod:`essa.cluster.scheduler`).
    """

    def __init__(self, transport: Transport, inbox: str, linger: float = 0.05) -> None:
        fields = {"inbox": inbox}
        super().__init__(transport, f"receipts-{last_segment(inbox)}", topics.scheduler_received, lambda: fields,
                         linger)


class CallFailed(Exception):
    """Raised inside the protocol to fail a pending call with a message."""


class _LocalRegistry:
    """Calls queued on this process's executors, and this process's inboxes."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.inboxes: dict[str, "Caller"] = {}
        self.lock = threading.Lock()


LOCAL = _LocalRegistry()


class CallFuture:
    """A started call; :meth:`result` waits for its reply message."""

    __slots__ = ("id", "run", "started", "_event", "_reply", "_callbacks", "_lock", "_request", "_scheduler",
                 "_orphaned", "_patience")

    def __init__(self, call_id: str, run: str = "") -> None:
        self.id = call_id
        # What its caller sent, and to which scheduler (``None`` while no
        # scheduler is live): resubmitted to another when that one goes away.
        self._request: Message | None = None
        self._scheduler: str | None = None
        #: Since when it waits for a scheduler (``time.monotonic()``), or ``None``.
        self._orphaned: float | None = None
        #: Seconds it may wait for a scheduler (its caller's timeout), or ``None``: :attr:`Caller.failover_wait`.
        self._patience: float | None = None
        #: The run the call belongs to (cancelling the run fails the call).
        self.run = run
        #: When it started (``time.monotonic()``).
        self.started = time.monotonic()
        # Made by the first waiter that has to block (a call run inline by its
        # own waiter, the common case within a process, never needs one).
        self._event: threading.Event | None = None
        self._reply: Message | None = None
        self._callbacks: list[Callable[["CallFuture"], None]] = []
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self._reply is not None

    def result(self, timeout: float | None = None) -> Message:
        """The reply message; raises :class:`TimeoutError` after ``timeout`` seconds."""
        if self._reply is None:
            task = LOCAL.tasks.get(self.id)
            if task is not None:
                task.help()  # still queued here: run it on this thread
            if self._reply is None:
                with self._lock:
                    event = self._event
                    if event is None and self._reply is None:
                        event = self._event = threading.Event()
                if event is not None:
                    with blocking():
                        if not event.wait(timeout):
                            raise TimeoutError(f"no reply to call {self.id} after {timeout} s")
        assert self._reply is not None
        return self._reply

    def wait(self, timeout: float | None = None) -> CallOutcome:
        """The outcome, for :class:`essa.wasm.abi.PendingCall`."""
        return outcome(self.result(timeout))

    def add_done_callback(self, callback: Callable[["CallFuture"], None]) -> None:
        with self._lock:
            if self._reply is None:
                self._callbacks.append(callback)
                return
        callback(self)

    def _complete(self, reply: Message) -> None:
        with self._lock:
            if self._reply is not None:
                return  # a late duplicate (e.g. after a retry)
            self._reply = reply
            if self._event is not None:
                self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)


class Caller:
    """Starts calls and receives their replies in its own inbox.

    One per process is enough (executors share it); a client has its own.
    A caller knows the live schedulers by their liveliness tokens. It sends
    its calls to one of them, its *home* (picked by its id, so callers spread
    over the schedulers), while it has fewer than :attr:`spread_above` calls
    pending, and to all of them in turn above that: a caller that waits for
    one call at a time keeps the path it has warmed up (measured: about 0.07
    ms less per round trip than alternating), and a busy one spreads its
    load. When a scheduler's token vanishes, the calls pending
    with it are sent again, with the same ids, to another one (marked
    ``adopt``: that scheduler first asks the executors whether one of them
    runs or just finished it, see :mod:`essa.cluster.adopt`); with no
    scheduler left they wait up to :attr:`failover_wait` seconds for one,
    then fail with a clear message instead of hanging.
    """

    #: How long :meth:`start` waits for a scheduler to be seen before failing the call.
    scheduler_wait = 2.0
    #: Seconds a pending call whose scheduler went away waits for another before it fails.
    failover_wait = 30.0
    #: Seconds between two liveness checks of the calls this caller waits for.
    liveness_interval = 5.0
    #: With this many calls pending or more, calls go to every scheduler in turn (else to the home one).
    spread_above = 8

    def __init__(self, transport: Transport, name: str = "caller") -> None:
        self.transport = transport
        self.id = f"{name}-{uuid.uuid4().hex[:12]}"
        self.inbox = topics.inbox(self.id)
        self._pending: dict[str, CallFuture] = {}
        self._counter = itertools.count(1)
        self._turn = itertools.count()
        self._home = zlib.crc32(self.id.encode())
        #: The latest clock a reply of this caller ended at (see :meth:`start`).
        self._clock = 0
        self._lock = threading.Lock()
        self._receipts = Receipts(transport, self.inbox)
        self._subscriptions: list[Subscription] = [transport.subscribe(self.inbox, self.deliver)]
        #: The live schedulers' ids, sorted (calls go to them in turn).
        self._schedulers: list[str] = []
        self._scheduler_seen = threading.Condition(self._lock)
        self._subscriptions.append(transport.watch_tokens(topics.LIVE_SCHEDULERS, self._on_scheduler))
        self._closed = threading.Event()
        #: Calls no scheduler knew at the last liveness check.
        self._unknown: set[str] = set()
        with LOCAL.lock:
            LOCAL.inboxes[self.inbox] = self
        threading.Thread(target=self._watch, name=f"essa-liveness-{self.id}", daemon=True).start()

    def start(self, request: Message, call_id: str | None = None, patience: float | None = None) -> CallFuture:
        """Send ``request`` (see :func:`call_request`) to a scheduler.

        :param call_id: the call's id (default: a fresh one); a guest's remote
            calls have ids derived from their parent's, so that a re-executed
            parent's calls keep theirs (see :mod:`essa.cluster.adopt`).
        :param patience: how long the call may wait for a scheduler once its
            own went away with no other left (its caller's timeout); default
            :attr:`failover_wait`.
        """
        call_id = call_id or f"{self.id}/{next(self._counter)}"
        future = CallFuture(call_id, request.get("run", ""))
        future._patience = patience
        # id and inbox first: a receiver that refuses an oversized message
        # reads only those (see essa.transport.zenoh) to answer it. The clock
        # goes with the call wherever it is sent again (essa.wasm.invocation).
        message = {"id": call_id, "reply_to": self.inbox, "clock": max(time.time_ns(), self._clock), **request}
        with self._lock:
            if not self._scheduler_seen.wait_for(lambda: self._schedulers, self.scheduler_wait):
                future._complete(reply_message(call_id, EssaResult.UnknownError, message="no scheduler is reachable",
                                               kind="unavailable"))
                return future
            scheduler = self._next_scheduler()
            future._request, future._scheduler = message, scheduler
            self._pending[call_id] = future
        try:
            self.transport.publish(topics.scheduler_calls(scheduler), message, patient=True)
        except Exception as exc:
            self._settle(reply_message(call_id, EssaResult.UnknownError, message=f"cannot send the call: {exc}",
                                       kind="unavailable"))
        return future

    def _next_scheduler(self) -> str:  # lock held, schedulers not empty
        schedulers = self._schedulers
        if len(self._pending) < self.spread_above:
            return schedulers[self._home % len(schedulers)]
        return schedulers[next(self._turn) % len(schedulers)]

    def deliver(self, reply: Message) -> None:
        """Complete the pending call ``reply['id']`` and confirm the reply (called for each inbox message).

        Every reply is confirmed, also one to a call no longer pending (a
        duplicate, or a call given up: then to every live scheduler, since
        which one placed it is no longer known), so that no scheduler keeps its call.
        """
        if check_reply(reply) is None:
            _problems.warning(f"reply {self.inbox}", "ignored a malformed reply on %s", self.inbox)
            return
        call_id = reply["id"]
        with self._lock:
            future = self._pending.pop(call_id, None)
            schedulers = [future._scheduler] if future is not None and future._scheduler else list(self._schedulers)
        for scheduler in schedulers:
            self._receipts.add(call_id, scheduler)
        if future is not None:
            clock = reply.get("clock")
            if type(clock) is int and self._clock < clock < 1 << 63:  # noqa: E721 - not a bool
                self._clock = clock  # this caller's next calls are stamped later (essa.wasm.invocation)
            future._complete(reply)

    def _settle(self, reply: Message) -> None:
        with self._lock:
            future = self._pending.pop(reply["id"], None)
        if future is not None:
            future._complete(reply)

    def cancel_run(self, run: str, reason: str) -> int:
        """Fail every pending call of ``run`` as cancelled; return how many there were."""
        with self._lock:
            ended = [f for f in self._pending.values() if f.run == run]
            for future in ended:
                del self._pending[future.id]
        for future in ended:
            future._complete(cancelled_reply(future.id, "the call", reason))
        return len(ended)

    def fail_all(self, message: str) -> None:
        """Fail every pending call with ``message``."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for call_id, future in pending.items():
            future._complete(reply_message(call_id, EssaResult.UnknownError, message=message, kind="unavailable"))

    def _on_scheduler(self, key: str, alive: bool) -> None:
        scheduler = last_segment(key)
        with self._lock:
            if alive:
                if scheduler not in self._schedulers:
                    self._schedulers.append(scheduler)
                    self._schedulers.sort()
                self._scheduler_seen.notify_all()
                moved = [f for f in self._pending.values() if f._scheduler is None]
            else:
                if scheduler in self._schedulers:
                    self._schedulers.remove(scheduler)
                moved = [f for f in self._pending.values() if f._scheduler == scheduler]
            sends = self._reassign(moved)
        for topic, request in sends:
            try:
                self.transport.publish(topic, request, patient=True)
            except Exception as exc:  # the liveness check fails the call if nobody got it
                _problems.warning("resubmit", "%s: cannot send call %s again: %s", self.id, request["id"], describe(exc))
        if moved and not alive:
            log.info("%s: scheduler %s went away with %d of its calls pending; %s", self.id, scheduler, len(moved),
                     "sent them to another" if self._schedulers else "they wait for another")

    def _reassign(self, futures: list[CallFuture]) -> list[tuple[str, Message]]:  # lock held
        """Give ``futures``' calls to the next live schedulers (or let them wait for one); what to send where."""
        now = time.monotonic()
        sends = []
        for future in futures:
            if not self._schedulers:
                future._scheduler = None
                if future._orphaned is None:
                    future._orphaned = now
                continue
            assert future._request is not None
            future._scheduler, future._orphaned = self._next_scheduler(), None
            future._request = {**future._request, "adopt": True}
            sends.append((topics.scheduler_calls(future._scheduler), future._request))
        return sends

    @property
    def sees_scheduler(self) -> bool:
        return bool(self._schedulers)

    # -- liveness ------------------------------------------------------------------

    def _watch(self) -> None:
        last_check = time.monotonic()
        while not self._closed.wait(1.0):
            try:
                self._expire_orphans()
                if time.monotonic() - last_check >= self.liveness_interval:
                    last_check = time.monotonic()
                    self.check_liveness()
            except Exception as exc:  # the loop must outlive any one failure
                _problems.warning("liveness", "liveness check of %s failed: %s", self.id, describe(exc), exc_info=exc)

    def _expire_orphans(self) -> None:
        """Fail the calls that have waited their patience (or :attr:`failover_wait`) seconds for a scheduler."""
        now = time.monotonic()
        with self._lock:
            expired = [f for f in self._pending.values()
                       if f._orphaned is not None and now - f._orphaned >= self._patience_of(f)]
            for future in expired:
                del self._pending[future.id]
        for future in expired:
            future._complete(reply_message(
                future.id, EssaResult.UnknownError, exit=1, kind="unavailable",
                message=f"the scheduler went away while the call was pending, and no other appeared within "
                        f"{self._patience_of(future):g} s"))

    def _patience_of(self, future: CallFuture) -> float:
        return self.failover_wait if future._patience is None else future._patience

    def check_liveness(self) -> None:
        """Fail the calls that no scheduler has tracked at two checks in a row.

        Only calls older than :attr:`liveness_interval` are asked about, 1000
        to a query (not those waiting for a scheduler). Calls whose query no
        scheduler answered (a busy one may not within 2 s) are not decided
        on; the scheduler's liveliness token tells when it is gone.
        """
        cutoff = time.monotonic() - self.liveness_interval
        with self._lock:
            waiting = [call_id for call_id, f in self._pending.items() if f.started <= cutoff and f._scheduler]
        if not waiting:
            self._unknown.clear()
            return
        asked: set[str] = set()  # the ids some scheduler answered about
        known: set[str] = set()
        for start in range(0, len(waiting), 1000):
            ids = waiting[start : start + 1000]
            for answer in self.transport.query(f"{topics.TRACKING}/**", {"ids": ids}, timeout=2.0):
                if isinstance(answer, dict) and isinstance(answer.get("known"), list):
                    asked.update(ids)
                    known.update(i for i in answer["known"] if isinstance(i, str))
        if not asked:
            return
        unknown = asked - known
        lost, self._unknown = unknown & self._unknown, unknown - self._unknown
        for call_id in lost:
            with self._lock:
                future = self._pending.pop(call_id, None)
            if future is not None:
                log.warning("call %s: no scheduler tracks it any more; failing it", call_id)
                future._complete(reply_message(
                    call_id, EssaResult.UnknownError, exit=1, kind="unavailable",
                    message="the cluster lost the call: no scheduler tracks it any more (its reply may have been lost)",
                ))

    def close(self) -> None:
        self._closed.set()
        with LOCAL.lock:
            LOCAL.inboxes.pop(self.inbox, None)
        for subscription in self._subscriptions:
            subscription.close()
        self._receipts.close()
        self.fail_all("the caller was closed")


def send_reply(transport: Transport, reply_to: str, reply: Message) -> None:
    """Deliver a reply: directly to an inbox of this process, else over ``transport``."""
    caller = LOCAL.inboxes.get(reply_to)
    if caller is not None:
        caller.deliver(reply)
    else:  # the caller may have joined a moment ago: its inbox may not be known here yet
        transport.publish(reply_to, reply, patient=True)
