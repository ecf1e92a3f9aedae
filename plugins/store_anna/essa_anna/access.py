"""Who may use anna's topics on a secure essa cluster (see :mod:`essa.security.acl`).

KVS nodes serve their workers' inboxes and announce themselves; routing
nodes answer address requests; executors (whose store is anna) and admins
(``essa anna get``) are clients. Plain essa clients get nothing here: they
reach state only through the executors' control service, which checks
their tokens, never the KVS nodes themselves.
"""

from __future__ import annotations

from typing import Callable

from . import protocol as P

_WORKERS = f"{P.ROOT}/kvs/*/*"
_CLIENTS = f"{P.ROOT}/client/*"
_STATUS = f"{P.STATUS}/**"
_LIVE = f"{P.ROOT}/live/**"
#: Every process proves the tokens it watches by pinging their nodes (:mod:`essa_anna.membership`);
#: a node answers a wildcard ping on the query's own key expression, as it does a status query.
_PING = f"{P.PING}/**"


def grant(allow: Callable[..., None]) -> None:
    """Register anna's access rules with ``allow`` (the :func:`essa.hookspecs.essa_register_access` registrar)."""
    allow("kvs", put=[_WORKERS, _CLIENTS], subscribe=[_WORKERS], serve=[_STATUS, _PING],
          query=[_PING], token=[f"{P.LIVE_KVS}/**", f"{P.LIVE_LEAVING}/*"], watch=[_LIVE])
    allow("routing", put=[_CLIENTS], subscribe=[f"{P.ROOT}/routing/*"], serve=[_STATUS, _PING],
          query=[_PING], token=[f"{P.LIVE_ROUTING}/*"], watch=[_LIVE])
    for role in ("executor", "admin"):
        allow(role, put=[_WORKERS, f"{P.ROOT}/routing/*"], subscribe=[_CLIENTS], query=[_STATUS, _PING],
              watch=[_LIVE])
