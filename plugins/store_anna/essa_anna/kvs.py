"""The KVS node (``essa anna kvs``): owns a share of the keys and merges every put.

A node runs ``workers`` worker threads. Each worker owns a partition of the
node's keys (its share of the node's local ring), has its own zenoh inbox
``anna/kvs/<node>/<worker>`` and processes what arrives there one batch at a
time, so its data needs no lock; like Anna's worker threads, workers share
nothing but the process.

Write path (``ack=all``, the default): the owner that receives a put merges it
(:func:`essa.state.bincode.merge_encoded`, or for a big set :class:`~essa_anna.values.GrowingSet`,
which costs the delta; a type mismatch is refused and changes nothing), then
sends the key's merged value (for a big set: the put's own value) to every
other owner in ``repl`` messages (per peer, at most :data:`CHUNK` keys each),
and answers the client only when every
other owner has acknowledged (or has left the membership meanwhile). So an
acknowledged put is held by every live owner: with ``global_replication >= 2``
it survives the loss of any one node. With ``ack=owner`` the answer is sent
after the local merge and the replicas catch up by gossip.

Gossip: every ``gossip_interval`` a worker sends the merged values of the keys
it changed since the last tick, and that are not known to be at every replica
already, to the other owners. A replica therefore catches up even when nothing
else happens.

Membership changes (liveliness tokens): a worker rescans its keys; it pushes
each key to the owners that did not own it before, and hands off keys it no
longer owns (deleting them once every new owner acknowledged). For a few
seconds after a change, a GET also asks the key's other live owners of the
recent rings and merges their answers (read repair), so keys stay readable
while they move. On SIGTERM a node hands all of its keys off before it stops.

Watches (op ``w``, for executor-local caches): a worker keeps, per key, the
client inboxes watching it (Anna's key -> caches index), each for
:data:`~essa_anna.protocol.WATCH_LEASE` seconds after its last watch, at most
:data:`MAX_WATCHES` per worker. Whenever a watched key's value changes here (a
put, a replication, gossip, a read repair, a deletion), the worker pushes the
merged value to each watcher in an ``upd`` message once the batch is committed.

Every message was checked by :mod:`essa_anna.inbound` before it reaches a
worker; each step of a worker's loop is guarded on its own, so whatever one
message or one round raises costs one log line and the batch's answers still
go out. In durable mode a batch whose commit fails is undone in memory and
answered with the error (see :meth:`Worker._not_durable`).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import uuid
from collections import deque
from typing import Any

from essa.plugin import (
    DecodeError,
    LatticeTypeError,
    Transport,
    decode_lattice,
    describe,
    encode_lattice,
    merge_encoded,
)

from . import inbound, metrics
from . import protocol as P
from .errors import Malformed
from .inbound import problems
from .membership import Limits, Membership
from .ring import NodeInfo, Ring
from .storage import LmdbBackend
from .values import GrowingSet

log = logging.getLogger("essa.anna")

#: After a membership change, GETs read-repair from the recent owners for this long.
SETTLE_SECONDS = 5.0
#: At most this many replaced rings are kept for read repair (memory stays bounded however
#: often the membership changes).
RECENT_RINGS = 4
#: How long a read repair waits for the other owners.
REPAIR_TIMEOUT = 0.5
#: Keys per replication / hand-off message, and answers per response message.
CHUNK = 2000
#: Most inbox messages handled per batch.
BATCH = 512
#: Re-send an unacknowledged replication, hand-off or fetch after this long (doubling each time):
#: zenoh drops publications to a peer whose subscriptions this node has not learnt yet.
RESEND = 0.3
#: Most live watches (key, watcher) per worker; a watch beyond it is answered without being taken.
MAX_WATCHES = 1_000_000


class _Pending:
    """Messages to other workers waiting for their answers (re-sent until answered or expired)."""

    __slots__ = ("kind", "waiting", "waiters", "sent", "deadline", "failed", "messages", "resend_at", "resends")

    def __init__(self, kind: str, deadline: float) -> None:
        self.kind = kind  # "repl" (a put's replication), "push", "handoff" or "repair" (read repair)
        self.waiting: set = set()  # owners (node, worker) still to answer
        self.waiters: list = []  # (reply topic, rid, key, t0) to answer once complete
        self.sent: dict[str, bytes] = {}  # key -> value sent
        self.deadline = deadline
        self.failed: dict[str, str] = {}
        self.messages: dict[tuple, tuple[str, dict]] = {}
        self.resend_at = 0.0
        self.resends = 0


class Worker(threading.Thread):
    """One partition of a KVS node, served by one thread."""

    def __init__(self, node: "KvsNode", index: int) -> None:
        super().__init__(name=f"anna-kvs-{node.info.id}-{index}", daemon=True)
        self.node = node
        self.index = index
        self.me = (node.info.id, index)
        self.topic = P.worker_topic(node.info.id, index)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.data: dict[str, bytes | GrowingSet] = {}  # read through value(): big sets are GrowingSets
        self.bytes = 0
        self.dirty: set[str] = set()
        self.misplaced: set[str] = set()
        self.handing_off: set[str] = set()
        self.pending: dict[int, _Pending] = {}
        self.watchers: dict[str, dict[str, float]] = {}  # key -> {watcher inbox: lease end}
        self._watch_log: deque[tuple[float, str, str]] = deque()  # (lease end, key, inbox), oldest first
        self._pushes: set[str] = set()  # watched keys changed in this batch
        self.ring: Ring | None = None
        self.recent: deque[tuple[float, Ring]] = deque()  # rings replaced in the last SETTLE_SECONDS
        self.changed_at = 0.0
        self.leaving = False
        self.left = threading.Event()
        self._ids = itertools.count(1)
        self._running = True
        self._next_maintenance = 0.0
        # per-batch output
        self._answers: dict[str, list] = {}
        self._repl: list[tuple] = []  # puts waiting for their replicas: (reply, rid, key, t0, value, peers)
        self._repair: list[tuple] = []  # reads waiting for other owners: (reply, rid, key, t0, None, sources)
        self._sends: list[tuple[str, dict]] = []
        self._after_flush: list = []  # callbacks once this batch's writes are committed
        self._writes: dict[str, list] = {}  # durable mode: this batch's changes per key (see storage.Change)
        self._undo: dict[str, bytes | GrowingSet | None] = {}  # durable mode: values before this batch's changes
        self._undo_adds: list[tuple[GrowingSet, frozenset]] = []  # durable mode: members this batch added
        self._acks: list[tuple[dict, list[str]]] = []  # durable mode: this batch's acks and the keys they cover
        # statistics
        self.gets = 0
        self.puts = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=20000)
        self.samples: deque[tuple[float, int]] = deque(maxlen=64)

    # -- data ---------------------------------------------------------------------------

    def value(self, key: str) -> bytes | None:
        """The encoded value of ``key``, or ``None``."""
        stored = self.data.get(key)
        return stored.encoded() if type(stored) is GrowingSet else stored

    def _unchanged(self, key: str, sent: bytes) -> bool:
        """Whether ``key`` still holds exactly the bytes ``sent`` (the very object, so no comparison)."""
        stored = self.data.get(key)
        return (stored.current() if type(stored) is GrowingSet else stored) is sent

    @staticmethod
    def _size(stored: bytes | GrowingSet) -> int:
        return stored.size if type(stored) is GrowingSet else len(stored)

    def _set_value(self, key: str, value: bytes | GrowingSet, encoded: bytes) -> None:
        """Hold ``value`` (whose encoding is ``encoded``) under ``key``."""
        old = self.data.get(key)
        self.bytes += self._size(value) - (self._size(old) if old is not None else 0)
        self.data[key] = value
        if self.node.backend is not None:
            self._undo.setdefault(key, old)
            self._writes[key] = [("put", encoded)]

    def _drop_key(self, key: str) -> None:
        old = self.data.pop(key, None)
        if old is not None:
            if key in self.watchers:
                self._pushes.add(key)
            self.bytes -= self._size(old)
            if self.node.backend is not None and not (self.leaving and self.node.keep_on_leave):
                self._undo.setdefault(key, old)
                self._writes[key] = [("delete", None)]

    def _restore(self, key: str, value: bytes | GrowingSet | None) -> None:
        current = self.data.pop(key, None)
        if current is not None:
            self.bytes -= self._size(current)
        if value is not None:
            self.data[key] = value
            self.bytes += self._size(value)

    def _merge(self, key: str, value: bytes) -> tuple[bool, int, str | None]:
        """Merge ``value`` into ``key``; return (changed, code, error message)."""
        old = self.data.get(key)
        try:
            if type(old) is GrowingSet:  # costs the delta, in memory and on disk
                size = old.size
                added = old.add(value)
                if not added:
                    return False, P.OK, None
                if key in self.watchers:
                    self._pushes.add(key)
                self.bytes += old.size - size
                if self.node.backend is not None:  # write only the new members (a gossiped whole set adds few)
                    self._undo_adds.append((old, added))
                    self._writes.setdefault(key, []).append(("merge", encode_lattice(old.kind(added))))
                return True, P.OK, None
            merged = merge_encoded(old, value)
        except LatticeTypeError as exc:
            return False, P.TYPE_MISMATCH, f"{exc} (key {key!r})"
        except (DecodeError, TypeError, ValueError) as exc:
            return False, P.BAD_VALUE, f"{exc} (key {key!r})"
        if merged is old or merged == old:
            return False, P.OK, None
        if key in self.watchers:
            self._pushes.add(key)
        self._set_value(key, GrowingSet(decode_lattice(merged)) if GrowingSet.wanted(merged) else merged, merged)
        return True, P.OK, None

    def _disowns(self, key: str) -> bool:
        """Whether this worker should give ``key`` away: its ring lists its own node (or it is
        leaving) and it is not among the key's owners. A ring that does not list this node yet is
        an incomplete view (a joining node learns the others before itself): nothing moves then."""
        ring = self.ring
        if ring is None or not len(ring):
            return False
        if self.me[0] not in ring and not self.leaving:
            return False
        return self.me not in ring.owners(key)

    def post(self, message: Any) -> None:
        self.inbox.put(message)

    # -- loop ---------------------------------------------------------------------------

    def run(self) -> None:
        interval = self.node.gossip_interval
        next_tick = time.monotonic() + interval
        inbox = self.inbox
        while self._running:
            try:
                first = inbox.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                first = None
            batch = [] if first is None else [first]
            while len(batch) < BATCH:
                try:
                    batch.append(inbox.get_nowait())
                except queue.Empty:
                    break
            # Each step is guarded on its own: whatever one message or one timer round
            # raises costs one log line, and the answers of the batch still go out.
            self._guarded("handling a batch", self._handle_batch, batch)
            now = time.monotonic()
            if now >= next_tick:
                self._guarded("gossip", self._tick, now)
                next_tick = now + interval
            if now >= self._next_maintenance:
                self._guarded("re-sending", self._maintain, now)
                self._next_maintenance = now + 0.05
            self._guarded("sending answers", self._flush)

    def _guarded(self, what: str, step, *args) -> None:
        try:
            step(*args)
        except Exception as exc:  # never let one bad message or round kill the worker
            problems.warning(f"worker {what}", "anna: worker %s failed %s: %s", self.me, what, describe(exc),
                             exc_info=exc)

    def stop(self) -> None:
        self._running = False
        self.post(None)

    def _handle_batch(self, batch: list) -> None:
        # Only the newest ring message of a batch matters.
        last_ring = max((i for i, m in enumerate(batch) if isinstance(m, tuple) and m[0] == "ring"), default=-1)
        for i, message in enumerate(batch):
            if message is None:
                continue
            if isinstance(message, tuple):
                kind = message[0]
                if kind == "ring" and i == last_ring:
                    self._ring_changed(message[1])
                elif kind == "leave":
                    self.leaving = True
                    self._ring_changed(message[1])
                elif kind == "drop":  # from KvsNode.drop: answered once the deletion is committed
                    _kind, key, existed, event = message
                    if key in self.data:
                        existed.append(True)
                        self._drop_key(key)
                        self.dirty.discard(key)
                    self._after_flush.append(event.set)
                continue
            kind = message.get("t")
            try:
                if kind == "req":
                    self._on_request(message)
                elif kind == "repl":
                    self._on_repl(message)
                elif kind == "ack":
                    self._on_ack(message)
                elif kind == "gossip":
                    self._on_gossip(message)
                elif kind == "fetch":
                    self._on_fetch(message)
                elif kind == "fetched":
                    self._on_fetched(message)
            except Exception as exc:  # messages were checked at the boundary: this is a bug, not bad input
                problems.warning(f"worker {kind}", "anna: worker %s failed on a %r message: %s", self.me, kind,
                                 describe(exc), exc_info=exc)

    # -- client requests -------------------------------------------------------------------

    def _answer(self, reply: str, rid: Any, code: int, payload: Any, t0: float) -> None:
        self._answers.setdefault(reply, []).append([rid, code, payload])
        took = time.perf_counter() - t0
        self.latencies.append(took)
        metrics.answered(code, took)
        if code not in (P.OK, P.NOT_FOUND):
            self.errors += 1

    def _on_request(self, message: dict) -> None:
        reply = message["reply"]
        t0 = message.get("_t") or time.perf_counter()
        ring = self.ring
        me = self.me
        repairing = self.recent and time.monotonic() - self.changed_at < SETTLE_SECONDS
        for rid, reason in message["bad"]:
            self._answer(reply, rid, P.ERROR, f"malformed request: {reason}", t0)
        for rid, op, key, value, ack in message["ops"]:
            owners = ring.owners(key) if ring is not None else ()
            if me not in owners:
                self._answer(reply, rid, P.WRONG_OWNER, None, t0)
                continue
            if op == P.GET or op == P.WATCH:
                self.gets += 1
                if op == P.WATCH and not self._watch(key, reply):
                    stored = self.value(key)
                    self._answer(reply, rid, P.UNWATCHED, stored, t0)
                    continue
                if repairing and self._repair_get(reply, rid, key, owners, t0):
                    continue
                stored = self.value(key)
                self._answer(reply, rid, P.NOT_FOUND if stored is None else P.OK, stored, t0)
            elif op == P.PUT:
                self.puts += 1
                changed, code, error = self._merge(key, value)
                if error is not None:
                    self._answer(reply, rid, code, error, t0)
                    continue
                peers = [o for o in owners if o != me]
                if changed:
                    self.dirty.add(key)
                if ack == P.ACK_ALL and peers:
                    # The merged value; for a big set the put's own value (the delta): the
                    # replicas then hold this put, and gossip brings them the rest.
                    stored = self.data[key]
                    self._repl.append((reply, rid, key, t0, value if type(stored) is GrowingSet else stored, peers))
                else:
                    self._answer(reply, rid, P.OK, None, t0)

    def _watch(self, key: str, inbox: str) -> bool:
        """Have ``inbox`` told of ``key``'s changes for a lease; False if the index is full."""
        if len(self._watch_log) >= MAX_WATCHES:
            return False
        until = time.monotonic() + P.WATCH_LEASE
        self.watchers.setdefault(key, {})[inbox] = until
        self._watch_log.append((until, key, inbox))
        return True

    def _expire_watches(self, now: float) -> None:
        log_ = self._watch_log
        while log_ and log_[0][0] <= now:
            _until, key, inbox = log_.popleft()
            watching = self.watchers.get(key)
            if watching is not None and watching.get(inbox, now + 1) <= now:  # not renewed since
                del watching[inbox]
                if not watching:
                    del self.watchers[key]

    def _push_updates(self) -> None:
        """Send the watchers of the keys changed in this batch their merged values."""
        keys, self._pushes = self._pushes, set()
        now = time.monotonic()
        out: dict[str, list] = {}
        for key in keys:
            watching = self.watchers.get(key)
            if not watching:
                continue
            value = self.value(key)
            for inbox, until in watching.items():
                if until > now:
                    out.setdefault(inbox, []).append([key, value])
        messages = [(inbox, {"t": "upd", "kv": kv[i:i + CHUNK]}) for inbox, kv in out.items()
                    for i in range(0, len(kv), CHUNK)]
        if self.node.push_delay:
            timer = threading.Timer(self.node.push_delay, lambda: [self._publish(*m) for m in messages])
            timer.daemon = True
            timer.start()
            return
        for inbox, message in messages:
            self._publish(inbox, message)

    def _repair_get(self, reply: str, rid: Any, key: str, owners: tuple, t0: float) -> bool:
        """Ask the key's other live owners of the recent rings; True if the answer waits for them."""
        membership = self.node.membership
        sources = set(owners)
        moved = False
        for _when, ring in self.recent:
            before = ring.owners(key)
            if before != owners:
                moved = True
                sources.update(before)
        if not moved:
            return False  # same owners as before the change: they have what this worker has
        sources.discard(self.me)
        sources = {s for s in sources if membership.alive(s[0])}
        if not sources:
            return False
        self._repair.append((reply, rid, key, t0, None, sources))
        return True

    # -- replication ------------------------------------------------------------------------

    def _on_repl(self, message: dict) -> None:
        failed = []
        if self.leaving:  # never take keys while handing them off: the sender keeps them
            failed = [[key, f"KVS node {self.me[0]} is leaving"] for key, _value in message["kv"]]
            message = {**message, "kv": ()}
        for key, value in message["kv"]:
            changed, _code, error = self._merge(key, value)
            if error is not None:
                failed.append([key, error])
                log.warning("anna: worker %s refused a replicated value: %s", self.me, error)
            elif self._disowns(key):
                self.misplaced.add(key)
        ack = {"t": "ack", "id": message["id"], "from": list(self.me), "failed": failed}
        self._sends.append((message["reply"], ack))
        if self.node.backend is not None:
            self._acks.append((ack, [key for key, _value in message["kv"]]))

    def _on_gossip(self, message: dict) -> None:
        for key, value in message["kv"]:
            changed, _code, error = self._merge(key, value)
            if error is not None:
                log.warning("anna: worker %s refused a gossiped value: %s", self.me, error)
            elif self._disowns(key):
                self.misplaced.add(key)

    def _on_ack(self, message: dict) -> None:
        pending = self.pending.get(message["id"])
        if pending is None:
            return
        for key, error in message.get("failed") or ():
            pending.failed[key] = f"replica {message['from'][0]} refused it: {error}"
        pending.waiting.discard(tuple(message["from"]))
        if not pending.waiting:
            self._complete(message["id"])

    def _complete(self, pid: int, timed_out: bool = False) -> None:
        pending = self.pending.pop(pid)
        if pending.kind == "repl":
            for reply, rid, key, t0 in pending.waiters:
                if key in pending.failed:
                    self._answer(reply, rid, P.ERROR, pending.failed[key], t0)
                elif timed_out:
                    who = ", ".join(f"{n} (worker {w})" for n, w in sorted(pending.waiting))
                    self._answer(reply, rid, P.TIMEOUT,
                                 f"replica {who} did not acknowledge key {key!r} within "
                                 f"{self.node.replication_timeout:g} s", t0)
                else:
                    self._answer(reply, rid, P.OK, None, t0)
            if not timed_out:
                for key, value in pending.sent.items():
                    if self._unchanged(key, value) and key not in pending.failed:
                        self.dirty.discard(key)  # every replica has exactly this value
        elif pending.kind == "handoff":
            keys = list(pending.sent)
            self.handing_off.difference_update(keys)
            if timed_out:
                return
            for key in keys:
                if key in pending.failed:
                    continue  # not stored there: handed off again later
                if self._unchanged(key, pending.sent[key]) and self._disowns(key):
                    self._drop_key(key)
                    self.misplaced.discard(key)
                    self.dirty.discard(key)
            self._check_left()
        elif pending.kind == "push" and timed_out:
            log.warning("anna: worker %s: %s did not take %d pushed keys", self.me,
                        ", ".join(n for n, _w in sorted(pending.waiting)), len(pending.sent))
        elif pending.kind == "repair":
            for reply, rid, key, t0 in pending.waiters:
                stored = self.value(key)
                self._answer(reply, rid, P.NOT_FOUND if stored is None else P.OK, stored, t0)

    def _send_reliably(self, kind: str, messages: dict[tuple, dict], timeout: float) -> _Pending:
        """Send one message per owner; re-send to the silent ones until they answer or ``timeout``."""
        pid = next(self._ids)
        now = time.monotonic()
        pending = _Pending(kind, now + timeout)
        pending.resend_at = now + RESEND
        for owner, message in messages.items():
            message["id"] = pid
            message["reply"] = self.topic
            topic = P.worker_topic(*owner)
            pending.messages[owner] = (topic, message)
            pending.waiting.add(owner)
            self._sends.append((topic, message))
        self.pending[pid] = pending
        return pending

    def _maintain(self, now: float) -> None:
        self._expire_watches(now)
        for pid, pending in list(self.pending.items()):
            if pending.deadline <= now:
                self._complete(pid, timed_out=True)
            elif pending.resend_at <= now:
                pending.resends += 1
                pending.resend_at = now + RESEND * (1 << min(pending.resends, 4))
                for owner in pending.waiting:
                    self._sends.append(pending.messages[owner])

    # -- fetch (read repair, direct replica reads) ---------------------------------------------

    def _on_fetch(self, message: dict) -> None:
        value = self.value
        kv = [[key, value(key)] for key in message["keys"]]
        self._sends.append((message["reply"], {"t": "fetched", "id": message["id"], "from": list(self.me), "kv": kv}))

    def _on_fetched(self, message: dict) -> None:
        pending = self.pending.get(message["id"])
        if pending is None:
            return
        for key, value in message["kv"]:
            if value is not None:
                changed, _code, _error = self._merge(key, value)
                if changed:
                    self.dirty.add(key)
        pending.waiting.discard(tuple(message["from"]))
        if not pending.waiting:
            self._complete(message["id"])

    # -- membership ------------------------------------------------------------------------

    def _ring_changed(self, ring: Ring) -> None:
        old = self.ring
        now = time.monotonic()
        self.ring = ring
        if old is not None:
            self.recent.append((now, old))
        while self.recent and (now - self.recent[0][0] > SETTLE_SECONDS or len(self.recent) > RECENT_RINGS):
            self.recent.popleft()
        self.changed_at = now
        # Replication still waiting on owners that are gone: they will not answer.
        for pid in list(self.pending):
            pending = self.pending.get(pid)
            if pending is None:
                continue
            gone = {o for o in pending.waiting if not self.node.membership.alive(o[0])}
            if gone:
                pending.waiting -= gone
                if not pending.waiting:
                    self._complete(pid)
        # Push keys to their new owners; note the ones this worker no longer owns.
        me = self.me
        if me[0] not in ring and not self.leaving:
            return  # an incomplete view: wait until this node sees itself
        pushes: dict[tuple, list] = {}
        for key in self.data:
            owners = ring.owners(key)
            if me not in owners:
                self.misplaced.add(key)
                continue
            value = self.value(key)
            self.misplaced.discard(key)
            before = old.owners(key) if old is not None else ()
            for owner in owners:
                if owner != me and owner not in before:
                    pushes.setdefault(owner, []).append([key, value])
        for owner, kv in pushes.items():
            for i in range(0, len(kv), CHUNK):
                self._send_reliably("push", {owner: {"t": "repl", "kv": kv[i:i + CHUNK]}},
                                    self.node.replication_timeout * 5)
        if pushes:
            log.info("anna: worker %s pushes %d keys to new owners", me, sum(map(len, pushes.values())))
        self._hand_off()
        self._check_left()

    def _hand_off(self) -> None:
        """Send keys this worker does not own to their owners; they are deleted once acknowledged."""
        ring = self.ring
        todo = [k for k in self.misplaced if k not in self.handing_off]
        if not todo or ring is None or not len(ring) or (self.me[0] not in ring and not self.leaving):
            return
        me = self.me
        groups: dict[tuple, list] = {}
        for key in todo:
            if key not in self.data:
                self.misplaced.discard(key)
                continue
            owners = ring.owners(key)
            if me in owners:
                self.misplaced.discard(key)
                continue
            groups.setdefault(owners, []).append(key)
        for owners, keys in groups.items():
            for i in range(0, len(keys), CHUNK):
                chunk = keys[i:i + CHUNK]
                kv = [[k, self.value(k)] for k in chunk]
                pending = self._send_reliably("handoff", {owner: {"t": "repl", "kv": kv} for owner in owners},
                                              self.node.replication_timeout * 5)
                pending.sent = dict(kv)
                self.handing_off.update(chunk)
        log.info("anna: worker %s hands off %d keys", me, len(todo))

    def _check_left(self) -> None:
        if self.leaving and not self.left.is_set():
            ring = self.ring
            if not self.data or ring is None or not len(ring) or (not self.misplaced and not self.handing_off):
                self.left.set()

    # -- timer ---------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        self.samples.append((now, self.gets + self.puts))
        ring = self.ring
        if self.dirty and ring is not None:
            me = self.me
            groups: dict[tuple, list] = {}
            for key in self.dirty:
                value = self.value(key)
                if value is None:
                    continue
                owners = ring.owners(key)
                if me not in owners:
                    if self._disowns(key):
                        self.misplaced.add(key)
                    continue
                for owner in owners:
                    if owner != me:
                        groups.setdefault(owner, []).append([key, value])
            self.dirty.clear()
            for owner, kv in groups.items():
                for i in range(0, len(kv), CHUNK):
                    self._sends.append((P.worker_topic(*owner), {"t": "gossip", "kv": kv[i:i + CHUNK]}))
        if self.misplaced:
            self._hand_off()
        self._check_left()

    # -- output ----------------------------------------------------------------------------

    def _flush(self) -> None:
        acks, self._acks = self._acks, []
        if self._writes:
            writes, self._writes = self._writes, {}
            undo, self._undo = self._undo, {}
            adds, self._undo_adds = self._undo_adds, []
            try:
                self.node.backend.write(writes)
            except Exception as exc:
                for grown, added in reversed(adds):
                    grown.discard(added)
                self._not_durable(undo, acks, exc)
        if self._pushes:  # after the commit: a cache never holds what a crash can take back
            self._push_updates()
        if self._repl:
            items, self._repl = self._repl, []
            self._wait_for_others("repl", items, self.node.replication_timeout)
        if self._repair:
            items, self._repair = self._repair, []
            self._wait_for_others("repair", items, REPAIR_TIMEOUT)
        if self._answers:
            answers, self._answers = self._answers, {}
            for reply, items in answers.items():
                # A batch can answer many requests of one client: keep each message within the
                # receiver's bounds (inbound.MAX_ITEMS), as replications and hand-offs do.
                for i in range(0, len(items), CHUNK):
                    self._publish(reply, {"t": "resp", "r": items[i:i + CHUNK]})
        if self._sends:
            sends, self._sends = self._sends, []
            for topic, message in sends:
                self._publish(topic, message)
        if self._after_flush:
            callbacks, self._after_flush = self._after_flush, []
            for callback in callbacks:
                callback()

    def _wait_for_others(self, kind: str, items: list[tuple], timeout: float) -> None:
        """Send this batch's replications (``repl``: key and value) or read repairs (``repair``: keys) to
        the other owners, at most :data:`CHUNK` keys per message; each chunk's requests are answered
        once every owner it went to has answered."""
        for i in range(0, len(items), CHUNK):
            chunk = items[i:i + CHUNK]
            messages: dict[tuple, dict] = {}
            for _reply, _rid, key, _t0, value, owners in chunk:
                for owner in owners:
                    if kind == "repl":
                        messages.setdefault(owner, {"t": "repl", "kv": []})["kv"].append([key, value])
                    else:
                        messages.setdefault(owner, {"t": "fetch", "keys": []})["keys"].append(key)
            pending = self._send_reliably(kind, messages, timeout)
            pending.waiters = [(reply, rid, key, t0) for reply, rid, key, t0, _value, _owners in chunk]
            if kind == "repl":
                pending.sent = {key: value for _reply, _rid, key, _t0, value, _owners in chunk}

    def _publish(self, topic: str, message: dict) -> None:
        try:
            self.node.transport.publish(topic, message)
        except Exception as exc:  # one unusable topic must not cost the other answers theirs
            problems.warning(f"publish {message.get('t')}", "anna: worker %s could not send a %r message to %s: %s",
                             self.me, message.get("t"), topic[:120], describe(exc), exc_info=exc)

    def _not_durable(self, undo: dict[str, bytes | GrowingSet | None], acks: list[tuple[dict, list[str]]], exc: Exception) -> None:
        """This batch's commit failed: memory goes back to what is on disk, and nothing of it is acknowledged.

        Puts answered OK become errors (a retry merges again and writes again),
        replication of this batch's puts is not sent (their clients get the
        error now), replicated keys are refused in the acknowledgement (so the
        primary answers its client with the error at once), and reads answered
        to other workers are withheld (they ask again).
        """
        problems.warning("commit failed", "anna: KVS node %s: %s", self.node.info.id, exc)
        for key, value in undo.items():
            self._restore(key, value)
        reason = f"not stored: {exc}"
        for items in self._answers.values():
            for answer in items:
                if answer[1] == P.OK:
                    answer[1], answer[2] = P.ERROR, reason
        for reply, rid, _key, t0, _value, _peers in self._repl:
            self._answer(reply, rid, P.ERROR, reason, t0)
        self._repl = []
        for ack, keys in acks:
            ack["failed"] = [[key, reason] for key in keys]
        self._sends = [(t, m) for t, m in self._sends if m.get("t") != "fetched"]

    # -- status ------------------------------------------------------------------------------

    def ops_per_second(self) -> float:
        samples = list(self.samples)
        if len(samples) < 2:
            return 0.0
        now, total = samples[-1]
        for when, count in samples:
            if now - when <= 5.0:
                return (total - count) / (now - when) if now > when else 0.0
        return 0.0


