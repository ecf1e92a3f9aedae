"""Everything a peer sends is checked here, once, where it arrives.

Routing nodes, KVS nodes and clients receive msgpack maps from anybody who
can reach their zenoh topics. Before a message goes any further it passes the
check of its kind below, which returns it in a known shape or raises
:class:`~essa_anna.errors.Malformed` with a one-line reason. So handlers
behind the boundary index fields without fear, and a reply is only ever
published to a valid anna inbox (never to a key expression zenoh refuses,
such as ``""``, ``a//b`` or ``$*``, and never outside ``anna/``).

A request whose envelope is bad (no usable ``reply``, ``ops`` not a list) is
dropped; in a good envelope, each operation is checked on its own, so one bad
operation is answered with an error and costs the others nothing.

Peer-supplied numbers are bounded: items per message (:data:`MAX_ITEMS`),
key length (:data:`MAX_KEY_CHARS`), worker indexes, the numbers in
liveliness tokens (:func:`essa_anna.protocol.parse_kvs_token`) and the tokens
a ping answer lists (:func:`ping_answer`); how many tokens peers can make a
process hold is bounded by :class:`essa_anna.membership.Limits`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from essa.plugin import RateLimitedLog

from . import protocol as P
from .errors import Malformed

log = logging.getLogger("essa.anna")

#: Most operations, keys or key-value pairs in one message (clients send at most
#: :data:`essa_anna.protocol.MAX_OPS_PER_MESSAGE` per message).
MAX_ITEMS = 16384
#: Longest key, in characters.
MAX_KEY_CHARS = 65536
#: Longest error text carried in an answer or acknowledgement.
MAX_TEXT = 4096
#: Most tokens a ping answer lists (a node holds its KVS or routing token and a leaving one),
#: and the longest token key.
MAX_PING_TOKENS = 4
MAX_TOKEN_CHARS = 512

_ID = r"[A-Za-z0-9_.\-]{1,64}"
_INBOX = re.compile(rf"^{P.ROOT}/(?:client/{_ID}|kvs/{_ID}/(\d{{1,6}}))$")

#: One line per kind of problem per 10 s in a process's log.
problems = RateLimitedLog(log)


#: The message kinds of the protocol (any other kind is reported as ``?``, so a peer
#: inventing kinds cannot make a line of each).
KINDS = frozenset({"req", "resp", "addr", "repl", "gossip", "ack", "fetch", "fetched", "upd"})


def report(where: str, kind: object, exc: BaseException) -> None:
    """One rate-limited warning line: ``where`` dropped a malformed message of ``kind``."""
    kind_text = kind if kind in KINDS else "?"
    problems.warning(f"{where} malformed {kind_text}", "anna: %s dropped a malformed %r message: %s",
                     where, kind_text, exc)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def reply_topic(value: object) -> str:
    """``value`` if it names an anna inbox (a client's or a worker's)."""
    if isinstance(value, str):
        m = _INBOX.match(value)
        if m and (m.group(1) is None or int(m.group(1)) < P.MAX_WORKERS):
            return value
    raise Malformed(f"reply topic {_short(value)} is not an anna inbox")


def key(value: object) -> str:
    if not isinstance(value, str):
        raise Malformed(f"key {_short(value)} is not text")
    if not value:
        raise Malformed("empty key")
    if len(value) > MAX_KEY_CHARS:
        raise Malformed(f"key of {len(value)} characters (at most {MAX_KEY_CHARS})")
    return value


def _list(value: object, what: str) -> list:
    if not isinstance(value, list):
        raise Malformed(f"{what} is not a list")
    if len(value) > MAX_ITEMS:
        raise Malformed(f"{what} has {len(value)} items (at most {MAX_ITEMS})")
    return value


def _int(value: object, what: str, low: int = 0, high: int = 2**63 - 1) -> int:
    if type(value) is not int or not low <= value <= high:
        raise Malformed(f"{what} {_short(value)} is not a whole number in {low}..{high}")
    return value


def _bytes(value: object, what: str) -> bytes:
    if type(value) is not bytes:
        raise Malformed(f"{what} is {type(value).__name__}, not bytes")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise Malformed(f"{what} is not text")
    return value[:MAX_TEXT]


def owner(value: object) -> tuple[str, int]:
    """A (node id, worker index) pair."""
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str):
        raise Malformed(f"owner {_short(value)} is not [node id, worker]")
    try:
        P.check_id(value[0])
    except ValueError as exc:
        raise Malformed(str(exc)) from None
    return value[0], _int(value[1], "worker index", 0, P.MAX_WORKERS - 1)


def _kv(value: object, what: str, values_may_be_none: bool = False) -> list:
    pairs = _list(value, what)
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2:
            raise Malformed(f"an entry of {what} is not [key, value]")
        key(pair[0])
        if not (values_may_be_none and pair[1] is None):
            _bytes(pair[1], f"the value of key {_short(pair[0])}")
    return pairs


# -- requests from clients -------------------------------------------------------------


def request_id(value: object) -> int | str:
    if (type(value) is int and -2**63 <= value < 2**64) or (isinstance(value, str) and len(value) <= 64):
        return value
    raise Malformed(f"request id {_short(value)} is neither a number nor a short text")


def operation(item: object) -> tuple[Any, str, str, bytes | None, str]:
    """One ``[rid, op, key, value, ack]`` of a request; raises :class:`Malformed` (with ``rid`` set when known)."""
    if not isinstance(item, list) or len(item) != 5:
        raise Malformed("an operation is not [id, op, key, value, ack]")
    rid, op, k, value, ack = item
    rid = request_id(rid)
    try:
        if op not in (P.GET, P.PUT, P.WATCH):
            raise Malformed(f"unknown operation {_short(op)}")
        key(k)
        if op == P.PUT:
            _bytes(value, "a put's value")
        if ack not in (P.ACK_ALL, P.ACK_OWNER):
            raise Malformed(f"unknown acknowledgement mode {_short(ack)}")
    except Malformed as exc:
        exc.rid = rid
        raise
    return rid, op, k, value, ack


def worker_message(message: dict) -> dict:
    """Check a message sent to a KVS worker's inbox; returns it with fields in known shapes.

    For a ``req``, ``ops`` keeps the good operations and ``bad`` lists
    ``(rid, reason)`` for the others that can be answered.
    """
    kind = message.get("t")
    if kind == "req":
        reply = reply_topic(message.get("reply"))
        ops, bad = [], []
        for item in _list(message.get("ops"), "ops"):
            try:
                ops.append(operation(item))
            except Malformed as exc:
                rid = getattr(exc, "rid", None)
                if rid is not None:
                    bad.append((rid, str(exc)))
                else:
                    report("a KVS worker", "req", exc)
        return {"t": "req", "reply": reply, "ops": ops, "bad": bad}
    if kind == "repl":
        return {"t": "repl", "id": _int(message.get("id"), "id"), "reply": reply_topic(message.get("reply")),
                "kv": _kv(message.get("kv"), "kv")}
    if kind == "gossip":
        return {"t": "gossip", "kv": _kv(message.get("kv"), "kv")}
    if kind == "ack":
        failed = _list(message.get("failed") or [], "failed")
        for entry in failed:
            if not isinstance(entry, list) or len(entry) != 2:
                raise Malformed("an entry of failed is not [key, error]")
            key(entry[0])
            entry[1] = _text(entry[1], "an error")
        return {"t": "ack", "id": _int(message.get("id"), "id"), "from": owner(message.get("from")),
                "failed": failed}
    if kind == "fetch":
        keys = _list(message.get("keys"), "keys")
        for k in keys:
            key(k)
        return {"t": "fetch", "id": _int(message.get("id"), "id"), "reply": reply_topic(message.get("reply")),
                "keys": keys}
    if kind == "fetched":
        return {"t": "fetched", "id": _int(message.get("id"), "id"), "from": owner(message.get("from")),
                "kv": _kv(message.get("kv"), "kv", values_may_be_none=True)}
    raise Malformed(f"unknown message kind {_short(kind)}")


def address_request(message: dict) -> tuple[str, list[str]]:
    """A routing node's ``addr`` request: (reply topic, keys)."""
    if message.get("t") != "addr":
        raise Malformed(f"unknown message kind {_short(message.get('t'))}")
    reply = reply_topic(message.get("reply"))
    keys = _list(message.get("keys"), "keys")
    for k in keys:
        key(k)
    return reply, keys


