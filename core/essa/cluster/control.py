"""The control service: deployments and state, reachable from outside the executors.

Deploying a module, listing deployments and reading or writing a namespace's
state need the store and an engine, which executors have and clients of a
cluster do not. So every executor process (and the embedded runtime) serves
:class:`ControlService` on ``essa/control``, a topic every executor serves
as a shared one (:meth:`essa.transport.base.Transport.serve`), and clients
send it requests with :class:`ControlClient`: exactly one executor runs and
answers each (a deploy is compiled and recorded once). Embedded and
cluster mode take the same path (the in-process transport delivers a query
as a function call).

A request is ``{"op": OP, ...}``; the answer is ``{"ok": True, ...}`` or
``{"ok": False, "error": ONE_LINE, "kind": KIND}`` where KIND is
``not-found`` (a deployment, version, function or key), ``invalid`` (a bad
request, a key that is not UTF-8 text), ``module`` (a module that cannot be
used), ``type-mismatch`` (a merge of a value of another lattice type than the
stored one), ``store``, or
``refused`` (the request's token does not allow it, on a cluster that checks
tokens: see :mod:`essa.cluster.authorize`). Requests are checked field by
field; none can make the service raise.

A deploy compiles the module (so a bad module is refused at deploy time and
the artifact is ready for the first call) and records the new version with
the module's callable functions and their signatures: those of its
``essa.signatures`` section (:mod:`essa.wasm.signatures`), and those the
request declares (``signatures``: a list of the contract's objects, from an
``essa.toml``), which take the place of the section's for their functions.
A malformed section or declaration is refused in one line (kind
``signature``); so is a module with neither callable functions nor a
``_start``, which nothing could use. If the deployment's name means those
bytes with those signatures already, nothing is recorded (the answer says
``unchanged``). Rollbacks, tags and the removal of one version are records
too (:mod:`essa.cluster.deployments`).

State keys are the guests' keys (:mod:`essa.state.keys`): UTF-8 text, empty or up
to the message size limit in bytes. A listing answers ``keys`` (sorted) and
``unlisted``, the number of keys the store holds but could not name (records
of an older format), with ``why``: such keys are left out, never a reason to
fail the listing.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from essa.cluster import topics
from essa.cluster.authorize import Authorizer, Refused
from essa.cluster.dags import DagRegistry, check_dag, split_stage
from essa.cluster.deployments import (
    DEFAULT_CONSISTENCY,
    DEFAULT_RETRIES,
    DeploymentRegistry,
    check_consistency,
    check_name,
    check_retries,
    check_signatures,
    data_prefix,
    parse_spec,
    user_functions,
)
from essa.cluster.programs import ProgramCache, publish_module
from essa.cluster.versions import parse_ref
from essa.errors import (
    DecodeError,
    EssaError,
    InvalidKey,
    LatticeTypeError,
    ModuleError,
    NotFound,
    SignatureError,
    StoreError,
)
from essa.state.keys import encode_text, is_text
from essa.state.signatures import SECTION, Signature
from essa.transport.base import Message, Subscription, Transport
from essa.util.ratelimit import RateLimitedLog, describe
from essa.util.units import format_bytes
from essa.wasm.signatures import module_signatures

log = logging.getLogger("essa.cluster.control")
_problems = RateLimitedLog(log)

class ControlError(EssaError):
    """A control request was refused; ``kind`` says how (see the module documentation)."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


