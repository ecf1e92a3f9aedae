"""Consistency levels: what a call's state reads may see (chosen per call or per deployment).

``default``
    Lattice merge. A read returns the value in this executor's cache (kept
    fresh by the store's pushes) or the store; a call reads its own writes
    (writes go through to the store, then into the cache).
``repeatable-read``
    Every function of one top-level call (the call tree: the call and every
    call it starts, on any executor) reads the same version of a key. The
    executor of the top-level call is the tree's snapshot owner: the first
    read of a key anywhere in the tree pins the owner's current value
    (:data:`essa.cluster.topics.snapshot`), and every later read in the tree
    gets that value, merged with the writes the reading call made itself
    (read-your-writes). The pins are dropped when the top-level call ends; a
    call still running after that reads current values. A DAG call's stages
    (:mod:`essa.cluster.stages`) share one snapshot, keyed by the DAG call's
    id and owned by the sink's executor: the first read of any stage (or of
    a call a stage starts) opens it there, and the sink ends it when it ends
    (or learns that an upstream stage failed).
``causal``
    A call sees every write that causally precedes it: the writes (and reads)
    of its caller before it was started, and those of the calls whose results
    it received, transitively. Requests carry those keys (``deps``) and
    replies carry them back; a read of such a key skips this executor's cache
    once (a call's writes are stored before it starts a call or replies, so
    the store has them) and the cache takes the fresh value. With the causal lattice
    types the versions are visible to the guest as vector clocks. More than
    :data:`MAX_DEPS` keys make every read of the call skip the cache.
    A DAG call's stages (:mod:`essa.cluster.stages`) are causal across
    executors the same way: a stage's result carries its reply's ``deps``
    (its inputs', its reads and writes) to the stages after it, a fan-in's
    are the union of its parts' (:func:`union_deps`, bounded the same way),
    the source stages get the DAG request's, and the sink's reply carries
    them back. A client's :class:`CausalSession` sends the deps of its causal
    replies with its later causal calls and DAG calls, so those see what its
    earlier ones wrote, on any executor.

Writes, at every level: without a cache (LMDB, memory) each put goes to the
store before the guest goes on (write-through). With a cache, a call's puts
are checked (the lattice type must match the key's value), kept in the call
(its own reads see them) and sent to the store together, one message per KVS
owner, before the call starts another call and before it replies (write-back
bounded by the call: no other call, on any executor, sees them before they
are stored; a call with :data:`MAX_UNSTORED` keys waiting stores them before
writing another). So at every level a call's reply, and any call it starts, comes
after its writes are acknowledged by the store: a crash of the executor can
lose only the writes of calls that have not replied (their caller gets an
error, or the scheduler places the call again: merges are idempotent); a
write the store refuses fails the call.

The level travels in the call request (``consistency``); a call started by a
guest inherits its caller's level and tree.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from essa.cluster import topics
from essa.cluster.calls import outcome
from essa.errors import EssaError, StoreError
from essa.state.bincode import merge_encoded
from essa.state.cache import CachedStore
from essa.state.store import Store
from essa.transport.base import Message, Transport
from essa.util.ratelimit import describe

DEFAULT = "default"
REPEATABLE_READ = "repeatable-read"
CAUSAL = "causal"
#: The levels, as ``--consistency`` and the API spell them.
LEVELS = (DEFAULT, REPEATABLE_READ, CAUSAL)
#: Most keys a causal request or reply carries; beyond it, ``deps`` is ``True`` (every key).
MAX_DEPS = 1024
#: Most call trees whose pins an executor keeps for trees another executor owns.
MAX_TREES = 1000
#: Most keys a call keeps written and not yet stored; one more stores them all first (memory stays bounded).
MAX_UNSTORED = 1024
#: Seconds a read waits for the snapshot owner's answer.
SNAPSHOT_TIMEOUT = 10.0
#: Seconds a DAG call's snapshot is kept at most (its sink never ran: an upstream executor died).
DAG_SNAPSHOT_TTL = 3600.0
#: Most DAG snapshots one executor owns at once, and most ended ones it remembers (the oldest go first).
MAX_DAG_TREES = 10_000
#: The third field of a request's ``snapshot`` for a DAG call's tree.
DAG_TREE = "dag"
#: A ``deps`` field: absent, ``True`` (every key) or the keys.
Deps = list[str] | bool | None


def check_level(level: object) -> str | None:
    """Why ``level`` is not a consistency level (one line), or ``None``."""
    if level is None or level in LEVELS:
        return None
    return f"unknown consistency level {str(level)[:40]!r}: expected one of {', '.join(LEVELS)}"


def check_fields(request: Message) -> str | None:
    """Why a call request's consistency fields are malformed (one line), or ``None``."""
    problem = check_level(request.get("consistency"))
    if problem is not None:
        return problem
    tree = request.get("snapshot")
    if tree is not None and not (isinstance(tree, list) and len(tree) in (2, 3) and isinstance(tree[0], str)
                                 and len(tree[0]) <= 1024 and topics.is_chunk(tree[1])
                                 and tree[2:] in ([], [DAG_TREE])):
        return "malformed call request: 'snapshot' is not [tree id, executor id] (or [..., \"dag\"])"
    problem = check_deps(request.get("deps"))
    if problem is not None:
        return f"malformed call request: {problem}"
    return None