class KvsNode:
    """A KVS node: workers, membership, status, graceful leave.

    :param backend: an :class:`~essa_anna.storage.LmdbBackend` for durable mode.
    :param limits: bounds on the ring other nodes' tokens may make (see :class:`~essa_anna.membership.Limits`).
    :param push_delay: seconds each push to the watching caches is held (fault injection for tests).
    """

    def __init__(self, node_id: str, transport: Transport, workers: int = 1, global_replication: int = 2,
                 local_replication: int = 1, gossip_interval: float = 0.2, replication_timeout: float = 2.0,
                 backend: LmdbBackend | None = None, keep_on_leave: bool = True, limits: Limits | None = None,
                 push_delay: float = 0.0) -> None:
        P.check_id(node_id)
        self.info = NodeInfo(node_id, uuid.uuid4().hex[:8], workers, global_replication, local_replication)
        self.transport = transport
        self.gossip_interval = gossip_interval
        self.replication_timeout = replication_timeout
        self.backend = backend
        self.keep_on_leave = keep_on_leave
        self.push_delay = push_delay
        self.workers = [Worker(self, i) for i in range(workers)]
        self.limits = limits
        self.membership: Membership | None = None
        self._subs: list = []
        self._token = None
        #: the liveliness tokens this node holds (or is declaring), as its ping answers them
        self._held: list[str] = []
        self._leaving = False
        self.started = time.monotonic()

    def start(self) -> None:
        if self.backend is not None:
            from .ring import Ring

            local = Ring({self.info.id: len(self.workers)}, 1, 1)
            count = 0
            for key, value in self.backend.load():
                worker = self.workers[local.owners(key)[0][1]]
                held = GrowingSet(decode_lattice(value)) if GrowingSet.wanted(value) else value
                worker.data[key] = held
                worker.bytes += worker._size(held)
                count += 1
            log.info("anna: KVS node %s recovered %d keys from %s", self.info.id, count, self.backend.path)
        for worker in self.workers:
            self._subs.append(self.transport.subscribe(worker.topic, self._receiver(worker)))
            worker.start()
        self._subs.append(self.transport.serve(P.kvs_status_topic(self.info.id), self.status))
        self._subs.append(self.transport.serve(f"{P.KEYS}/{self.info.id}", self.list_keys))
        metrics.watch_node(lambda: sum(len(w.data) for w in self.workers), lambda: sum(w.bytes for w in self.workers))
        self._subs.append(self.transport.serve(f"{P.DROP}/{self.info.id}", self.drop))
        self._subs.append(self.transport.serve(P.ping_topic("kvs", self.info.id), self.ping))
        self.membership = Membership(self.transport, self._membership_changed, limits=self.limits)
        self._held.append(P.kvs_token(self.info))
        self._token = self.transport.declare_token(self._held[-1])

    def ping(self, _query: dict | None = None) -> dict:
        """The liveliness tokens this node holds: what proves them to the others' memberships."""
        return {"tokens": list(self._held)}

    def list_keys(self, query: dict) -> dict:
        """The keys this node holds that start with ``query["prefix"]`` (``essa state ls``)."""
        prefix = query.get("prefix", "")
        if not isinstance(prefix, str):
            return {"error": "the prefix must be text"}
        keys: set[str] = set()
        for worker in self.workers:
            keys.update(k for k in list(worker.data) if k.startswith(prefix))  # list(): atomic under the GIL
        return {"keys": sorted(keys)}

    def drop(self, query: dict, timeout: float = 30.0) -> dict:
        """Delete ``query["key"]`` from every worker of this node; answer once that is committed."""
        key = query.get("key")
        if not isinstance(key, str) or not key:
            return {"error": "the key must be non-empty text"}
        done = [threading.Event() for _ in self.workers]
        existed: list[bool] = []
        for worker, event in zip(self.workers, done):
            worker.post(("drop", key, existed, event))
        for event in done:
            if not event.wait(timeout):
                return {"error": f"KVS node {self.info.id} did not delete {key!r} within {timeout:g} s"}
        return {"existed": any(existed)}

    @staticmethod
    def _receiver(worker: Worker):
        post = worker.inbox.put
        clock = time.perf_counter
        check = inbound.worker_message
        where = f"KVS node {worker.me[0]} worker {worker.me[1]}"

        def receive(message: dict) -> None:
            try:
                message = check(message)
            except Malformed as exc:
                inbound.report(where, message.get("t"), exc)
                return
            message["_t"] = clock()
            post(message)

        return receive

    def _membership_changed(self, membership: Membership) -> None:
        ring = membership.ring(exclude=self.info.id if self._leaving else None)
        for worker in self.workers:
            worker.post(("ring", ring))

    def leave(self, timeout: float = 30.0) -> bool:
        """Hand every key off to the remaining owners, then stop; True if all were handed off."""
        membership = self.membership
        leaving_key = f"{P.LIVE_LEAVING}/{self.info.id}"
        self._held.append(leaving_key)
        leaving_token = self.transport.declare_token(leaving_key)
        try:
            with membership.lock:
                self._leaving = True
                ring = membership.ring(exclude=self.info.id)
                self._withdraw_token()
                for worker in self.workers:
                    worker.post(("leave", ring))
            if not len(ring):
                kept = sum(len(w.data) for w in self.workers)
                if kept and self.backend is None:
                    log.warning("anna: KVS node %s is the last one: %d keys are lost", self.info.id, kept)
            deadline = time.monotonic() + timeout
            done = all(w.left.wait(max(0.0, deadline - time.monotonic())) for w in self.workers)
            time.sleep(0.05)  # let the last acks' answers go out
            return done
        finally:
            self._held.remove(leaving_key)
            leaving_token.close()

    def _withdraw_token(self) -> None:
        """Withdraw this node's KVS token (no longer listed by its ping first, so nobody keeps it)."""
        if self._token is not None:
            self._held.remove(P.kvs_token(self.info))
            self._token.close()
            self._token = None

    def stop(self) -> None:
        self._withdraw_token()
        for sub in self._subs:
            sub.close()
        self._subs = []
        if self.membership is not None:
            self.membership.close()
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.join(5)
        if self.backend is not None:
            self.backend.close()

    def status(self, _query: dict | None = None) -> dict:
        latencies: list[float] = []
        for worker in self.workers:
            latencies.extend(list(worker.latencies))
        latencies.sort()

        def pct(p: float) -> float | None:
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3, 3) if latencies else None

        ring = self.workers[0].ring if self.workers else None
        return {
            "role": "kvs",
            "id": self.info.id,
            "incarnation": self.info.incarnation,
            "workers": len(self.workers),
            "global_replication": self.info.global_replication,
            "local_replication": self.info.local_replication,
            "keys": sum(len(w.data) for w in self.workers),
            "keys_per_worker": [len(w.data) for w in self.workers],
            "watches": sum(len(w._watch_log) for w in self.workers),
            "bytes": sum(w.bytes for w in self.workers),
            "gets": sum(w.gets for w in self.workers),
            "puts": sum(w.puts for w in self.workers),
            "errors": sum(w.errors for w in self.workers),
            "ops_per_s": round(sum(w.ops_per_second() for w in self.workers), 1),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "ring": sorted(ring.nodes) if ring is not None else [],
            "unproven_tokens": self.membership.unproven() if self.membership else 0,
            "durable": str(self.backend.path) if self.backend is not None else None,
            "leaving": self._leaving,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }
