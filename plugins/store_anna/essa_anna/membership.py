"""Cluster membership from zenoh liveliness tokens.

KVS nodes, routing nodes and clients all watch the same tokens, so they learn
every node whatever the start order (a watch reports the tokens that exist
already), and they notice a node that dies without a word: zenoh drops the
tokens of a peer whose session ends, SIGKILL included.

A node restarted under the same id announces a new *incarnation*; the old
token's disappearance, which may be reported after the new one appears, then
does not remove it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from essa.plugin import Transport, describe, last_segment

from . import protocol
from .errors import Malformed
from .inbound import problems
from .ring import VIRTUAL_NODES, NodeInfo, Ring

log = logging.getLogger("essa.anna")


class Membership:
    """The live KVS nodes, leaving nodes and routing nodes, kept current.

    :param on_change: called as ``on_change(self)`` after every change, with
        the membership's lock held (so calls never overlap or reorder); it
        must return quickly.
    """

    def __init__(self, transport: Transport, on_change: Callable[["Membership"], None] | None = None,
                 vnodes: int = VIRTUAL_NODES) -> None:
        self.kvs: dict[str, NodeInfo] = {}
        self.leaving: set[str] = set()
        self.routing: set[str] = set()
        #: KVS nodes whose token disappeared (node id -> when), until they come back.
        self.departed: dict[str, float] = {}
        self.version = 0
        self.vnodes = vnodes
        self.lock = threading.RLock()
        self._on_change = on_change
        self._ring: Ring | None = None
        self._warned: set[tuple] = set()
        self._subs = [
            transport.watch_tokens(protocol.LIVE_KVS, self._kvs_changed),
            transport.watch_tokens(protocol.LIVE_LEAVING, self._leaving_changed),
            transport.watch_tokens(protocol.LIVE_ROUTING, self._routing_changed),
        ]

    # -- token callbacks ---------------------------------------------------------------

    def _kvs_changed(self, key: str, alive: bool) -> None:
        try:
            info = protocol.parse_kvs_token(key)
        except Malformed as exc:
            if alive:
                problems.warning("bad kvs token", "anna: ignoring a KVS liveliness token: %s", exc)
            return
        with self.lock:
            current = self.kvs.get(info.id)
            if alive:
                if current == info:
                    return
                if current is None and len(self.kvs) >= protocol.MAX_NODES:
                    problems.warning("too many kvs nodes", "anna: ignoring KVS node %s: the cluster already has "
                                     "%d nodes, the most essa supports", info.id, protocol.MAX_NODES)
                    return
                self.kvs[info.id] = info
                self.departed.pop(info.id, None)
                log.info("anna: KVS node %s joined (%d workers)", info.id, info.workers)
            else:
                if current is None or current.incarnation != info.incarnation:
                    return
                del self.kvs[info.id]
                self.departed[info.id] = time.monotonic()
                if len(self.departed) > 4 * protocol.MAX_NODES:  # forget the oldest
                    del self.departed[min(self.departed, key=self.departed.get)]
                log.info("anna: KVS node %s left", info.id)
            self._changed()

    def _leaving_changed(self, key: str, alive: bool) -> None:
        node = last_segment(key)
        if alive and (not protocol.valid_id(node) or len(self.leaving) >= protocol.MAX_NODES):
            problems.warning("bad leaving token", "anna: ignoring a leaving liveliness token %r", key[:120])
            return
        with self.lock:
            if alive == (node in self.leaving):
                return
            (self.leaving.add if alive else self.leaving.discard)(node)
            self._changed()

    def _routing_changed(self, key: str, alive: bool) -> None:
        rid = last_segment(key)
        if alive and (not protocol.valid_id(rid) or len(self.routing) >= protocol.MAX_NODES):
            problems.warning("bad routing token", "anna: ignoring a routing liveliness token %r", key[:120])
            return
        with self.lock:
            if alive == (rid in self.routing):
                return
            (self.routing.add if alive else self.routing.discard)(rid)
            self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._ring = None
        self._check_factors()
        if self._on_change is not None:
            try:
                self._on_change(self)
            except Exception as exc:  # pragma: no cover - a bug in a watcher must not kill zenoh's thread
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

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs = []
