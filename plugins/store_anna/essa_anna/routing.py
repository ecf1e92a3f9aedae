"""The routing node (``essa anna routing``): answers "which workers own these keys?".

It learns the KVS nodes from their liveliness tokens (whenever it starts),
keeps the ring, and answers batched key address requests from clients on
``anna/routing/<id>``. It holds no data; several routing nodes may run, and
clients use any of them.
"""

from __future__ import annotations

import logging
import time
import uuid

from essa.plugin import Transport

from . import inbound, metrics
from . import protocol as P
from .errors import Malformed
from .membership import Limits, Membership

log = logging.getLogger("essa.anna")


class RoutingNode:
    """A routing node; ``limits`` bound the ring other nodes' tokens may make (see
    :class:`~essa_anna.membership.Limits`)."""

    def __init__(self, transport: Transport, routing_id: str | None = None, limits: Limits | None = None) -> None:
        self.id = P.check_id(routing_id or uuid.uuid4().hex[:8], "routing node id")
        self.transport = transport
        self.limits = limits
        self.requests = 0
        self.keys_resolved = 0
        self.started = time.monotonic()
        self.membership: Membership | None = None
        self._subs: list = []
        self._token = None
        self._held: list[str] = []  # the liveliness tokens this node holds (or is declaring)

    def start(self) -> None:
        self.membership = Membership(self.transport, limits=self.limits)
        self._subs.append(self.transport.subscribe(P.routing_topic(self.id), self._on_message))
        self._subs.append(self.transport.serve(P.routing_status_topic(self.id), self.status))
        self._subs.append(self.transport.serve(P.ping_topic("routing", self.id), self.ping))
        self._held = [f"{P.LIVE_ROUTING}/{self.id}"]
        self._token = self.transport.declare_token(self._held[0])

    def ping(self, _query: dict | None = None) -> dict:
        """The liveliness token this node holds: what proves it to the others' memberships."""
        return {"tokens": list(self._held)}

    def _on_message(self, message: dict) -> None:
        try:
            reply, keys = inbound.address_request(message)
        except Malformed as exc:
            inbound.report(f"routing node {self.id}", message.get("t"), exc)
            return
        ring = self.membership.ring()
        self.requests += 1
        metrics.ADDRESS_REQUESTS.inc()
        self.keys_resolved += len(keys)
        owners = [[key, ring.owners(key)] for key in keys]
        self.transport.publish(reply, {"t": "addr", "owners": owners, "nodes": len(ring), "from": self.id})

    def status(self, _query: dict | None = None) -> dict:
        ring = self.membership.ring() if self.membership else None
        return {
            "role": "routing",
            "id": self.id,
            "kvs_nodes": dict(ring.nodes) if ring is not None else {},
            "global_replication": ring.global_replication if ring is not None else None,
            "local_replication": ring.local_replication if ring is not None else None,
            "leaving": sorted(self.membership.leaving) if self.membership else [],
            "routing_nodes": sorted(self.membership.routing) if self.membership else [],
            "unproven_tokens": self.membership.unproven() if self.membership else 0,
            "requests": self.requests,
            "keys_resolved": self.keys_resolved,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }

    def stop(self) -> None:
        self._held = []
        if self._token is not None:
            self._token.close()
            self._token = None
        for sub in self._subs:
            sub.close()
        self._subs = []
        if self.membership is not None:
            self.membership.close()
