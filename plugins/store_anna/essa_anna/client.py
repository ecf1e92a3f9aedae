"""The Anna client: what executors, ``essa run`` and the CLI use to reach the KVS.

A client asks a routing node once for the owners of a key, caches the answer,
then talks to the owners directly: puts go to the key's primary owner, gets to
any owner. Requests issued at the same time are combined into one message per
owner worker (the thread that finds no send in progress sends everything that
is queued), so many concurrent requests cost few messages.

A "wrong owner" answer drops the cached owners and asks the routing node
again. When a KVS node disappears (its liveliness token goes away, e.g. it was
killed) the client forgets every cached owner and re-sends the requests that
node had not answered, so they are answered by the remaining replicas. Every
request has a deadline; a request never hangs.

A watch (:meth:`AnnaClient.watch`) is a get answered by the key's primary
owner, which then pushes the key's changes to this client's inbox for
:data:`~essa_anna.protocol.WATCH_LEASE` seconds; they reach the callback given
to :meth:`AnnaClient.on_updates`, and a change of the KVS membership calls its
``reset`` (the new owners know nothing of earlier watches).
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Iterable, Sequence

from essa.plugin import DecodeError, LatticeTypeError, describe, encode_key, encode_text

from . import inbound
from . import protocol as P
from .errors import AnnaError, AnnaTimeout, AnnaUnavailable, Malformed
from .membership import Limits, Membership

log = logging.getLogger("essa.anna")

#: How often the client's timer checks deadlines, retries and membership.
TICK = 0.02
#: Keys whose owners the client remembers at most (the oldest learnt go first: asked again when used).
MAX_OWNERS = 100_000
#: Re-ask the routing node for owners it has not answered after this long.
ADDRESS_RETRY = 0.25
#: Re-send a request that got no answer after this long (doubling each time).
#: Publications to a peer whose subscriptions this process has not learnt yet
#: are dropped by zenoh; requests are idempotent (a put is a merge).
RESEND = 0.3


class _Op:
    __slots__ = ("rid", "op", "key", "value", "ack", "future", "dest", "deadline", "attempts", "retry_at",
                 "resend_at", "resends")

    def __init__(self, rid: int, op: str, key: str, value: bytes | None, ack: str, deadline: float) -> None:
        self.rid = rid
        self.op = op
        self.key = key
        self.value = value
        self.ack = ack
        self.future: Future = Future()
        self.dest: tuple[str, int] | None = None
        self.deadline = deadline
        self.attempts = 0
        self.retry_at = 0.0
        self.resend_at = 0.0
        self.resends = 0


def _fail(future: Future, exc: Exception) -> None:
    if not future.done():
        try:
            future.set_exception(exc)
        except Exception:  # pragma: no cover - completed meanwhile
            pass


def _succeed(future: Future, value) -> None:
    if not future.done():
        try:
            future.set_result(value)
        except Exception:  # pragma: no cover
            pass


class AnnaClient:
    """A connection to an Anna cluster.

    :param connect: zenoh endpoints of the cluster (a routing node's
        ``--listen`` endpoint, or any peer of the cluster).
    :param timeout: seconds a request may take, retries included.
    :param ack: ``"all"`` (a put returns once every owner has it) or
        ``"owner"`` (once the primary owner has it; replicas catch up by gossip).
    :param connect_timeout: seconds to keep trying to reach ``connect``
        (default: ``timeout``); a cluster that is still starting may need longer.
    :param limits: bounds on the nodes the cluster's tokens may make this client
        hold (default: :meth:`~essa_anna.membership.Limits.from_environment`).
    """

    def __init__(self, connect: Sequence[str] = (P.DEFAULT_ENDPOINT,), timeout: float = 5.0, ack: str = "all",
                 zenoh_config: str | None = None, scouting: bool = False, transport=None,
                 connect_timeout: float | None = None, limits: Limits | None = None) -> None:
        if ack not in ("all", "owner"):
            raise AnnaError(f"invalid anna ack mode {ack!r}: expected all or owner")
        self.endpoints = list(connect)
        self.where = ", ".join(self.endpoints) or "the configured endpoints"
        self.timeout = float(timeout)
        self.ack = P.ACK_ALL if ack == "all" else P.ACK_OWNER
        self._owns_transport = transport is None
        if transport is None:
            wait = self.timeout if connect_timeout is None else float(connect_timeout)
            transport = _open(self.endpoints, zenoh_config, scouting, wait, self.where)
        self.transport = transport
        self.id = uuid.uuid4().hex[:12]
        self.inbox = P.client_topic(self.id)
        self._lock = threading.Lock()
        self._rids = itertools.count(1)
        self._inflight: dict[int, _Op] = {}
        self._unresolved: dict[str, list[_Op]] = {}
        self._asked: dict[str, float] = {}
        #: key -> its owners, as the routing node said (at most ``max_owners``, in the order learnt)
        self._cache: dict[str, tuple] = {}
        self.max_owners = MAX_OWNERS
        self._topics: dict[tuple, str] = {}
        self._out: dict[str, list] = {}
        self._addr: set[str] = set()
        self._retry: list[_Op] = []
        self._flushing = False
        self._fetches: dict[int, tuple[threading.Event, dict, set]] = {}
        self._no_kvs: str | None = None
        self._kvs_seen: frozenset = frozenset()
        self._closed = False
        self._local = threading.local()  # .defer: submits made while answers are handed out wait for one flush
        self._update = None  # on_updates(): (update, reset)
        try:
            self._sub = transport.subscribe(self.inbox, self._on_message)
            self.membership = Membership(transport, limits=limits)
        except BaseException:
            if self._owns_transport:
                transport.close()
            raise
        self._timer = threading.Thread(target=self._timer_loop, name=f"anna-client-{self.id}", daemon=True)
        self._timer.start()

    # -- public API ---------------------------------------------------------------------

    def submit(self, op: str, key: str, value: bytes | None = None, ack: str | None = None) -> Future:
        """Start a GET (``"g"``) or PUT (``"p"``); the future gives the value (GET) or ``None``."""
        _check_key(key)
        if self._closed:
            raise AnnaError("the anna client is closed")
        o = _Op(next(self._rids), op, key, value, ack or self.ack, time.monotonic() + self.timeout)
        with self._lock:
            self._route(o)
        if not getattr(self._local, "defer", False):
            self._flush()
        return o.future

    def get(self, key: str) -> bytes | None:
        """The encoded lattice stored under ``key``, or ``None``."""
        return self._wait(self.submit(P.GET, key))

    def put(self, key: str, value: bytes) -> None:
        """Merge the encoded lattice ``value`` into ``key``."""
        self._wait(self.submit(P.PUT, key, bytes(value)))

    def watch(self, key: str) -> tuple[bytes | None, bool]:
        """Read ``key`` from its primary owner and have its changes pushed here (see :meth:`on_updates`).

        Returns the value and whether the watch was taken (a node whose index of
        watchers is full answers without taking it).
        """
        return self._wait(self.submit(P.WATCH, key))

    def on_updates(self, update, reset) -> None:
        """Give pushed values to ``update(key, value or None)``; call ``reset()`` when the KVS membership changes."""
        self._update = (update, reset)

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        return [self._wait(f) for f in [self.submit(P.GET, k) for k in keys]]

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Merge every (key, encoded lattice); sent together, one message per owner worker."""
        deferred = getattr(self._local, "defer", False)
        self._local.defer = True
        try:
            futures = [self.submit(P.PUT, k, bytes(v)) for k, v in items]
        finally:
            self._local.defer = deferred
        if not deferred:
            self._flush()
        for f in futures:
            self._wait(f)

    def owners(self, key: str) -> tuple[tuple[str, int], ...]:
        """The (node, worker) owners of ``key`` as the routing node says (primary first)."""
        deadline = time.monotonic() + self.timeout
        with self._lock:
            self._cache.pop(key, None)
        try:
            while time.monotonic() < deadline:
                with self._lock:
                    owners = self._cache.get(key)
                    if owners:
                        return owners
                    if key not in self._unresolved:  # (again, if membership changed meanwhile)
                        self._unresolved[key] = []
                        self._addr.add(key)
                self._flush()
                time.sleep(0.005)
            raise self._unreachable()
        finally:
            with self._lock:
                if self._unresolved.get(key) == []:
                    del self._unresolved[key]

    def fetch(self, owner: tuple[str, int], keys: Sequence[str], timeout: float | None = None) -> dict[str, bytes | None]:
        """Read ``keys`` from one worker directly (no ownership check): for checking replicas."""
        fid = next(self._rids)
        event, result, waiting = threading.Event(), {}, set()
        self._fetches[fid] = (event, result, waiting)
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        message = {"t": "fetch", "id": fid, "reply": self.inbox, "keys": list(keys)}
        wait = RESEND
        try:
            while True:
                self.transport.publish(P.worker_topic(*owner), message)
                if event.wait(min(wait, max(0.0, deadline - time.monotonic()))):
                    return result
                if time.monotonic() >= deadline:
                    raise AnnaTimeout(f"KVS node {owner[0]} (worker {owner[1]}) did not answer within {timeout:g} s")
                wait *= 2
        finally:
            self._fetches.pop(fid, None)

    def keys(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix`` held by any KVS node, sorted (asks every live node)."""
        encode_text(prefix, "key prefix")
        answers = self._ask_every_node(P.KEYS, {"prefix": prefix})
        return sorted({k for a in answers for k in a.get("keys", ()) if isinstance(k, str)})

    def delete(self, key: str) -> bool:
        """Delete ``key`` on every live KVS node; return whether any held it.

        Deleting is not a lattice operation: a replica that was unreachable
        meanwhile may bring the key back when it gossips.
        """
        _check_key(key)
        return any(a.get("existed") is True for a in self._ask_every_node(P.DROP, {"key": key}))

    def _ask_every_node(self, root: str, message: dict) -> list[dict]:
        """Query ``root/<node>`` of every live KVS node; their answers, or an error naming a silent one.

        While this client knows of no KVS node (it has just connected, or every node is proving itself
        again), it waits for one until its timeout, as a read or a write does.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            nodes = set(self.membership.kvs)
            answers = [a for a in self.transport.query(f"{root}/**", message, timeout=self.timeout)
                       if isinstance(a, dict)]
            errors = [a["error"] for a in answers if isinstance(a.get("error"), str)]
            if errors:
                raise AnnaError(errors[0])
            if nodes and len(answers) >= len(nodes):
                return answers
            if time.monotonic() >= deadline:
                if not nodes:
                    raise self._unreachable()
                raise AnnaTimeout(f"only {len(answers)} of {len(nodes)} anna KVS nodes answered within "
                                  f"{self.timeout:g} s")
            time.sleep(0.1)

    def status(self, timeout: float = 2.0) -> list[dict]:
        """The status of every routing and KVS node that answers."""
        return self.transport.query(f"{P.STATUS}/**", {}, timeout=timeout)

    def wait_for_nodes(self, count: int, timeout: float | None = None) -> None:
        """Wait until a routing node and ``count`` KVS nodes are visible."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            if self.membership.routing and len(self.membership.kvs) >= count:
                return
            time.sleep(0.02)
        raise self._unreachable() if not self.membership.routing else AnnaUnavailable(
            f"only {len(self.membership.kvs)} of {count} anna KVS nodes are reachable at {self.where}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._timer.join(1)
        try:
            self._sub.close()
            self.membership.close()
        finally:
            if self._owns_transport:
                # zenoh's close waits for every link to close gracefully, which takes
                # seconds when a peer is frozen: never let that hold the caller up.
                closer = threading.Thread(target=self.transport.close, name="anna-client-close", daemon=True)
                closer.start()
                closer.join(1.0)
        with self._lock:
            ops = list(self._inflight.values()) + [o for ops in self._unresolved.values() for o in ops] + self._retry
            self._inflight.clear(), self._unresolved.clear(), self._retry.clear()
        for o in ops:
            _fail(o.future, AnnaError("the anna client was closed"))

    def __enter__(self) -> "AnnaClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _wait(self, future: Future):
        try:
            return future.result(self.timeout * 2 + 5)
        except TimeoutError:  # the timer fails requests first; this is a safety net
            raise AnnaTimeout(f"no answer from the anna cluster at {self.where} within {self.timeout:g} s") from None

    def _unreachable(self) -> AnnaError:
        if not self.membership.routing:
            return AnnaUnavailable(f"no anna routing node is reachable at {self.where}")
        if self._no_kvs or not self.membership.kvs:
            return AnnaUnavailable(f"no anna KVS node is reachable at {self.where}"
                                   + (f" (routing node {self._no_kvs} knows none)" if self._no_kvs else ""))
        return AnnaTimeout(f"the anna routing node did not answer within {self.timeout:g} s")

    def _route(self, o: _Op) -> None:  # lock held
        owners = self._cache.get(o.key)
        if owners is None:
            waiting = self._unresolved.get(o.key)
            if waiting is None:
                self._unresolved[o.key] = [o]
                self._addr.add(o.key)
            else:
                waiting.append(o)
                if not self._asked.get(o.key):
                    self._addr.add(o.key)
            return
        dest = owners[0] if o.op != P.GET or len(owners) == 1 else random.choice(owners)
        o.dest = dest
        o.resend_at = time.monotonic() + RESEND * (1 << min(o.resends, 4))
        self._inflight[o.rid] = o
        topic = self._topics.get(dest)
        if topic is None:
            topic = self._topics[dest] = P.worker_topic(*dest)
        self._out.setdefault(topic, []).append([o.rid, o.op, o.key, o.value, o.ack])

    def _uncache(self, o: _Op) -> None:  # lock held
        """Forget the cached owners of ``o``'s key if they include the node ``o`` went to."""
        owners = self._cache.get(o.key)
        if owners is not None and o.dest in owners:
            del self._cache[o.key]

    def _flush(self) -> None:
        with self._lock:
            if self._flushing:
                return
            self._flushing = True
        try:
            while True:
                with self._lock:
                    out, self._out = self._out, {}
                    addr, self._addr = self._addr, set()
                    routing = None
                    if addr:
                        routing = self._pick_routing()
                        now = time.monotonic()
                        for key in addr:
                            self._asked[key] = now if routing else 0.0
                        if routing is None:
                            addr = set()
                    if not out and not addr:
                        self._flushing = False
                        return
                publish = self.transport.publish
                step = P.MAX_OPS_PER_MESSAGE
                for topic, ops in out.items():
                    for i in range(0, len(ops), step):
                        publish(topic, {"t": "req", "reply": self.inbox, "ops": ops[i:i + step]})
                if addr:
                    keys = list(addr)
                    for i in range(0, len(keys), step):
                        publish(P.routing_topic(routing), {"t": "addr", "reply": self.inbox, "keys": keys[i:i + step]})
        except BaseException:
            with self._lock:
                self._flushing = False
            raise

    def _pick_routing(self) -> str | None:
        try:
            ids = sorted(self.membership.routing)
        except RuntimeError:  # changed while copying
            return None
        return random.choice(ids) if ids else None

    def _on_message(self, message: dict) -> None:
        try:
            message = inbound.client_message(message)
        except Malformed as exc:
            inbound.report(f"anna client {self.id}", message.get("t"), exc)
            return
        kind = message.get("t")
        if kind == "resp":
            done = []
            now = time.monotonic()
            with self._lock:
                for rid, code, payload in message["r"]:
                    o = self._inflight.pop(rid, None)
                    if o is None:
                        continue
                    if code == P.WRONG_OWNER:
                        self._uncache(o)
                        o.attempts += 1
                        if o.attempts > 2:
                            o.retry_at = now + min(0.1, 0.005 * o.attempts)
                            self._retry.append(o)
                        else:
                            self._route(o)
                    else:
                        done.append((o, code, payload))
            # Requests that callbacks of these answers submit go out together, in one flush.
            self._local.defer = True
            try:
                for o, code, payload in done:
                    self._complete(o, code, payload)
            finally:
                self._local.defer = False
            self._flush()
        elif kind == "addr":
            with self._lock:
                departed = self.membership.departed
                self._no_kvs = message.get("from") if not message.get("nodes") else None
                for key, owners in message["owners"]:
                    owners = tuple((node, worker) for node, worker in owners if node not in departed)
                    if not owners:
                        continue
                    self._cache[key] = owners
                    self._asked.pop(key, None)
                    if len(self._cache) > self.max_owners:  # a client that touches ever new keys stays bounded
                        del self._cache[next(iter(self._cache))]
                    for o in self._unresolved.pop(key, ()):
                        self._route(o)
            self._flush()
        elif kind == "upd":
            if self._update is not None:
                update = self._update[0]
                for key, value in message["kv"]:
                    update(key, value)
        elif kind == "fetched":
            entry = self._fetches.get(message["id"]) if isinstance(message["id"], int) else None
            if entry is not None:
                event, result, _waiting = entry
                for key, value in message["kv"]:
                    result[key] = value
                event.set()

    def _complete(self, o: _Op, code: int, payload) -> None:
        if code in (P.OK, P.UNWATCHED) and o.op != P.PUT and payload is not None and type(payload) is not bytes:
            _fail(o.future, AnnaError(f"KVS node {o.dest[0]} answered key {o.key!r} with a malformed value"))
        elif o.op == P.WATCH and code in (P.OK, P.NOT_FOUND, P.UNWATCHED):
            _succeed(o.future, (payload if code != P.NOT_FOUND else None, code != P.UNWATCHED))
        elif code == P.OK:
            _succeed(o.future, payload if o.op == P.GET else None)
        elif code == P.NOT_FOUND:
            _succeed(o.future, None)
        elif code == P.TYPE_MISMATCH:
            _fail(o.future, LatticeTypeError(payload))
        elif code == P.BAD_VALUE:
            _fail(o.future, DecodeError(payload))
        elif code == P.TIMEOUT:
            _fail(o.future, AnnaTimeout(f"put not acknowledged: {payload}"))
        else:
            _fail(o.future, AnnaError(f"KVS node {o.dest[0]}: {payload}"))

    def _timer_loop(self) -> None:
        while not self._closed:
            time.sleep(TICK)
            try:
                self._on_tick()
            except Exception as exc:  # pragma: no cover - keep the timer alive
                inbound.problems.warning("client timer", "anna: client %s: its timer failed: %s", self.id,
                                         describe(exc), exc_info=exc)

    def _on_tick(self) -> None:
        now = time.monotonic()
        failed: list[tuple[_Op, Exception]] = []
        membership = self.membership
        reset = False
        with self._lock:
            kvs = frozenset(membership.kvs)
            if kvs != self._kvs_seen:
                self._kvs_seen = kvs
                reset = True
                self._cache.clear()
                for rid, o in list(self._inflight.items()):
                    if o.dest is not None and o.dest[0] not in kvs:
                        del self._inflight[rid]
                        self._route(o)
            for rid, o in list(self._inflight.items()):
                if o.deadline <= now:
                    del self._inflight[rid]
                    failed.append((o, AnnaTimeout(
                        f"KVS node {o.dest[0]} (worker {o.dest[1]}) did not answer within {self.timeout:g} s"
                        f" (key {o.key!r})")))
                elif o.resend_at <= now:
                    del self._inflight[rid]
                    o.resends += 1
                    if o.dest[0] not in kvs:
                        # Not a member this client has seen prove itself (yet, or any more: its token
                        # may have come and gone meanwhile): ask the routing node again.
                        self._uncache(o)
                    self._route(o)
            for key in list(self._unresolved):
                ops = self._unresolved[key]
                keep = [o for o in ops if o.deadline > now]
                if len(keep) != len(ops):
                    error = self._unreachable()
                    failed.extend((o, error) for o in ops if o.deadline <= now)
                if keep or not ops:
                    self._unresolved[key] = keep
                    if now - self._asked.get(key, 0.0) > ADDRESS_RETRY:
                        self._addr.add(key)
                else:
                    del self._unresolved[key]
                    self._asked.pop(key, None)
            if self._retry:
                due = [o for o in self._retry if o.retry_at <= now]
                self._retry = [o for o in self._retry if o.retry_at > now]
                for o in due:
                    if o.deadline <= now:
                        failed.append((o, AnnaTimeout(
                            f"key {o.key!r} kept moving between KVS nodes for {self.timeout:g} s")))
                    else:
                        self._route(o)
        self._flush()
        if reset and self._update is not None:
            self._update[1]()
        for o, exc in failed:
            _fail(o.future, exc)


def _open(endpoints: list[str], config: str | None, scouting: bool, connect_timeout: float, where: str):
    from essa.plugin import TransportError, open_transport

    try:
        return open_transport(connect=endpoints, config=config, scouting=scouting, connect_timeout=connect_timeout)
    except TransportError as exc:
        if "cannot reach" in str(exc):
            raise AnnaUnavailable(f"no anna routing node is reachable at {where}: nothing answers there "
                                  "(is `essa anna routing` running?)") from None
        raise AnnaUnavailable(f"cannot connect to the anna cluster at {where}: {exc}") from None


def _check_key(key: str) -> None:
    """Refuse, in one line, a key the KVS nodes would drop: not UTF-8 text, empty, or too long."""
    encode_key(key)
    if len(key) > inbound.MAX_KEY_CHARS:
        raise AnnaError(f"anna keys are at most {inbound.MAX_KEY_CHARS} characters (this one has {len(key)})")