def check_deps(deps: object) -> str | None:
    """Why a ``deps`` field (of a request, a reply or a DAG stage input) is malformed (one line), or ``None``.

    A well-formed one is absent (``None``), ``True`` (every key) or a list of at most :data:`MAX_DEPS` keys.
    """
    if deps is None or deps is True or (
            isinstance(deps, list) and len(deps) <= MAX_DEPS and all(isinstance(k, str) for k in deps)):
        return None
    return f"'deps' is not a list of at most {MAX_DEPS} keys"


def union_deps(first: Deps, second: Deps) -> Deps:
    """The keys of two well-formed ``deps`` fields together, bounded like a call's (beyond :data:`MAX_DEPS`: True)."""
    if first is None or second is None:
        return second if first is None else first
    if first is True or second is True:
        return True
    keys = set(first).union(second)
    return True if len(keys) > MAX_DEPS else sorted(keys)


class Snapshots:
    """The versions pinned by repeatable-read call trees, in one executor process.

    For the trees this executor owns, it answers other executors' reads on
    :func:`essa.cluster.topics.snapshot`; for the others, it keeps what their
    owners answered (the :data:`MAX_TREES` most recent trees).

    A plain call tree is opened by its top-level call (:meth:`begin`) before
    any call of it reads. A DAG call's tree has no such call: the first read
    of it opens it (:meth:`_pin` with ``dag``) unless it ended already
    (:meth:`end_dag` remembers the :data:`MAX_DAG_TREES` most recent), and it
    is dropped after :data:`DAG_SNAPSHOT_TTL` seconds if its end never comes.
    """

    def __init__(self, executor_id: str, transport: Transport, state: Store) -> None:
        self.id = executor_id
        self.transport = transport
        self.state = state
        self._lock = threading.Lock()
        self._owned: dict[str, dict[str, bytes | None]] = {}
        self._others: OrderedDict[str, dict[str, bytes | None]] = OrderedDict()
        #: DAG trees owned here -> when they expire (oldest first); ended DAG trees (most recent last)
        self._dag_expiry: OrderedDict[str, float] = OrderedDict()
        self._dags_ended: OrderedDict[str, None] = OrderedDict()

    def serve(self):
        return self.transport.serve(topics.snapshot(self.id), self.answer)

    def begin(self, tree: str) -> None:
        with self._lock:
            self._owned.setdefault(tree, {})

    def end(self, tree: str) -> None:
        with self._lock:
            self._owned.pop(tree, None)

    def end_dag(self, tree: str) -> None:
        """DAG call ``tree`` ended: drop its pins; a later read of it (a straggler) reads current values."""
        with self._lock:
            self._owned.pop(tree, None)
            self._dag_expiry.pop(tree, None)
            self._dags_ended[tree] = None
            self._dags_ended.move_to_end(tree)
            while len(self._dags_ended) > MAX_DAG_TREES:
                self._dags_ended.popitem(last=False)

    def read(self, tree: str, owner: str, key: str, dag: bool = False) -> bytes | None:
        """The version of ``key`` pinned for ``tree`` (pinning the current one if it has none yet)."""
        if owner == self.id:
            return self._pin(tree, key, dag)
        with self._lock:
            pins = self._others.get(tree)
            if pins is not None and key in pins:
                self._others.move_to_end(tree)
                return pins[key]
        query = {"tree": tree, "key": key, "dag": True} if dag else {"tree": tree, "key": key}
        answers = self.transport.query(topics.snapshot(owner), query, timeout=SNAPSHOT_TIMEOUT)
        answer = next((a for a in answers if isinstance(a, dict)), None)
        if answer is None:
            raise StoreError(f"the snapshot of call tree {tree[:40]} did not answer (executor {owner} is gone?)")
        if isinstance(answer.get("error"), str):
            raise StoreError(answer["error"][:200])
        value = answer.get("value")
        if value is not None and not isinstance(value, bytes):
            raise StoreError(f"executor {owner} answered a snapshot read with a malformed value")
        if answer.get("pinned"):
            with self._lock:
                pins = self._others.setdefault(tree, {})
                self._others.move_to_end(tree)
                value = pins.setdefault(key, value)
                while len(self._others) > MAX_TREES:
                    self._others.popitem(last=False)
        return value

    def answer(self, query: Message) -> Message:
        tree, key = query.get("tree"), query.get("key")
        if not (isinstance(tree, str) and isinstance(key, str)):
            return {"error": "a snapshot read names a tree and a key (text)"}
        try:
            value = self._pin(tree, key, query.get("dag") is True)
            return {"value": value, "pinned": tree in self._owned}
        except EssaError as exc:
            return {"error": str(exc)}

    def _pin(self, tree: str, key: str, dag: bool = False) -> bytes | None:
        with self._lock:
            pins = self._owned.get(tree)
            if pins is None and dag:
                pins = self._open_dag(tree)
            if pins is not None and key in pins:
                return pins[key]
        value = self.state.get_bytes(key)
        with self._lock:
            pins = self._owned.get(tree)
            if pins is None:  # the tree ended: a straggler reads the current value
                return value
            return pins.setdefault(key, value)  # a concurrent first read may have pinned first

    def _open_dag(self, tree: str) -> dict[str, bytes | None] | None:  # lock held
        """The pins of DAG tree ``tree``, opened now unless it ended; expired trees are dropped."""
        now = time.monotonic()
        while self._dag_expiry:
            oldest, expires = next(iter(self._dag_expiry.items()))
            if expires > now and len(self._dag_expiry) < MAX_DAG_TREES:
                break
            del self._dag_expiry[oldest]
            self._owned.pop(oldest, None)
        if tree in self._dags_ended:
            return None
        self._dag_expiry[tree] = now + DAG_SNAPSHOT_TTL
        pins = self._owned[tree] = {}
        return pins

    def status(self) -> dict:
        with self._lock:
            return {"trees_owned": len(self._owned), "trees_seen": len(self._others)}


