"""The zenoh transport: essa's processes talking over eclipse-zenoh 1.x.

Every process is a zenoh *peer* with explicit endpoints: the scheduler
listens (default ``tcp/127.0.0.1:7447``), executors and clients connect to it,
and zenoh's gossip lets peers that share a neighbour find each other. Multicast
scouting is off unless asked for, and a process listens only where it is told
(zenoh's own default would be every interface). Messages are msgpack-encoded
dicts; puts use blocking congestion control, so a message is never dropped
under load. zenoh's shared memory is off: with it, every message over 3 KB
to a peer on the same host went through a 16 MiB pool of the sender that the
receiver mapped, so each process grew by 16 MiB (resident) for every peer
that ever sent it such a message (a scheduler, by each client whose liveness
check asked about a hundred calls), and kept it; essa copies every message
into Python bytes anyway.

Options (from flags, ``ESSA_*`` environment variables or a zenoh config file):

``listen``, ``connect``
    lists of zenoh endpoints such as ``tcp/127.0.0.1:7447``;
``config``
    a zenoh JSON5 config file, applied first (flags win);
``tls``
    a :class:`~essa.security.tls.TlsFiles`: mutual TLS with the cluster's
    CA and essa's access control (``tcp/`` endpoints are used as ``tls/``);
    ``None``: plain TCP, with a warning when listening beyond loopback.
``access``
    with ``tls``: ``(role, keys)`` pairs of access beyond the core's, as
    plugins grant it (:meth:`essa.plugins.PluginManager.access`).
``scouting``
    ``True`` to enable multicast scouting;
``connect_timeout``
    seconds to try ``connect`` endpoints before giving up; ``None`` keeps
    retrying in the background (servers), a number fails after that many
    seconds (clients; a cluster may still be starting);
``fail_fast``
    with ``connect_timeout``: fail at once when every ``connect`` endpoint
    refuses a TCP connection (:mod:`essa.transport.probe`): a command a
    person waits for, where nothing is about to listen;
``max_message_bytes``
    the largest message this process reads (``None``: no limit). A larger
    one is not decoded: a receiver gets only its leading ``id`` and
    ``reply_to`` fields (call requests put them first) and ``oversized`` (its
    size), so it can refuse the call; without those it is dropped with a
    one-line warning. Undecodable messages are dropped with a warning too.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import threading
import time
import weakref
from typing import Any, Callable, Mapping, TypeVar

import msgpack

from essa.errors import EssaError
from essa.security.tls import apply as apply_tls
from essa.security.tls import diagnose, secure_endpoints, warn_if_exposed
from essa.transport.base import Message, Subscription, Transport
from essa.transport.probe import refused
from essa.util.ratelimit import RateLimitedLog, describe, guarded

log = logging.getLogger("essa.transport.zenoh")

DEFAULT_ENDPOINT = "tcp/127.0.0.1:7447"


class TransportError(EssaError):
    """The transport could not be set up (bad endpoint, nothing listening, ...)."""


def _pack(message: Message) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def _unpack(data: bytes) -> Message:
    return msgpack.unpackb(data, raw=False)


def _pack_answer(topic: str, answer: Message) -> bytes:
    """``answer`` packed; if it cannot be, an ``{"ok": False, "error": ...}`` answer naming why.

    The asker then learns what went wrong at once, instead of waiting for
    an answer that never comes (and blaming the servers for silence).
    """
    try:
        return _pack(answer)
    except Exception as exc:
        _problems.warning(f"unencodable answer {topic}", "could not send the answer to a query on %s: %s",
                          topic, describe(exc))
        return _pack({"ok": False, "kind": "store",
                      "error": f"the answer to this request could not be sent: {describe(exc)}"})


def _header(data: bytes) -> Message | None:
    """The leading ``id`` and ``reply_to`` of a packed message, read without decoding the rest."""
    try:
        unpacker = msgpack.Unpacker(io.BytesIO(data), raw=False, read_size=4096, max_buffer_size=1 << 16)
        header: Message = {}
        for _ in range(min(2, unpacker.read_map_header())):
            key = unpacker.unpack()
            if key not in ("id", "reply_to"):
                break
            header[key] = unpacker.unpack()
    except Exception:
        return None
    return header if len(header) == 2 and all(isinstance(v, str) for v in header.values()) else None


_problems = RateLimitedLog(log)


def _guarded(what: str, fn: Callable[..., None]) -> Callable[..., None]:
    return guarded(_problems, what, fn)


_T = TypeVar("_T")


def _declared_by_a_daemon(declare: Callable[[], _T]) -> _T:
    """What ``declare()`` returns, run on a daemon thread.

    zenoh-python runs each Python callback on a thread of its own that takes
    the daemon flag of the thread that declared it. Declared from a script's
    main thread, those threads keep the interpreter from ever exiting when the
    script forgets ``close()``; declared here they do not, and
    :func:`_close_open_sessions` closes the session at exit instead.
    """
    if threading.current_thread().daemon:
        return declare()
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, declare()))
        except BaseException as exc:  # handed to the caller below
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="essa-zenoh-declare", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


#: Sessions not closed yet: closed at interpreter exit, after the last non-daemon thread ended.
_open_sessions: "weakref.WeakSet[ZenohTransport]" = weakref.WeakSet()


@atexit.register
def _close_open_sessions() -> None:
    for transport in list(_open_sessions):
        transport.close()


def _wait_for_callback_threads(timeout: float = 5.0) -> None:
    """Wait (up to ``timeout`` seconds) for zenoh-python's callback threads to end once no session is open.

    They are Python threads running Rust code, which ends them once their
    subscriber or queryable is undeclared. One still alive when the
    interpreter finalizes is stopped by ``pthread_exit`` unwinding through
    Rust frames, which aborts the whole process ("FATAL: exception not
    rethrown", exit status -6) after it did its work.
    """
    deadline = time.monotonic() + timeout
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and thread.daemon and _CALLBACK_THREAD in thread.name:
            thread.join(max(0.0, deadline - time.monotonic()))


#: What names a zenoh-python callback thread (``Thread-7 (pyo3-closure)``: named after its target).
_CALLBACK_THREAD = "(pyo3-closure)"


class _Undo:
    __slots__ = ("_close",)

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close

    def close(self) -> None:
        try:
            self._close()
        except Exception:  # closing after the session closed
            pass


#: A declared publisher unused for this many seconds is undeclared when a later one is
#: declared: the output topic of a run that ended, the inbox of a caller that left (each
#: declared publisher holds ~4 KB in zenoh, so keeping them grew a long-lived executor).
PUBLISHER_IDLE = 60.0
#: Most publishers kept declared; past it a sweep undeclares them all.
PUBLISHER_LIMIT = 1024
#: Seconds a swept publisher stays declared before it is undeclared: a put made with it just
#: before the sweep may still wait in zenoh's data queue, and the undeclaration, which zenoh
#: sends as control, may overtake it; a receiver that learns the undeclaration first likely drops
#: the put (with sweeps at every declaration, under load: up to 178 of 1,201 messages lost).
PUBLISHER_GRACE = 5.0


class _PatientSender:
    """Holds messages for subscribers a session does not know yet, and sends them once it does.

    In peer mode a peer that just joined (a client that started a call a
    moment ago) is reachable only once its subscriptions reached this process;
    a put before that is dropped. Held messages are sent in order per topic as
    soon as a subscriber matches, or dropped with one line after
    :attr:`patience` seconds (the receiver went away). One thread, started on
    first use; at most :attr:`most` messages held.
    """

    patience = 30.0
    most = 10_000

    def __init__(self, transport: "ZenohTransport") -> None:
        self._transport = transport
        self._held: dict[str, list[tuple[float, bytes]]] = {}
        self._count = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def holds(self, topic: str) -> bool:
        """Whether messages for ``topic`` are held (a new one must wait behind them)."""
        return topic in self._held

    def hold(self, topic: str, payload: bytes) -> None:
        with self._cond:
            if self._closed:
                return
            if self._count >= self.most:
                _problems.warning("patience", "dropped a message for %s: %d messages already wait for their "
                                  "receivers", topic, self._count)
                return
            self._held.setdefault(topic, []).append((time.monotonic() + self.patience, payload))
            self._count += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="essa-zenoh-patient", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._held and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                held = dict(self._held)
            for topic, messages in held.items():
                try:
                    self._try(topic, messages)
                except Exception as exc:  # the loop must outlive any one failure
                    _problems.warning("patience", "cannot send a held message to %s: %s", topic, describe(exc))
                    self._forget(topic, len(messages))
            with self._cond:
                if self._held and not self._closed:
                    self._cond.wait(0.02)

    def _try(self, topic: str, messages: list[tuple[float, bytes]]) -> None:
        if not messages:  # discarded meanwhile
            return
        publisher = self._transport._publisher(topic)
        now = time.monotonic()
        if publisher.matching_status.matching:
            for _deadline, payload in messages:
                publisher.put(payload)
            self._forget(topic, len(messages))
        elif messages and messages[0][0] <= now:  # (``messages`` empties if they are discarded meanwhile)
            expired = sum(1 for deadline, _payload in messages if deadline <= now)
            _problems.warning("patience", "dropped %d messages for %s: no receiver appeared within %g s",
                              expired, topic, self.patience)
            self._forget(topic, expired)

    def _forget(self, topic: str, count: int) -> None:
        with self._cond:
            messages = self._held.get(topic, [])
            count = min(count, len(messages))  # fewer if discarded meanwhile
            del messages[:count]
            self._count -= count
            if not messages:
                self._held.pop(topic, None)

    def discard(self, topic: str) -> int:
        """Drop the messages held for ``topic``; return how many there were."""
        with self._cond:
            messages = self._held.pop(topic, [])
            count = len(messages)
            messages.clear()  # the sending thread may hold this very list: it sends none of them now
            self._count -= count
        return count

    def close(self, timeout: float = 2.0) -> None:
        """Stop sending; wait up to ``timeout`` s for a send in progress (its publisher is about to go)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class ZenohTransport(Transport):
    """A zenoh peer session."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        import zenoh

        self._zenoh = zenoh
        self.listen = list(self.options.get("listen") or [])
        self.connect = list(self.options.get("connect") or [])
        self.tls = self.options.get("tls")
        if self.tls is not None:
            self.listen, self.connect = secure_endpoints(self.listen), secure_endpoints(self.connect)
        else:
            warn_if_exposed(self.listen)
        config = self._config()
        self._fail_if_refused()
        try:
            self._session = zenoh.open(config)
        except zenoh.ZError as exc:
            where = ", ".join(self.connect or self.listen) or "the configured endpoints"
            reason = str(exc).split(" at ", 1)[0]
            if "Unable to connect" in reason:
                # A handshake answers in milliseconds: 2 s is plenty, and keeps a silent endpoint's wait
                # close to the connect timeout (zenoh waited that long already).
                why = diagnose(self.connect[0], self.tls, 2.0) if self.connect else None
                if why is not None:
                    raise TransportError(f"cannot connect to {where}: {why}") from None
                raise TransportError(f"cannot reach {where}: nothing answers there (is `essa scheduler` running?)") from None
            raise TransportError(f"cannot open a zenoh session on {where}: {reason}") from None
        self._publishers: dict[str, Any] = {}
        #: Topics whose publisher's matching listener last said a subscriber matches (see :meth:`_send`).
        self._matched: set[str] = set()
        self._listeners: dict[str, Any] = {}
        self._used: dict[str, float] = {}  # topic -> when its publisher was last used (monotonic)
        #: Swept publishers, undeclared once :data:`PUBLISHER_GRACE` has passed: (since when, publisher)
        self._retired: list[tuple[float, Any]] = []
        self._swept = time.monotonic()
        self._lock = threading.Lock()
        self._patient = _PatientSender(self)
        self.max_message_bytes: int | None = self.options.get("max_message_bytes")
        _open_sessions.add(self)

    def _fail_if_refused(self) -> None:
        """With ``fail_fast``, fail at once if every ``connect`` endpoint refuses (not with a config file)."""
        timeout = self.options.get("connect_timeout")
        if not self.options.get("fail_fast") or timeout is None or not self.connect or self.options.get("config"):
            return
        if all(refused(endpoint, min(1.0, timeout)) for endpoint in self.connect):
            raise TransportError(f"cannot reach {', '.join(self.connect)}: nothing listens there (connection "
                                 "refused; is `essa scheduler` or `essa up` running?)")

    def _config(self):
        zenoh = self._zenoh
        path = self.options.get("config")
        try:
            config = zenoh.Config.from_file(path) if path else zenoh.Config()
            config.insert_json5("mode", '"peer"')
            config.insert_json5("transport/shared_memory/enabled", "false")
            config.insert_json5("scouting/multicast/enabled", json.dumps(bool(self.options.get("scouting"))))
            if self.listen or not path:
                config.insert_json5("listen/endpoints", json.dumps(self.listen))
            if self.connect:
                config.insert_json5("connect/endpoints", json.dumps(self.connect))
                timeout = self.options.get("connect_timeout")
                if timeout is not None:
                    config.insert_json5("connect/timeout_ms", str(int(timeout * 1000)))
                    config.insert_json5("connect/exit_on_failure", "true")
            if self.tls is not None:
                apply_tls(config, self.tls, self.options.get("access", ()))
        except zenoh.ZError as exc:
            raise TransportError(f"invalid zenoh configuration: {exc}") from None
        except OSError as exc:
            raise TransportError(f"cannot read zenoh config {path}: {exc.strerror}") from None
        return config

    # -- publish/subscribe -----------------------------------------------------------

    def publish(self, topic: str, message: Message, patient: bool = False) -> None:
        payload = _pack(message)
        publisher = self._publisher(topic)
        try:
            self._send(topic, publisher, payload, patient)
        except (self._zenoh.ZError, RuntimeError):  # RuntimeError: zenoh's "Already borrowed"
            if self._publishers.get(topic) is publisher:
                raise
            self._send(topic, self._publisher(topic), payload, patient)  # swept as idle just now

    def _send(self, topic: str, publisher, payload: bytes, patient: bool) -> None:
        # A matching listener's word saves asking zenoh on every patient put (a GIL round trip
        # each: a scheduler forwards every call this way); without it, ask.
        if patient and (self._patient.holds(topic) or not (
                topic in self._matched or publisher.matching_status.matching)):
            self._patient.hold(topic, payload)  # after any held before it: order is kept
            return
        publisher.put(payload)

    def _publisher(self, topic: str):
        now = time.monotonic()
        publisher = self._publishers.get(topic)
        if publisher is None:
            with self._lock:
                publisher = self._publishers.get(topic)
                if publisher is None:
                    if now - self._swept > PUBLISHER_IDLE / 4 or len(self._publishers) >= PUBLISHER_LIMIT:
                        self._sweep_publishers(now)
                    publisher = self._session.declare_publisher(
                        topic, congestion_control=self._zenoh.CongestionControl.BLOCK
                    )
                    self._used[topic] = now  # before another thread's sweep can see it
                    self._publishers[topic] = publisher
                    self._listen_for_matches(topic, publisher)
        self._used[topic] = now
        return publisher

    def _listen_for_matches(self, topic: str, publisher) -> None:  # lock held
        def changed(status) -> None:
            if self._publishers.get(topic) is not publisher:
                return  # undeclared meanwhile
            if status.matching:
                self._matched.add(topic)
            else:
                self._matched.discard(topic)

        try:
            self._listeners[topic] = _declared_by_a_daemon(lambda: publisher.declare_matching_listener(changed))
        except (self._zenoh.ZError, AttributeError):  # pragma: no cover - _send asks zenoh instead
            pass

    def _forget_matches(self, topic: str) -> None:  # lock held
        self._matched.discard(topic)
        listener = self._listeners.pop(topic, None)
        if listener is not None:
            try:
                listener.undeclare()
            except (self._zenoh.ZError, RuntimeError):  # pragma: no cover - the session is closing
                pass

    def _sweep_publishers(self, now: float) -> None:  # lock held
        """Undeclare publishers idle for :data:`PUBLISHER_IDLE` (all of them if that leaves too many)."""
        used = self._used
        idle = [topic for topic in self._publishers if now - used.get(topic, 0.0) > PUBLISHER_IDLE]
        if len(self._publishers) - len(idle) >= PUBLISHER_LIMIT:
            idle = list(self._publishers)
        for topic in idle:
            self._undeclare(topic)
        for topic in list(used):  # list(): other threads note uses without the lock
            if topic not in self._publishers:
                used.pop(topic, None)
        self._undeclare_retired(now)
        self._swept = now

    def _undeclare_retired(self, now: float) -> None:  # lock held
        """Undeclare the swept publishers whose grace has passed (one in use stays for the next sweep)."""
        kept = []
        for since, publisher in self._retired:
            if now - since < PUBLISHER_GRACE:
                kept.append((since, publisher))
                continue
            try:
                publisher.undeclare()
            except RuntimeError:  # "Already borrowed": a put with it right now
                kept.append((since, publisher))
            except self._zenoh.ZError:  # pragma: no cover - the session is closing
                pass
        self._retired = kept

    def _undeclare(self, topic: str) -> None:  # lock held
        """Stop using the publisher of ``topic``; it is undeclared after :data:`PUBLISHER_GRACE` seconds.

        A thread that took it a moment ago still puts with it: that put is delivered.
        """
        self._retired.append((time.monotonic(), self._publishers.pop(topic)))
        self._used.pop(topic, None)
        self._forget_matches(topic)

    def forget(self, topic: str) -> None:
        dropped = self._patient.discard(topic)
        if dropped:
            log.info("dropped %d messages held for %s", dropped, topic)
        with self._lock:
            if topic in self._publishers:
                self._undeclare(topic)  # a put with it right now still goes out

    def _drop_publishers(self) -> None:  # lock held
        for publisher in [*self._publishers.values(), *(p for _, p in self._retired)]:
            try:
                publisher.undeclare()
            except (self._zenoh.ZError, RuntimeError):  # in use ("Already borrowed"): the session's close ends it
                pass
        for topic in list(self._listeners):
            self._forget_matches(topic)
        self._publishers.clear()
        self._retired.clear()
        self._used.clear()

    def subscribe(self, topic: str, callback: Callable[[Message], None]) -> Subscription:
        def deliver(sample) -> None:
            message = self._decode(topic, sample.payload.to_bytes())
            if message is not None:
                callback(message)

        on_sample = _guarded(f"subscriber of {topic}", deliver)
        subscriber = _declared_by_a_daemon(lambda: self._session.declare_subscriber(topic, on_sample))
        return _Undo(subscriber.undeclare)

    def _decode(self, topic: str, data: bytes) -> Message | None:
        """The message in ``data``, the header of an oversized one, or ``None`` (with a warning)."""
        cap = self.max_message_bytes
        if cap is not None and len(data) > cap:
            header = _header(data)
            if header is None:
                _problems.warning(f"oversized {topic}", "dropped a message of %d bytes on %s: larger than %d bytes",
                                  len(data), topic, cap)
                return None
            return {**header, "oversized": len(data)}
        try:
            message = _unpack(data)
        except Exception as exc:
            _problems.warning(f"undecodable {topic}", "dropped an undecodable message of %d bytes on %s: %s",
                              len(data), topic, str(exc) or type(exc).__name__)
            return None
        if not isinstance(message, dict):
            _problems.warning(f"not a map {topic}", "dropped a message on %s: not a map", topic)
            return None
        return message

    # -- queries ---------------------------------------------------------------------

    def serve(self, topic: str, handler: Callable[[Message], Message], shared: bool = False) -> Subscription:
        def answer(query) -> None:
            payload = query.payload
            request = self._decode(topic, payload.to_bytes()) if payload is not None else {}
            if request is not None:
                query.reply(query.key_expr, _pack_answer(topic, handler(request)))

        on_query = _guarded(f"queryable {topic}", answer)
        # A shared topic's servers are zenoh "complete" queryables: a BEST_MATCHING query reaches exactly
        # one of them (without, it reaches every queryable of a peer it has a link to).
        queryable = _declared_by_a_daemon(lambda: self._session.declare_queryable(topic, on_query, complete=shared))
        return _Undo(queryable.undeclare)

    def query(self, selector: str, message: Message, timeout: float = 2.0, one: bool = False) -> list[Message]:
        answers = []
        target = self._zenoh.QueryTarget
        replies = self._session.get(
            selector,
            payload=_pack(message),
            timeout=timeout,
            target=target.BEST_MATCHING if one else target.ALL,
            consolidation=self._zenoh.ConsolidationMode.NONE,
        )
        for reply in replies:
            if reply.ok is not None:
                answer = self._decode(selector, reply.ok.payload.to_bytes())
                if answer is not None:
                    answers.append(answer)
                    if one:
                        break
        return answers

    # -- liveliness ------------------------------------------------------------------

    def declare_token(self, key: str) -> Subscription:
        token = self._session.liveliness().declare_token(key)
        return _Undo(token.undeclare)

    def watch_tokens(self, prefix: str, callback: Callable[[str, bool], None]) -> Subscription:
        put = self._zenoh.SampleKind.PUT

        def changed(sample) -> None:
            callback(str(sample.key_expr), sample.kind == put)

        on_change = _guarded(f"liveliness of {prefix}", changed)
        subscriber = _declared_by_a_daemon(lambda: self._session.liveliness().declare_subscriber(
            prefix.rstrip("/") + "/**", on_change, history=True
        ))
        return _Undo(subscriber.undeclare)

    def describe(self) -> str:
        parts = []
        if self.listen:
            parts.append("listening on " + ", ".join(self.listen))
        if self.connect:
            parts.append("connected to " + ", ".join(self.connect))
        if self.tls is not None:
            parts.append(f"mutual TLS as {self.tls.role}")
        return "zenoh peer " + ("; ".join(parts) or "(default endpoints)")

    def close(self) -> None:
        _open_sessions.discard(self)
        self._patient.close()
        with self._lock:
            self._drop_publishers()
        try:
            self._session.close()
        except Exception:
            pass
        if not _open_sessions:
            _wait_for_callback_threads()