class ControlService:
    """Answers control requests with ``programs`` (an engine and its store).

    :param authorizer: if given, each request's ``token`` must allow it.
    """

    def __init__(self, programs: ProgramCache, max_message_bytes: int, authorizer: Authorizer | None = None) -> None:
        self.programs = programs
        self.authorizer = authorizer
        self.store = programs.store
        self.registry = DeploymentRegistry(programs.store)
        self.dags = DagRegistry(programs.store)
        self.max_message_bytes = max_message_bytes
        self._ops: dict[str, Callable[[Message], Message]] = {
            "deploy": self._deploy,
            "resolve": self._resolve,
            "list": self._list,
            "versions": self._versions,
            "remove": self._remove,
            "rollback": self._rollback,
            "tag": self._tag,
            "untag": self._untag,
            "drop": self._drop,
            "state-get": self._state_get,
            "state-merge": self._state_merge,
            "state-keys": self._state_keys,
            "state-delete": self._state_delete,
            "dag-create": self._dag_create,
            "dag-get": self._dag_get,
            "dag-list": self._dag_list,
            "dag-remove": self._dag_remove,
        }

    def serve(self, transport: Transport) -> Subscription:
        """Answer control requests arriving over ``transport`` until the subscription is closed."""
        return transport.serve(topics.CONTROL, self.handle, shared=True)

    def handle(self, request: Message) -> Message:
        """The answer to one request (never raises)."""
        op = request.get("op") if isinstance(request, dict) else None
        handler = self._ops.get(op) if isinstance(op, str) else None
        try:
            if handler is None:
                raise ControlError(f"unknown control request {str(op)[:40]!r}")
            if self.authorizer is None:
                return {"ok": True, **handler(request)}
            grant = self.authorizer.check_control(op, request)
            if op in ("dag-create", "dag-remove") and grant.read_only:
                raise Refused("the token is read-only: it cannot change DAGs")
            answer = handler(request)
            if op == "list":
                answer["deployments"] = self.authorizer.visible(grant, answer["deployments"])
            return {"ok": True, **answer}
        except Refused as exc:
            _problems.warning("refused", "refused control request %.20s: %s", op, exc.reason)
            return {"ok": False, "error": str(exc), "kind": exc.kind}
        except NotFound as exc:
            return {"ok": False, "error": str(exc), "kind": "not-found"}
        except ControlError as exc:
            return {"ok": False, "error": str(exc), "kind": exc.kind}
        except ModuleError as exc:
            return {"ok": False, "error": str(exc), "kind": "module"}
        except SignatureError as exc:
            return {"ok": False, "error": str(exc), "kind": exc.kind}
        except LatticeTypeError as exc:
            return {"ok": False, "error": str(exc), "kind": "type-mismatch"}
        except InvalidKey as exc:
            return {"ok": False, "error": str(exc), "kind": "invalid"}
        except (StoreError, DecodeError) as exc:
            return {"ok": False, "error": str(exc), "kind": "store"}
        except EssaError as exc:
            return {"ok": False, "error": str(exc), "kind": "invalid"}
        except Exception as exc:  # a bug: one line here, one line for the client
            _problems.warning("failed", "control request %.20s failed: %s", op, describe(exc), exc_info=exc)
            return {"ok": False, "error": f"the control request failed: {describe(exc)}", "kind": "store"}

    # -- deployments -----------------------------------------------------------------

    def _deploy(self, request: Message) -> Message:
        name = check_name(_field(request, "name", str))
        wasm = _field(request, "wasm", bytes)
        if len(wasm) > self.max_message_bytes:
            raise ControlError(f"the module's {len(wasm)} bytes exceed the message size limit "
                               f"({format_bytes(self.max_message_bytes)})")
        declared = _optional(request, "signatures", list) or []
        origin = _optional(request, "signatures_from", str) or "the declared signatures"
        declared = [Signature.from_dict(d, f"{origin}, function {i + 1}") for i, d in enumerate(declared)]
        module = publish_module(self.store, wasm, f"the module of {name!r}")
        program = self.programs.get(module)  # compiles now: a bad module fails the deploy, as the engine says
        retries = _optional(request, "retries", int)
        consistency = _optional(request, "consistency", str)
        try:
            if retries is not None:
                check_retries(retries)
            if consistency is not None:
                check_consistency(consistency)
        except EssaError as exc:
            raise ControlError(str(exc)) from None
        found = module_signatures(wasm)
        functions = user_functions(program.info)
        if not functions and not program.info.has_start:
            raise ModuleError("the module exports no function to call (__essa_wrapper__NAME, of type (i32) -> ()) "
                              "and no _start to run: nothing could use it")
        check_signatures(found, functions, f"the module's {SECTION} section")
        replaced = {s.name for s in check_signatures(declared, functions, origin)}
        signatures = [s for s in found if s.name not in replaced] + declared
        deployment = self.registry.add(name, module, len(wasm), functions, _optional(request, "id", str),
                                       _optional(request, "created", int), signatures,
                                       DEFAULT_RETRIES if retries is None else retries,
                                       consistency or DEFAULT_CONSISTENCY)
        if deployment.unchanged:
            log.info("deployed %s again: unchanged (module %s)", deployment.spec, module[:12])
        else:
            log.info("deployed %s (module %s, %d bytes)", deployment.spec, module[:12], len(wasm))
        return {"deployment": deployment.as_dict()}

    def _resolve(self, request: Message) -> Message:
        name, version = parse_spec(_field(request, "spec", str))
        return {"deployment": self.registry.resolve(name, version).as_dict()}

    def _list(self, request: Message) -> Message:
        return {"deployments": [self.registry.resolve(name).as_dict() for name in self.registry.names()]}

    def _versions(self, request: Message) -> Message:
        name = check_name(_field(request, "name", str))
        versions = self.registry.versions(name)
        if not versions:
            raise NotFound(f"no deployment named {name!r} (see `essa ls`)")
        return {"deployments": [v.as_dict() for v in versions]}

    def _remove(self, request: Message) -> Message:
        name = check_name(_field(request, "name", str))
        purge = _optional(request, "purge", bool) or False
        removed = self.registry.remove(name)
        purged = 0
        if purge:
            prefix = data_prefix(removed.namespace)
            for key in self.store.keys(prefix):
                purged += self.store.delete(key)
        log.info("removed deployment %s%s", name, f" and {purged} keys of its state" if purge else "")
        return {"deployment": removed.as_dict(), "purged": purged}

    def _rollback(self, request: Message) -> Message:
        name = check_name(_field(request, "name", str))
        to = _optional(request, "to", str)
        deployment = self.registry.rollback(name, None if to is None else parse_ref(to, name),
                                            _optional(request, "time", int))
        log.info("rolled back %s to version %d", name, deployment.version)
        return {"deployment": deployment.as_dict()}

    def _tag(self, request: Message) -> Message:
        name, version = parse_spec(_field(request, "spec", str))
        tagged = self.registry.tag(name, version, _field(request, "tag", str), _optional(request, "time", int))
        return {"deployment": tagged.as_dict()}

    def _untag(self, request: Message) -> Message:
        name = check_name(_field(request, "name", str))
        untagged = self.registry.untag(name, _field(request, "tag", str), _optional(request, "time", int))
        return {"deployment": untagged.as_dict()}

    def _drop(self, request: Message) -> Message:
        name, version = parse_spec(_field(request, "spec", str))
        if version is None:
            raise ControlError(f"{name!r} names no version (as in {name}@2): to remove the deployment, use remove")
        dropped = self.registry.drop(name, version, _optional(request, "time", int))
        log.info("removed version %s", dropped.spec)
        return {"deployment": dropped.as_dict()}
    # -- DAGs ------------------------------------------------------------------------

    def _dag_create(self, request: Message) -> Message:
        """Register a DAG (see :mod:`essa.cluster.dags`); every stage must name an existing function."""
        functions, edges = _field(request, "functions", list), _field(request, "edges", list)
        dag = check_dag(_field(request, "name", str), functions, edges)
        for stage in dag.functions:
            spec, function = split_stage(stage)
            self.registry.resolve(*parse_spec(spec)).check_function(function)
        dag = self.dags.add(dag)
        log.info("registered DAG %s (%d stages)", dag.name, len(dag.functions))
        return {"dag": dag.as_dict()}

    def _dag_get(self, request: Message) -> Message:
        return {"dag": self.dags.get(_field(request, "name", str)).as_dict()}

    def _dag_list(self, request: Message) -> Message:
        return {"dags": [self.dags.get(name).as_dict() for name in self.dags.names()]}

    def _dag_remove(self, request: Message) -> Message:
        dag = self.dags.remove(_field(request, "name", str))
        log.info("removed DAG %s", dag.name)
        return {"dag": dag.as_dict()}

    # -- state -----------------------------------------------------------------------

    def _key(self, request: Message) -> str:
        """The store key of the request's namespace and (guest) key."""
        namespace = check_name(_field(request, "namespace", str), "namespace")
        key = _field(request, "key", str)
        size = len(encode_text(key))
        if size > self.max_message_bytes:
            raise ControlError(f"a state key of {size} bytes exceeds the message size limit "
                               f"({format_bytes(self.max_message_bytes)})")
        return data_prefix(namespace) + key

    def _state_get(self, request: Message) -> Message:
        return {"value": self.store.get_bytes(self._key(request))}

    def _state_merge(self, request: Message) -> Message:
        value = _field(request, "value", bytes)
        if len(value) > self.max_message_bytes:
            raise ControlError(f"a value of {len(value)} bytes exceeds the message size limit "
                               f"({format_bytes(self.max_message_bytes)})")
        self.store.merge_bytes(self._key(request), value)
        return {}

    def _state_keys(self, request: Message) -> Message:
        namespace = check_name(_field(request, "namespace", str), "namespace")
        prefix = data_prefix(namespace)
        start = prefix + (_optional(request, "prefix", str) or "")
        encode_text(start, "key prefix")
        listed = self.store.keys(start)
        # A store plugin could name a key no answer can carry: leave it out, never fail the listing.
        keys = [key[len(prefix):] for key in listed if is_text(key) and key.startswith(start)]
        dropped = len(listed) - len(keys)
        reasons = [getattr(listed, "why", ""), f"{dropped} that the store named with text that is not UTF-8"
                   if dropped else ""]
        return {"keys": keys, "unlisted": getattr(listed, "unlisted", 0) + dropped,
                "why": "; ".join(r for r in reasons if r)}

    def _state_delete(self, request: Message) -> Message:
        return {"deleted": self.store.delete(self._key(request))}


