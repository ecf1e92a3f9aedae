"""Finding a call across the cluster before placing it once more: what makes failover safe.

A call keeps its id wherever it goes. Two kinds of request may name a call
that some executor already runs or has just finished:

- a call its caller sent again to another scheduler because the one it had
  sent it to went away (the request carries ``adopt``);
- a remote call of a call that is executed once more (its executor died):
  a guest's remote calls get ids derived from their parent's (``<parent>.<n>``,
  :func:`child_id`), so the re-executed parent's calls have the ids of the
  first execution's.

Before placing such a request, a scheduler's :class:`Finder` asks every
executor (one query per batch on :data:`essa.cluster.topics.EXECUTORS_FIND`)
whether it runs the call or finished it lately. An executor that runs it sends
its reply, when it ends, to the new caller and its done notice to the asking
scheduler; one that finished it sends the recorded reply again
(:class:`FinishedReplies`). Only a call no executor knows is placed. So a call
runs at most once at a time, and a finished remote call answers a
re-executed parent from its recorded result instead of running again.

A request finds a call only in its own namespace: on a secure cluster its
token was checked for that namespace before the search, so a peer cannot
take over the replies of calls it could not have made.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
from typing import Callable

from essa.cluster import topics
from essa.transport.base import Message, Transport
from essa.util.ratelimit import RateLimitedLog, describe

log = logging.getLogger("essa.cluster.adopt")
_problems = RateLimitedLog(log)

#: Most calls asked about in one query.
BATCH = 500


def child_id(parent: str, sequence: int) -> str:
    """The id of the ``sequence``-th remote call (from 1) of call ``parent``: the same in every execution of it.

    Deep nesting would make ids grow; past 200 characters the parent's part
    is replaced by its hash (ids stay unique and deterministic).
    """
    if len(parent) > 200:
        parent = "h" + hashlib.blake2b(parent.encode(), digest_size=16).hexdigest()
    return f"{parent}.{sequence}"


class FinishedReplies:
    """An executor's record of the replies it sent lately, to answer a call asked for again.

    Bounded by :attr:`most` entries and :attr:`most_bytes` of values (a
    larger reply is not recorded): the oldest go first.
    """

    most = 20_000
    most_bytes = 32 << 20

    def __init__(self) -> None:
        #: call id -> (its namespace, its reply)
        self._replies: collections.OrderedDict[str, tuple[str, Message]] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def record(self, call_id: str, namespace: str, reply: Message) -> None:
        size = len(reply.get("value", b""))
        if size > self.most_bytes // 8:
            return
        with self._lock:
            old = self._replies.pop(call_id, None)
            if old is not None:
                self._bytes -= len(old[1].get("value", b""))
            self._replies[call_id] = (namespace, reply)
            self._bytes += size
            while len(self._replies) > self.most or self._bytes > self.most_bytes:
                _id, (_namespace, gone) = self._replies.popitem(last=False)
                self._bytes -= len(gone.get("value", b""))

    def get(self, call_id: str, namespace: str) -> Message | None:
        """The reply recorded for ``call_id`` of ``namespace``, if any."""
        with self._lock:
            recorded = self._replies.get(call_id)
        return recorded[1] if recorded is not None and recorded[0] == namespace else None

    def __len__(self) -> int:
        return len(self._replies)


def check_find(query: Message) -> tuple[str, list[tuple[str, str, str]]] | None:
    """The asking scheduler and the ``(call id, reply inbox, namespace)`` of a find query, or ``None`` if malformed."""
    scheduler, calls = query.get("scheduler"), query.get("calls")
    if not (topics.is_chunk(scheduler) and isinstance(calls, list)):
        return None
    entries = []
    for entry in calls[:BATCH]:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and topics.is_inbox(entry[1]) and isinstance(entry[2], str)):
            return None
        entries.append((entry[0], entry[1], entry[2]))
    return scheduler, entries


class Finder:
    """A scheduler's search for calls before it places them once more (one thread, batched queries).

    :param found: called with ``(request, executor id)`` for a call an
        executor runs (it now answers the request's caller and this scheduler).
    :param finished: called with ``request`` for a call an executor had
        finished (it has sent the recorded reply again).
    :param missing: called with ``request`` for a call no executor knows (place it).
    """

    #: Seconds to wait for the executors' answers.
    timeout = 2.0

    def __init__(self, transport: Transport, scheduler_id: str, found: Callable[[Message, str], None],
                 finished: Callable[[Message], None], missing: Callable[[Message], None]) -> None:
        self._transport = transport
        self._scheduler = scheduler_id
        self._found, self._finished, self._missing = found, finished, missing
        self._queue: list[Message] = []
        self._cond = threading.Condition()
        self._closed = False
        self._searching: set[str] = set()
        self._thread = threading.Thread(target=self._run, name=f"essa-finder-{scheduler_id}", daemon=True)
        self._thread.start()

    def search(self, request: Message) -> None:
        """Find ``request``'s call on the executors, then hand it to one of the callbacks."""
        with self._cond:
            self._queue.append(request)
            self._searching.add(request["id"])
            self._cond.notify()

    def searching(self, call_id: str) -> bool:
        """Whether ``call_id`` is being searched for (it counts as tracked)."""
        return call_id in self._searching

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            try:
                self._resolve(batch)
            except Exception as exc:  # the loop must outlive any one failure; place what is left
                _problems.warning("find", "searching for %d calls failed: %s", len(batch), describe(exc), exc_info=exc)
                for request in batch:
                    if request["id"] in self._searching:
                        self._done(request, self._missing)

    def _resolve(self, batch: list[Message]) -> None:
        query = {"scheduler": self._scheduler, "calls": [[r["id"], r["reply_to"], r["namespace"]] for r in batch]}
        running: dict[str, str] = {}
        finished: set[str] = set()
        for answer in self._transport.query(topics.EXECUTORS_FIND, query, timeout=self.timeout):
            if not (isinstance(answer, dict) and topics.is_chunk(answer.get("executor"))):
                continue
            for call_id in answer.get("running", ()) if isinstance(answer.get("running"), list) else ():
                if isinstance(call_id, str):
                    running.setdefault(call_id, answer["executor"])
            for call_id in answer.get("finished", ()) if isinstance(answer.get("finished"), list) else ():
                if isinstance(call_id, str):
                    finished.add(call_id)
        found = {"running": 0, "finished": 0, "placed": 0}
        for request in batch:
            call_id = request["id"]
            if call_id in running:
                found["running"] += 1
                self._done(request, lambda r, e=running[call_id]: self._found(r, e))
            elif call_id in finished:
                found["finished"] += 1
                self._done(request, self._finished)
            else:
                found["placed"] += 1
                self._done(request, self._missing)
        log.info("scheduler %s: of %d calls asked for again, %d were running (adopted), %d finished (answered "
                 "again), %d placed", self._scheduler, len(batch), found["running"], found["finished"], found["placed"])

    def _done(self, request: Message, then: Callable[[Message], None]) -> None:
        self._searching.discard(request["id"])
        then(request)
