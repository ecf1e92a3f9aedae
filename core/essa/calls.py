"""The call protocol, on top of any transport's publish/subscribe.

A call travels as three one-way messages::

    caller --(essa/scheduler/calls)--> scheduler --(essa/executor/ID/calls)--> executor
    caller <--------------------(the caller's reply inbox)----------------------+

A request carries its id, the caller's inbox (``reply_to``), the module, the
function, the argument bytes, the state namespace and the run it belongs to.
The executor answers the caller directly and tells the scheduler the call is
done (``essa/scheduler/done``), so the scheduler knows every executor's load
and which calls die with an executor.

Within one process two shortcuts keep calls cheap: a reply to an inbox of this
process is handed over without the transport, and a caller waiting for a call
that is still queued on an executor of this process runs it itself (see
:mod:`essa.pool`), so waiting never starves the executors.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from typing import Callable

from . import topics
from .abi import CallOutcome, EssaResult
from .pool import Task, blocking
from .transport.base import Message, Subscription, Transport


def call_request(module: str, function: str, args: bytes, namespace: str, run: str, **extra) -> Message:
    """A call request without id and inbox (:meth:`Caller.start` adds them)."""
    return {"module": module, "function": function, "args": args, "namespace": namespace, "run": run, **extra}


def reply_message(call_id: str, code: EssaResult, value: bytes = b"", message: str = "", **extra) -> Message:
    """The answer to call ``call_id``: an :class:`EssaResult` code with value or message."""
    return {"id": call_id, "code": int(code), "value": value, "message": message, **extra}


def outcome(reply: Message) -> CallOutcome:
    """The :class:`CallOutcome` a reply message stands for."""
    return CallOutcome(EssaResult(reply["code"]), reply.get("value", b""), reply.get("message", ""))


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

    __slots__ = ("id", "_event", "_reply", "_callbacks", "_lock")

    def __init__(self, call_id: str) -> None:
        self.id = call_id
        self._event = threading.Event()
        self._reply: Message | None = None
        self._callbacks: list[Callable[["CallFuture"], None]] = []
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self._event.is_set()

    def result(self, timeout: float | None = None) -> Message:
        """The reply message; raises :class:`TimeoutError` after ``timeout`` seconds."""
        if not self._event.is_set():
            task = LOCAL.tasks.get(self.id)
            if task is not None:
                task.help()  # still queued here: run it on this thread
            if not self._event.is_set():
                with blocking():
                    if not self._event.wait(timeout):
                        raise TimeoutError(f"no reply to call {self.id} after {timeout} s")
        assert self._reply is not None
        return self._reply

    def wait(self, timeout: float | None = None) -> CallOutcome:
        """The outcome, for :class:`essa.abi.PendingCall`."""
        return outcome(self.result(timeout))

    def add_done_callback(self, callback: Callable[["CallFuture"], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def _complete(self, reply: Message) -> None:
        with self._lock:
            if self._event.is_set():
                return  # a late duplicate (e.g. after a retry)
            self._reply = reply
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)


class Caller:
    """Starts calls and receives their replies in its own inbox.

    One per process is enough (executors share it); a client has its own.
    When the scheduler's liveliness token vanishes, every pending call fails
    at once with a clear message instead of hanging.
    """

    #: How long :meth:`start` waits for a scheduler to be seen before failing the call.
    scheduler_wait = 2.0

    def __init__(self, transport: Transport, name: str = "caller") -> None:
        self.transport = transport
        self.id = f"{name}-{uuid.uuid4().hex[:12]}"
        self.inbox = topics.inbox(self.id)
        self._pending: dict[str, CallFuture] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = [transport.subscribe(self.inbox, self.deliver)]
        self._schedulers: set[str] = set()
        self._scheduler_seen = threading.Condition(self._lock)
        self._subscriptions.append(transport.watch_tokens(topics.LIVE_SCHEDULERS, self._on_scheduler))
        with LOCAL.lock:
            LOCAL.inboxes[self.inbox] = self

    def start(self, request: Message) -> CallFuture:
        """Send ``request`` (see :func:`call_request`) to the scheduler."""
        call_id = f"{self.id}/{next(self._counter)}"
        future = CallFuture(call_id)
        with self._lock:
            if not self._scheduler_seen.wait_for(lambda: self._schedulers, self.scheduler_wait):
                future._complete(reply_message(call_id, EssaResult.UnknownError, message="no scheduler is reachable"))
                return future
            self._pending[call_id] = future
        try:
            # id and inbox first: a receiver that refuses an oversized message
            # reads only those (see essa.transport.zenoh) to answer it.
            self.transport.publish(topics.SCHEDULER_CALLS, {"id": call_id, "reply_to": self.inbox, **request})
        except Exception as exc:
            self.deliver(reply_message(call_id, EssaResult.UnknownError, message=f"cannot send the call: {exc}"))
        return future

    def deliver(self, reply: Message) -> None:
        """Complete the pending call ``reply['id']`` (called for each inbox message)."""
        with self._lock:
            future = self._pending.pop(reply.get("id", ""), None)
        if future is not None:
            future._complete(reply)

    def fail_all(self, message: str) -> None:
        """Fail every pending call with ``message``."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for call_id, future in pending.items():
            future._complete(reply_message(call_id, EssaResult.UnknownError, message=message))

    def _on_scheduler(self, key: str, alive: bool) -> None:
        with self._lock:
            if alive:
                self._schedulers.add(key)
                self._scheduler_seen.notify_all()
                return
            self._schedulers.discard(key)
            gone = not self._schedulers
        if gone:
            self.fail_all("the scheduler went away while the call was pending")

    @property
    def sees_scheduler(self) -> bool:
        return bool(self._schedulers)

    def close(self) -> None:
        with LOCAL.lock:
            LOCAL.inboxes.pop(self.inbox, None)
        for subscription in self._subscriptions:
            subscription.close()
        self.fail_all("the caller was closed")


def send_reply(transport: Transport, reply_to: str, reply: Message) -> None:
    """Deliver a reply: directly to an inbox of this process, else over ``transport``."""
    caller = LOCAL.inboxes.get(reply_to)
    if caller is not None:
        caller.deliver(reply)
    else:
        transport.publish(reply_to, reply)
