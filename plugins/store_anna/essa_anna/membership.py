"""Cluster membership from zenoh liveliness tokens, each proven by its holder.

KVS nodes, routing nodes and clients all watch the same tokens, so they learn
every node whatever the start order (a watch reports the tokens that exist
already), and they notice a node that dies without a word: zenoh drops the
tokens of a peer whose session ends, SIGKILL included.

Anybody who can reach the cluster's zenoh can declare a token, so a token is
only a *claim* until its holder proves it: every node serves a ping queryable
(``anna/ping/kvs/<id>``, ``anna/ping/routing/<id>``) that answers with the
liveliness tokens the node holds right now. A claimed token enters the
membership once a ping answer lists it (a probe round asks every node with a
claim waiting, once; a claim that is not proven is asked again, backing off
to every :data:`PROBE_MAX_INTERVAL` seconds, for as long as its token exists).
So a peer that declares tokens of nodes that do not exist adds nothing to
any ring, and a token claiming to be a live node with another incarnation
never replaces it.

The disappearance of a member's token is checked the same way before the
member is removed: zenoh reports a token's key as gone when one of several
sessions declaring that very key withdraws it (the session that holds the
key itself is told so even though it still holds it), so a peer copying a
live node's token and withdrawing it would otherwise evict the node. The
member is removed once its node no longer lists the token (it died, or it
withdrew the token and stopped answering for it); while the node still
lists it, the member stays and is asked again every
:data:`PROBE_MAX_INTERVAL` seconds until its token is announced again or the
node stops listing it.

A restarted node announces a new *incarnation*: the new token, once proven,
replaces the old one; the old token's disappearance then changes nothing.

What a node may add is bounded (:class:`Limits`): KVS nodes in the ring, their
workers in total, and claims waiting for their proof. A token beyond a bound
is refused with one rate-limited warning line naming it. On a plain (non-TLS)
cluster a peer that answers pings for tokens it made up can still add nodes
up to these bounds; see the plugin's README.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

from essa.plugin import Transport, describe

from . import inbound, protocol
from .errors import AnnaError, Malformed
from .inbound import problems
from .ring import VIRTUAL_NODES, NodeInfo, Ring

log = logging.getLogger("essa.anna")

#: Seconds a probe round waits for ping answers.
PROBE_TIMEOUT = 3.0
#: The shortest time between two probe rounds (a peer churning tokens cannot make them spin).
PROBE_MIN_INTERVAL = 0.1
#: Unproven claims and doubted members are asked again after at most this long.
PROBE_MAX_INTERVAL = 5.0
#: A claim not proven for this long is reported (one rate-limited line).
UNPROVEN_WARNING = 10.0


@dataclass(frozen=True)
class Limits:
    """Bounds on what the tokens of peers can make a process hold.

    :param nodes: the most KVS nodes in a ring (and routing nodes known).
    :param workers: the most workers of all the KVS nodes of a ring together.

    Claims waiting for their proof are bounded by ``2 * nodes``. Every process
    of a cluster should use the same values: a node refused by some and not
    by others makes them disagree about owners.
    """

    nodes: int = protocol.MAX_NODES
    workers: int = protocol.MAX_RING_WORKERS

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= protocol.MAX_NODES_LIMIT:
            raise AnnaError(f"the most KVS nodes must be 1..{protocol.MAX_NODES_LIMIT}, not {self.nodes}")
        if not 1 <= self.workers <= protocol.MAX_NODES_LIMIT * protocol.MAX_WORKERS:
            raise AnnaError(f"the most KVS workers must be 1..{protocol.MAX_NODES_LIMIT * protocol.MAX_WORKERS}, "
                            f"not {self.workers}")

    @property
    def claims(self) -> int:
        return 2 * self.nodes

    @classmethod
    def from_environment(cls, environ=os.environ) -> "Limits":
        """The limits set by ``ESSA_ANNA_MAX_NODES`` and ``ESSA_ANNA_MAX_WORKERS`` (else the defaults)."""
        values = {}
        for field, name in (("nodes", "ESSA_ANNA_MAX_NODES"), ("workers", "ESSA_ANNA_MAX_WORKERS")):
            text = environ.get(name, "").strip()
            if text:
                if not text.isdigit():
                    raise AnnaError(f"{name}={text[:20]!r} is not a whole number")
                values[field] = int(text)
        return cls(**values)


class Claim(NamedTuple):
    """What one liveliness token claims: a KVS node (``info``), a leaving node or a routing node."""

    kind: str  # "kvs", "leaving" or "routing"
    id: str
    info: NodeInfo | None = None


def parse_token(key: str) -> Claim:
    """The claim of the liveliness token ``key``; raises :class:`Malformed`."""
    if key.startswith(protocol.LIVE_KVS + "/"):
        info = protocol.parse_kvs_token(key)
        return Claim("kvs", info.id, info)
    for kind, prefix in (("leaving", protocol.LIVE_LEAVING), ("routing", protocol.LIVE_ROUTING)):
        if key.startswith(prefix + "/"):
            node = key[len(prefix) + 1:]
            if not protocol.valid_id(node):
                raise Malformed(f"{kind} liveliness token {key[:120]!r}: invalid id")
            return Claim(kind, node)
    raise Malformed(f"liveliness token {key[:120]!r} is not an anna token")


class Membership:
    """The live KVS nodes, leaving nodes and routing nodes, kept current.

    :param on_change: called as ``on_change(self)`` after every change, with
        the membership's lock held (so calls never overlap or reorder); it
        must return quickly.
    :param limits: bounds on the nodes and workers tokens may add (default:
        :meth:`Limits.from_environment`).
    """

    def __init__(self, transport: Transport, on_change: Callable[["Membership"], None] | None = None,
                 vnodes: int = VIRTUAL_NODES, limits: Limits | None = None) -> None:
        self.kvs: dict[str, NodeInfo] = {}
        self.leaving: set[str] = set()
        self.routing: set[str] = set()
        #: KVS nodes whose token disappeared (node id -> when), until they come back.
        self.departed: dict[str, float] = {}
        self.version = 0
        self.vnodes = vnodes
        self.limits = limits or Limits.from_environment()
        self.lock = threading.RLock()
        self.transport = transport
        self._on_change = on_change
        self._ring: Ring | None = None
        self._warned: set[tuple] = set()
        #: token key -> (claim, when announced): announced, not proven yet (or refused by a limit)
        self._claims: dict[str, tuple[Claim, float]] = {}
        #: token key -> claim: proven, in the membership
        self._proven: dict[str, Claim] = {}
        #: proven token keys whose disappearance was reported: removed unless their node still lists
        #: them (-> when it was reported, whether their node listed them since)
        self._doubted: dict[str, tuple[float, bool]] = {}
        self._wake = threading.Condition(self.lock)
        self._interval = PROBE_MIN_INTERVAL
        self._last_round = 0.0
        self._next_round = 0.0
        self._closed = False
        self._prober = threading.Thread(target=self._probe_loop, name="anna-membership", daemon=True)
        self._prober.start()
        self._subs = [transport.watch_tokens(prefix, self._token_changed)
                      for prefix in (protocol.LIVE_KVS, protocol.LIVE_LEAVING, protocol.LIVE_ROUTING)]

    # -- token callbacks (zenoh's threads): note the claim, the prober checks it -------------------

    def _token_changed(self, key: str, alive: bool) -> None:
        try:
            claim = parse_token(key)
        except Malformed as exc:
            if alive:
                what = "KVS " if key.startswith(protocol.LIVE_KVS + "/") else ""
                problems.warning("bad token", "anna: ignoring a %sliveliness token: %s", what, exc)
            return
        with self.lock:
            if alive:
                self._announced(key, claim)
            elif key in self._proven:
                self._doubted[key] = (time.monotonic(), False)
                self._hurry()
            else:
                self._claims.pop(key, None)

    def _announced(self, key: str, claim: Claim) -> None:  # lock held
        if key in self._proven:
            self._doubted.pop(key, None)  # announced again
            return
        if key in self._claims:
            return
        if len(self._claims) >= self.limits.claims:
            problems.warning("too many claims", "anna: ignoring liveliness token %s: %d tokens already wait for "
                             "their node to answer (at most 2 x the most KVS nodes, %d)",
                             key, len(self._claims), self.limits.nodes)
            return
        self._claims[key] = (claim, time.monotonic())
        self._hurry()

    def _hurry(self) -> None:  # lock held
        """Probe soon: at most :data:`PROBE_MIN_INTERVAL` after the last round began."""
        self._interval = PROBE_MIN_INTERVAL
        self._next_round = min(self._next_round, self._last_round + PROBE_MIN_INTERVAL)
        self._wake.notify()

    # -- probe rounds (the prober thread) ----------------------------------------------------------

    def _probe_loop(self) -> None:
        while True:
            with self.lock:
                while not self._closed and not (self._claims or self._doubted):
                    self._wake.wait()
                if self._closed:
                    return
                wait = self._next_round - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                selector = self._selector()
                started = self._last_round = time.monotonic()
                self._next_round = started + self._interval
                self._interval = min(PROBE_MAX_INTERVAL, self._interval * 2)
            try:
                self._probe(selector, started)
            except Exception as exc:  # keep the prober alive whatever one round meets
                if not self._closed:
                    problems.warning("probe round", "anna: a membership probe round failed: %s", describe(exc),
                                     exc_info=exc)

    def _selector(self) -> str:  # lock held
        """One node's ping if every claim and doubt is about that node, else every node's."""
        asked = {self._ping_of(claim) for claim, _when in self._claims.values()}
        asked.update(self._ping_of(self._proven[key]) for key in self._doubted)
        return asked.pop() if len(asked) == 1 else protocol.PING + "/**"

    @staticmethod
    def _ping_of(claim: Claim) -> str:
        return protocol.ping_topic("routing" if claim.kind == "routing" else "kvs", claim.id)

    def _probe(self, selector: str, started: float) -> None:
        answers = self.transport.query(selector, {}, timeout=PROBE_TIMEOUT)
        held: set[str] = set()
        for answer in answers[:self.limits.claims + 2 * self.limits.nodes]:
            try:
                held.update(inbound.ping_answer(answer))
            except Malformed as exc:
                problems.warning("bad ping answer", "anna: ignoring a ping answer: %s", exc)
        with self.lock:
            if not self._closed:
                self._settle(held, started)

    def _settle(self, held: set[str], started: float) -> None:  # lock held
        """Admit the claims whose node listed their token; remove doubted members whose node did not
        (if it was asked after the doubt arose: an answer sent before says nothing about it)."""
        changed = False
        for key, (since, denied) in list(self._doubted.items()):
            if since > started:
                continue
            if key not in held:
                changed |= self._withdraw(key)
            elif not denied:
                self._doubted[key] = (since, True)
                problems.warning("withdrawal denied", "anna: liveliness token %s was reported withdrawn but its "
                                 "node still holds it (another session declared and withdrew the same token?); "
                                 "it stays in the membership", key)
        now = time.monotonic()
        for key, (claim, when) in list(self._claims.items()):
            if key in held:
                if self._admit(key, claim):
                    del self._claims[key]
                    changed = True
            elif now - when > UNPROVEN_WARNING:
                problems.warning("unproven token", "anna: liveliness token %s has been announced for %.0f s but "
                                 "its node does not answer for it; it stays out of the membership until it does",
                                 key, now - when)
        if changed:
            self._changed()

    # -- the membership itself ------------------------------------------------------------------

    def _admit(self, key: str, claim: Claim) -> bool:  # lock held
        """Make the proven ``claim`` a member; False if a limit refuses it (it stays a claim)."""
        if claim.kind == "kvs":
            current = self.kvs.get(claim.id)
            if not self._fits(key, claim.info, current):
                return False
            if current is not None:
                self._forget(protocol.kvs_token(current))
            self.kvs[claim.id] = claim.info
            self.departed.pop(claim.id, None)
            log.info("anna: KVS node %s joined (%d workers, incarnation %s)", claim.id, claim.info.workers,
                     claim.info.incarnation)
        else:
            members = self.leaving if claim.kind == "leaving" else self.routing
            if claim.id not in members and len(members) >= self.limits.nodes:
                problems.warning(f"too many {claim.kind}", "anna: refusing liveliness token %s: %d %s nodes "
                                 "already, the most allowed", key, len(members), claim.kind)
                return False
            members.add(claim.id)
        self._proven[key] = claim
        return True

    def _fits(self, key: str, info: NodeInfo, current: NodeInfo | None) -> bool:  # lock held
        """Whether the ring stays within the limits with ``info`` (replacing ``current``); warns if not."""
        limits = self.limits
        if current is None and len(self.kvs) >= limits.nodes:
            problems.warning("too many kvs nodes", "anna: refusing KVS node %s (token %s): the ring already has "
                             "%d nodes, the most allowed (--max-nodes, ESSA_ANNA_MAX_NODES)",
                             info.id, key, len(self.kvs))
            return False
        workers = sum(m.workers for m in self.kvs.values()) - (current.workers if current else 0) + info.workers
        if workers > limits.workers:
            problems.warning("too many kvs workers", "anna: refusing KVS node %s (token %s): its %d workers would "
                             "make %d in the ring, over the most allowed %d (--max-workers, ESSA_ANNA_MAX_WORKERS)",
                             info.id, key, info.workers, workers, limits.workers)
            return False
        return True

    def _withdraw(self, key: str) -> bool:  # lock held
        """Remove the member of the proven token ``key`` (its node no longer lists it)."""
        claim = self._forget(key)
        if claim is None:
            return False
        if claim.kind == "kvs":
            if self.kvs.get(claim.id) != claim.info:
                return False
            del self.kvs[claim.id]
            self.departed[claim.id] = time.monotonic()
            if len(self.departed) > 4 * self.limits.nodes:  # forget the oldest
                del self.departed[min(self.departed, key=self.departed.get)]
            log.info("anna: KVS node %s left", claim.id)
        else:
            (self.leaving if claim.kind == "leaving" else self.routing).discard(claim.id)
        return True

    def _forget(self, key: str) -> Claim | None:  # lock held
        self._doubted.pop(key, None)
        return self._proven.pop(key, None)

    def _changed(self) -> None:
        self.version += 1
        self._ring = None
        self._check_factors()
        if self._on_change is not None:
            try:
                self._on_change(self)
            except Exception as exc:  # pragma: no cover - a bug in a watcher must not kill the prober
                problems.warning("membership watcher", "anna: a membership watcher failed: %s", describe(exc),
                                 exc_info=exc)

    def _check_factors(self) -> None:
        factors = {(m.global_replication, m.local_replication) for m in self.kvs.values()}
        if len(factors) > 1 and tuple(sorted(factors)) not in self._warned:
            self._warned.add(tuple(sorted(factors)))
            log.warning("anna: KVS nodes announce different replication factors %s; using the largest. "
                        "Start every node with the same --global-replication/--local-replication.",
                        sorted(factors))

    # -- views ---------------------------------------------------------------------------

    def ring(self, exclude: str | None = None) -> Ring:
        """The ring of the live KVS nodes that are not leaving (and not ``exclude``)."""
        with self.lock:
            if exclude is None or exclude not in self.kvs:
                if self._ring is None:
                    self._ring = Ring.from_members(
                        (m for m in self.kvs.values() if m.id not in self.leaving), self.vnodes)
                return self._ring
            return Ring.from_members(
                (m for m in self.kvs.values() if m.id != exclude and m.id not in self.leaving), self.vnodes)

    def alive(self, node: str) -> bool:
        """Whether ``node`` can still answer: a member, or a node handing its keys off."""
        return node in self.kvs or node in self.leaving

    def unproven(self) -> int:
        """How many announced tokens wait for their node to answer for them."""
        return len(self._claims)

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs = []
        with self.lock:
            self._closed = True
            self._wake.notify_all()
        if self._prober is not threading.current_thread():
            self._prober.join(PROBE_TIMEOUT + 1)
