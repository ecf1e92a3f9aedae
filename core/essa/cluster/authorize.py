"""What a token lets its holder do, checked before any work.

A cluster started with a token key (``--token-key``, as ``essa up --secure``
does) checks the token carried in every call request (by the scheduler and
again by the executor) and every control request (by the executor serving
it). A token (see :mod:`essa.security.tokens`) grants:

- **deployments** (patterns): calling their functions, looking them up
  (``essa ls`` lists only these), reading their state and their calls'
  logs (``essa logs``), and, unless
  read-only, deploying new versions, removing them and writing their state.
  A call under a deployment grant runs in the deployment's namespace, and the
  executor checks that its module is one of the deployment's versions: a
  deployment token cannot run other code.
- **namespaces** (patterns): reading and, unless read-only, writing the
  state of those namespaces, and running any module in them (``essa run
  --namespace NS``; a run with a fresh namespace needs ``*``).

A read-only token's calls run, but every state write of their guests is
refused (the guest's ``essa_put_lattice`` fails and the run's console says
why). A guest's remote calls carry the token of the call that made them, in
the same namespace and module, so they can do no more than it could.

Refusals are one line for the client, starting ``the cluster refused this
client:``, and one rate-limited line in the refusing process's log.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from essa.cluster.deployments import check_name, parse_spec
from essa.errors import EssaError
from essa.security.tokens import Grant, TokenRefused, Verifier

REFUSED = "the cluster refused this client"


class Refused(EssaError):
    """A request its token does not allow; the message is the one line for the client.

    :ivar reason: the message without its ``the cluster refused this client:`` prefix (for logs).
    """

    kind = "refused"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{REFUSED}: {reason}")
        self.reason = reason


#: Control operations: the request field naming what they touch, whether it names a
#: deployment (else a namespace), and what a read-only token cannot do (``None``: it can).
CONTROL_OPS: dict[str, tuple[str, bool, str | None]] = {
    "deploy": ("name", True, "deploy"),
    "remove": ("name", True, "remove"),
    "rollback": ("name", True, "roll back"),
    "tag": ("spec", True, "tag"),
    "untag": ("name", True, "untag"),
    "drop": ("spec", True, "remove a version of"),
    "resolve": ("spec", True, None),
    "versions": ("name", True, None),
    "state-get": ("namespace", False, None),
    "state-keys": ("namespace", False, None),
    "state-merge": ("namespace", False, "write the state of"),
    "state-delete": ("namespace", False, "delete keys of"),
    "logs": ("deployment", True, None),  # log queries (essa.cluster.logbook), answered by every executor
}


class ModuleIndex:
    """The modules of each deployment's versions, read from the store and kept for a few seconds.

    A module not among the kept ones is looked up again at once, so a new
    deploy is callable at once; a removal takes effect within :attr:`ttl`.
    """

    ttl = 5.0

    def __init__(self, versions: Callable[[str], list]) -> None:
        self._versions = versions
        self._known: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def _read(self, name: str) -> frozenset[str]:
        modules = frozenset(d.module for d in self._versions(name))
        with self._lock:
            if len(self._known) > 4096:
                self._known.clear()
            self._known[name] = (time.monotonic() + self.ttl, modules)
        return modules

    def contains(self, name: str, module: str) -> bool:
        """Whether ``module`` is one of deployment ``name``'s versions."""
        known = self._known.get(name)
        if known is not None and known[0] > time.monotonic() and module in known[1]:
            return True
        return module in self._read(name)