class CallState:
    """One call's view of the state, at its consistency level (what :class:`~essa.cluster.executor._CallHost` uses)."""

    __slots__ = ("level", "state", "snapshots", "tree", "owner", "root", "dag", "writes", "unstored", "buffered",
                 "deps", "all_deps", "inherited", "write_error", "_merged")

    def __init__(self, request: Message, executor_id: str, state: Store, snapshots: Snapshots | None) -> None:
        self.level = request.get("consistency") or DEFAULT
        self.state = state
        self.snapshots = snapshots
        self.root = self.dag = False
        self.tree = self.owner = None
        #: this call's own writes, merged per key (read-your-writes where reads may not see them otherwise)
        self.writes: dict[str, bytes] = {}
        #: with a cache: the writes not sent to the store yet, merged per key
        self.unstored: dict[str, bytes] = {}
        self.buffered = isinstance(state, CachedStore)
        #: why the writes sent when the call ended were not stored, or ``None``
        self.write_error: str | None = None
        #: key -> (value read, own writes, their merge): the last read of a key this call wrote
        self._merged: dict[str, tuple[bytes | None, bytes, bytes]] = {}
        #: causal: keys this call's successors must see (its reads and writes, inherited, received)
        self.deps: set[str] = set()
        self.all_deps = False
        #: causal: keys to read past the cache once
        self.inherited: set[str] = set()
        if self.level == REPEATABLE_READ and snapshots is not None:
            snapshot = request.get("snapshot")
            if snapshot is None:
                self.tree, self.owner, self.root = request["id"], executor_id, True
                snapshots.begin(self.tree)
            else:
                self.tree, self.owner = snapshot[0], snapshot[1]
                self.dag = snapshot[2:] == [DAG_TREE]  # a DAG call's tree: its first read opens it
        elif self.level == CAUSAL:
            deps = request.get("deps")
            if deps is True:
                self.all_deps = True
            elif deps:
                self.inherited.update(deps)
                self.deps.update(deps)

    def get(self, key: str) -> bytes | None:
        if self.tree is not None:
            value = self.snapshots.read(self.tree, self.owner, key, self.dag)
        elif self.level == CAUSAL:
            if self.all_deps or key in self.inherited:
                self.inherited.discard(key)
                value = self.state.refresh(key) if self.buffered else self.state.get_bytes(key)
            else:
                value = self.state.get_bytes(key)
            self._depend(key)
        else:
            value = self.state.get_bytes(key)
        own = self.writes.get(key)
        if own is None:
            return value
        if value is None:
            return own
        last = self._merged.get(key)
        if last is not None and last[0] is value and last[1] is own:  # a big value is not decoded again
            return last[2]
        merged = merge_encoded(value, own)
        self._merged[key] = (value, own, merged)
        return merged

    def put(self, key: str, value: bytes) -> None:
        own = self.writes.get(key)
        if self.buffered:
            if own is None:  # the store would refuse another lattice type when the call ends: refuse it now
                current = self.state.get_bytes(key)
                if current is not None and current[:4] != value[:4]:
                    merge_encoded(current, value)  # raises LatticeTypeError (or DecodeError) naming the types
            if key not in self.unstored and len(self.unstored) >= MAX_UNSTORED:
                self.store_writes()
                own = self.writes.get(key)
            self.writes[key] = merge_encoded(own, value)
            self.unstored[key] = merge_encoded(self.unstored.get(key), value)
        else:
            self.state.merge_bytes(key, value)
            if self.tree is not None:
                self.writes[key] = value if own is None else merge_encoded(own, value)
        if self.level == CAUSAL:
            self._depend(key)

    def store_writes(self) -> None:
        """Send the writes kept in the call to the store and wait for its acknowledgement (with a cache)."""
        if self.unstored:
            items, self.unstored = list(self.unstored.items()), {}
            self.state.merge_many(items)
            if self.tree is None:  # the cache holds them now; a snapshot does not
                for key, _value in items:
                    self.writes.pop(key, None)
                    self._merged.pop(key, None)

    def _depend(self, key: str) -> None:
        if not self.all_deps:
            self.deps.add(key)
            if len(self.deps) > MAX_DEPS:
                self.all_deps, self.deps = True, set()

    def request_extra(self) -> dict[str, Any]:
        """What a call this call starts carries, so it reads at the same level."""
        if self.level == DEFAULT:
            return {}
        if self.tree is not None:
            snapshot = [self.tree, self.owner, DAG_TREE] if self.dag else [self.tree, self.owner]
            return {"consistency": self.level, "snapshot": snapshot}
        return {"consistency": self.level, "deps": True if self.all_deps else sorted(self.deps)}

    def reply_extra(self) -> dict[str, Any]:
        """What this call's reply carries back to its caller (causal: its dependencies)."""
        if self.level != CAUSAL:
            return {}
        return {"deps": True if self.all_deps else sorted(self.deps)}

    def received(self, reply: Message) -> None:
        """A started call's reply arrived: its dependencies become this call's."""
        deps = reply.get("deps")
        if self.level != CAUSAL or deps is None:
            return
        if deps is True or not isinstance(deps, list):
            self.all_deps, self.deps = True, set()
            return
        keys = [k for k in deps[:MAX_DEPS] if isinstance(k, str)]
        self.inherited.update(keys)
        for key in keys:
            self._depend(key)

    def end(self) -> None:
        """The call ended: store its writes (a failure is kept in :attr:`write_error`), drop its pins."""
        try:
            self.store_writes()
        except Exception as exc:  # the call fails with this line instead of its result
            self.write_error = str(exc) if isinstance(exc, EssaError) else describe(exc)
        finally:
            if self.root:
                self.snapshots.end(self.tree)