def ping_answer(message: dict) -> list[str]:
    """The liveliness token keys a node's ping answer lists (at most :data:`MAX_PING_TOKENS`)."""
    tokens = message.get("tokens")
    if not isinstance(tokens, list) or len(tokens) > MAX_PING_TOKENS:
        raise Malformed(f"tokens {_short(tokens)} is not a list of at most {MAX_PING_TOKENS} token keys")
    for token in tokens:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.startswith(f"{P.ROOT}/live/"):
            raise Malformed(f"token {_short(token)} is not an anna liveliness token")
    return tokens


# -- answers to clients ------------------------------------------------------------------


def client_message(message: dict) -> dict:
    """Check an answer arriving in a client's inbox."""
    kind = message.get("t")
    if kind == "resp":
        answers = _list(message.get("r"), "r")
        for answer in answers:
            if not isinstance(answer, list) or len(answer) != 3:
                raise Malformed("an answer is not [id, code, payload]")
            request_id(answer[0])
            _int(answer[1], "answer code", 0, 255)
        return message
    if kind == "addr":
        owners = _list(message.get("owners"), "owners")
        for entry in owners:
            if not isinstance(entry, list) or len(entry) != 2:
                raise Malformed("an entry of owners is not [key, owners]")
            key(entry[0])
            entry[1] = [owner(o) for o in _list(entry[1], "a key's owners")]
        from_ = message.get("from")
        return {"t": "addr", "owners": owners, "nodes": _int(message.get("nodes", 0), "nodes"),
                "from": from_ if isinstance(from_, str) else "?"}
    if kind == "fetched":
        return {"t": "fetched", "id": message.get("id"), "kv": _kv(message.get("kv"), "kv", values_may_be_none=True)}
    if kind == "upd":
        return {"t": "upd", "kv": _kv(message.get("kv"), "kv", values_may_be_none=True)}
    raise Malformed(f"unknown message kind {_short(kind)}")
