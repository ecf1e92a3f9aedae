"""Who may do what on a secure cluster's zenoh network, by certificate role.

Every process of a secure cluster runs zenoh's access control with the same
rules: a peer's role is the common name of its certificate (see
:mod:`essa.security.certs`), and a peer may only send what its role sends and
is only sent what its role receives. Anything else, and anything from a
peer whose role is unknown, is dropped by zenoh before essa sees it
(``default_permission: deny``, on ingress and egress).

Each role has a :class:`Profile`: the key expressions it publishes on,
subscribes to, serves (queryables), queries, announces liveliness tokens on,
and watches. The zenoh rules follow from the profiles:

=================================  =============================================
a peer of role R may send us ...   we may send a peer of role R ...
=================================  =============================================
put on R.put                       put on R.subscribe
declare_subscriber on R.subscribe  declare_subscriber on R.put
declare_queryable, reply on R.serve   declare_queryable, reply on R.query
query on R.query                   query on R.serve
liveliness_token on R.token        liveliness_token on R.watch
liveliness subscriber/query on R.watch   liveliness subscriber/query on any watch
=================================  =============================================

So a client cannot announce an executor or store node (no ``token``), cannot
receive placed calls or another client's requests (it subscribes to none of
those topics), and cannot answer control requests in an executor's place
(it serves nothing). zenoh matches a rule when the rule's key expression
*includes* the message's, so wildcard subscriptions within an allowed key
space pass: a client may watch every inbox (``essa/inbox/*``), which is why
requests, and so tokens, never travel on a topic a client may subscribe to.

Plugins add the key spaces of their own processes with the
:func:`essa.hookspecs.essa_register_access` hook (the anna store: ``kvs``
and ``routing`` nodes, and the executors and admins that use them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterable

from essa.security.certs import ROLES


@dataclass
class Profile:
    """The key expressions one role uses (zenoh key expressions, wildcards allowed)."""

    put: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    serve: list[str] = field(default_factory=list)
    query: list[str] = field(default_factory=list)
    token: list[str] = field(default_factory=list)
    watch: list[str] = field(default_factory=list)

    def add(self, **keys: Iterable[str]) -> None:
        for name, exprs in keys.items():
            current = getattr(self, name)
            current.extend(e for e in exprs if e not in current)


_CLIENT = dict(
    put=["essa/scheduler/*/calls", "essa/scheduler/*/received", "essa/cancel", "essa/run/*/stdin"],
    subscribe=["essa/inbox/**", "essa/run/*/output", "essa/run/*/trace", "essa/run/*/stdin/want"],
    query=["essa/control/**", "essa/status/**", "essa/tracking/**", "essa/logs/**"],
    watch=["essa/live/**"],
)

#: What essa's own processes use (see :mod:`essa.cluster.topics`).
CORE_PROFILES: dict[str, dict[str, list[str]]] = {
    "scheduler": dict(
        put=["essa/executor/*/calls", "essa/executor/*/stages", "essa/inbox/**"],
        subscribe=["essa/scheduler/*/calls", "essa/scheduler/*/done", "essa/scheduler/*/received", "essa/cancel"],
        serve=["essa/tracking/**", "essa/status/**"],
        query=["essa/find/**"],
        token=["essa/live/scheduler/*"],
        watch=["essa/live/**"],
    ),
    "executor": dict(
        put=["essa/scheduler/*/calls", "essa/scheduler/*/done", "essa/scheduler/*/received", "essa/inbox/**",
             "essa/run/*/output", "essa/run/*/trace", "essa/run/*/stdin/want", "essa/executor/*/stages"],
        subscribe=["essa/executor/*/calls", "essa/executor/*/stages", "essa/cancel", "essa/inbox/**",
                   "essa/run/*/stdin"],
        serve=["essa/control/**", "essa/status/**", "essa/logs/**", "essa/find/*", "essa/snapshot/*"],
        query=["essa/tracking/**", "essa/snapshot/*"],
        token=["essa/live/executor/*"],
        watch=["essa/live/**"],
    ),
    "client": _CLIENT,
    "admin": _CLIENT,
}


def profiles(extra: Iterable[tuple[str, dict[str, list[str]]]] = ()) -> dict[str, Profile]:
    """Every role's profile: the core's, plus ``extra`` ``(role, keys)`` pairs (from plugins)."""
    result = {role: Profile() for role in ROLES}
    for role, keys in CORE_PROFILES.items():
        result[role].add(**keys)
    for role, keys in extra:
        result[role].add(**keys)
    return result


def grant(role: str, **keys: Iterable[str]) -> tuple[str, dict[str, list[str]]]:
    """One ``(role, keys)`` pair of extra access, checked (what a plugin's ``allow`` call asks for).

    :raises ValueError: an unknown role or kind of access.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    unknown = set(keys) - {f.name for f in fields(Profile)}
    if unknown:
        raise ValueError(f"unknown kinds of access {sorted(unknown)}")
    return role, {k: list(v) for k, v in keys.items()}


def access_control(role_profiles: dict[str, Profile]) -> dict:
    """The zenoh ``access_control`` configuration for ``role_profiles``."""
    every_watch = sorted({k for p in role_profiles.values() for k in p.watch})
    rules, subjects, policies = [], [], []
    for role, p in role_profiles.items():
        ingress = {
            "put": p.put, "declare_subscriber": p.subscribe, "declare_queryable": p.serve, "reply": p.serve,
            "query": p.query, "liveliness_token": p.token,
            "declare_liveliness_subscriber": p.watch, "liveliness_query": p.watch,
        }
        egress = {
            "put": p.subscribe, "declare_subscriber": p.put, "declare_queryable": p.query, "reply": p.query,
            "query": p.serve, "liveliness_token": p.watch,
            "declare_liveliness_subscriber": every_watch, "liveliness_query": every_watch,
        }
        ids = []
        for flow, table in (("ingress", ingress), ("egress", egress)):
            for message, keys in table.items():
                if keys:
                    rule_id = f"{role} {flow} {message}"
                    rules.append({"id": rule_id, "permission": "allow", "flows": [flow], "messages": [message],
                                  "key_exprs": sorted(keys)})
                    ids.append(rule_id)
        subjects.append({"id": role, "cert_common_names": [role]})
        if ids:
            policies.append({"id": role, "rules": ids, "subjects": [role]})
    return {"enabled": True, "default_permission": "deny", "rules": rules, "subjects": subjects,
            "policies": policies}


__all__ = ["CORE_PROFILES", "Profile", "access_control", "grant", "profiles"]