def _field(request: Message, name: str, kind: type) -> Any:
    value = request.get(name)
    if kind is bytes and isinstance(value, bytearray):
        value = bytes(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ControlError(f"malformed control request: {name!r} must be {kind.__name__}")
    return value


def _optional(request: Message, name: str, kind: type) -> Any:
    return None if request.get(name) is None else _field(request, name, kind)


class ControlClient:
    """Sends control requests to whichever server answers first.

    :param timeout: seconds to wait for an answer (a deploy compiles: give it more).
    :param token: the access token to send with every request.
    """

    #: Seconds to keep asking while no server is known (routes of a new session take a moment).
    find_server = 10.0

    def __init__(self, transport: Transport, timeout: float = 30.0, token: str | None = None) -> None:
        self.transport = transport
        self.timeout = timeout
        #: The access token sent with every request (a cluster that checks tokens needs one).
        self.token = token

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> Message:
        """The answer to ``{"op": op, **fields}``.

        :raises essa.errors.NotFound: the request names something that does not exist.
        :raises essa.errors.SignatureError: a deploy's signatures are malformed.
        :raises ControlError: it was refused, or nobody answered.
        """
        timeout = timeout or self.timeout
        if self.token is not None:
            fields["token"] = self.token
        deadline = time.monotonic() + min(timeout, self.find_server)
        while True:
            answers = self.transport.query(topics.CONTROL, {"op": op, **fields}, timeout=timeout, one=True)
            # A session that just opened may not know the servers' topics yet: ask again, for a while.
            if answers or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not answers:
            raise ControlError(
                "no executor answered the request: deployments and state are served by executors "
                "(is one running?)", "unavailable")
        answer = answers[0]
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise ControlError("the cluster sent a malformed answer", "store")
        if not answer["ok"]:
            message, kind = str(answer.get("error", "refused")), str(answer.get("kind", "invalid"))
            if kind == "not-found":
                raise NotFound(message)
            if kind == SignatureError.kind:
                raise SignatureError(message)
            raise ControlError(message, kind)
        return answer


__all__ = ["ControlClient", "ControlError", "ControlService"]