class CausalSession:
    """A client's causal past: the ``deps`` of the causal replies it got, sent with its later causal calls.

    So a causal call (or DAG call) of a client sees what that client's
    earlier causal calls and DAG calls wrote and read, on whichever executor
    it runs. Bounded like a call's (beyond :data:`MAX_DEPS` keys, ``True``:
    every later causal call reads past its executor's cache); it lasts as
    long as the client.
    """

    def __init__(self) -> None:
        self._deps: Deps = None
        self._lock = threading.Lock()

    def request_extra(self, fields: Message) -> dict[str, Any]:
        """What a request with ``fields`` carries besides: the session's deps if it is causal.

        A DAG call that names no level is causal where its plan's stages
        (their deployments) are.
        """
        level, plan = fields.get("consistency"), fields.get("dag")
        if level is None and isinstance(plan, dict) and isinstance(plan.get("stages"), list):
            causal = any(isinstance(stage, dict) and stage.get("consistency") == CAUSAL for stage in plan["stages"])
        else:
            causal = level == CAUSAL
        with self._lock:
            deps = self._deps
        return {"deps": deps} if causal and deps and "deps" not in fields else {}

    def received(self, reply: Message) -> None:
        """A reply arrived: its deps (a causal call's, a causal DAG sink's) join the session's."""
        deps = reply.get("deps")
        if deps and check_deps(deps) is None:
            with self._lock:
                self._deps = union_deps(self._deps, deps)


class TrackedCall:
    """A started call whose reply also feeds the caller's :class:`CallState` (a :class:`~essa.wasm.abi.PendingCall`)."""

    __slots__ = ("future", "call_state")

    def __init__(self, future, call_state: CallState) -> None:
        self.future = future
        self.call_state = call_state

    def wait(self, timeout: float | None = None):
        reply = self.future.result(timeout)
        self.call_state.received(reply)
        return outcome(reply)

    def __getattr__(self, name: str):  # cancel(), id, ... of the future
        return getattr(self.future, name)


__all__ = ["CAUSAL", "DEFAULT", "LEVELS", "MAX_DEPS", "REPEATABLE_READ", "CallState", "CausalSession", "Snapshots",
           "TrackedCall", "check_deps", "check_fields", "check_level", "union_deps"]