class Authorizer:
    """Checks requests against their tokens.

    :param verifier: the cluster's token verifier (its public key).
    :param modules: where an executor looks up a deployment's modules
        (``None`` at the scheduler, which has no store).
    """

    def __init__(self, verifier: Verifier, modules: ModuleIndex | None = None) -> None:
        self.verifier = verifier
        self.modules = modules

    def _grant(self, token: object, what: str) -> Grant:
        try:
            return self.verifier.verify(token)
        except TokenRefused as exc:
            raise Refused(f"no valid token for {what}: {exc}") from None

    # -- calls -------------------------------------------------------------------------

    def check_call(self, request: dict) -> Grant:
        """The grant that allows call ``request`` (checked by :func:`essa.cluster.calls.check_request`), or :class:`Refused`.

        Cheap (a verified token is cached): the scheduler and the executor
        run it as a request arrives. An executor then also runs
        :meth:`check_module` before it loads the module.
        """
        namespace = request["namespace"]
        deployment = request.get("deployment")
        hint = ""
        if isinstance(deployment, str):
            what = f"deployment {deployment!r}"
        elif namespace == request["run"]:
            what, hint = "a run in a fresh namespace", "; that needs --namespace '*', or run it with --namespace NS"
        else:
            what = f"namespace {namespace!r}"
        grant = self._grant(request.get("token"), what)
        try:
            check_name(namespace, "namespace")
        except EssaError as exc:
            raise Refused(str(exc)) from None
        # A deployment's namespace is its name (essa.cluster.deployments.namespace_of).
        if grant.covers_namespace(namespace) or grant.covers_deployment(namespace):
            return grant
        raise Refused(f"no valid token for {what} (the token allows {_allowed(grant)}{hint})")

    def check_module(self, request: dict, grant: Grant) -> None:
        """Refuse a call that a deployment grant allows only for the deployment's own modules, with another module.

        May read the store (:class:`ModuleIndex`): run it where waiting is
        allowed, not on a transport's thread.
        """
        namespace = request["namespace"]
        if grant.covers_namespace(namespace) or self.modules is None:
            return
        if not self.modules.contains(namespace, request["module"]):
            raise Refused(f"the token allows deployment {namespace!r}, and module "
                          f"{request['module'][:12]} is none of its versions")

    def read_only(self, request: dict) -> bool:
        """Whether call ``request`` (already allowed) runs under a read-only token."""
        try:
            return self.verifier.verify(request.get("token")).read_only
        except TokenRefused:
            return True

    # -- control requests --------------------------------------------------------------

    def check_control(self, op: str, request: dict) -> Grant:
        """The grant that allows control request ``request`` (operation ``op``), or :class:`Refused`.

        ``list`` needs a valid token; its answer is then filtered with :meth:`visible`.
        """
        if op not in CONTROL_OPS:
            return self._grant(request.get("token"), "this cluster")
        field, names_deployment, write = CONTROL_OPS[op]
        value = request.get(field)
        if not isinstance(value, str):
            return self._grant(request.get("token"), "this cluster")  # the handler refuses the request itself
        try:
            if field == "spec":
                name = parse_spec(value)[0]
            else:
                name = check_name(value, "deployment name" if names_deployment else "namespace")
        except EssaError as exc:
            raise Refused(str(exc)) from None
        kind = "deployment" if names_deployment else "namespace"
        grant = self._grant(request.get("token"), f"{kind} {name!r}")
        covered = grant.covers_deployment(name) or (not names_deployment and grant.covers_namespace(name))
        if not covered:
            raise Refused(f"no valid token for {kind} {name!r} (the token allows {_allowed(grant)})")
        if write is not None and grant.read_only:
            raise Refused(f"the token is read-only: it cannot {write} {kind} {name!r}")
        return grant

    @staticmethod
    def visible(grant: Grant, deployments: list[dict]) -> list[dict]:
        """The deployments of a ``list`` answer that ``grant`` covers."""
        return [d for d in deployments if isinstance(d, dict) and grant.covers_deployment(str(d.get("name")))]


def _allowed(grant: Grant) -> str:
    parts = []
    if grant.deployments:
        parts.append("deployments " + ", ".join(grant.deployments[:5]) + (", ..." if len(grant.deployments) > 5 else ""))
    if grant.namespaces:
        parts.append("namespaces " + ", ".join(grant.namespaces[:5]) + (", ..." if len(grant.namespaces) > 5 else ""))
    return " and ".join(parts) or "nothing"


__all__ = ["Authorizer", "CONTROL_OPS", "ModuleIndex", "REFUSED", "Refused"]
