"""essa's public Python API: deploy modules by name, call their functions, read their state.

::

    import essa

    with essa.connect() as es:                      # embedded: this process, the default store
        es.deploy("wc.wasm", name="wc")             # a new version of deployment "wc"
        es.call("wc", "count_words", "the quick fox")               # -> 3 (by its signature)
        es.call("wc", "count_words", essa.encode("string", "a b"))  # bytes in, bytes out
        count = es.function("wc", "count_words")    # count("a b") -> 2; await count.acall("a b")
        es.state("wc").get("vocab")                 # -> SetLattice({b"fox", b"quick", b"the", ...})

    es = essa.connect("tcp/127.0.0.1:7447")         # a running cluster (`essa up`)

Deployments are named ``NAME`` (the latest version) or ``NAME@3`` (a pinned
one); functions are named as their author wrote them (``count_words``); a
deployment's state lives in the namespace of its name, shared by every
version, every call and ``essa run --namespace NAME``. What a deployment's
calls print is kept by the executors that ran them, for a while
(:meth:`Connection.logs`, :meth:`Connection.follow_logs`). Every error is an
:class:`essa.errors.EssaError` whose message is the one line the ``essa``
command prints: :class:`~essa.errors.NotFound` for an unknown deployment,
version or function, :class:`CallError` for a call that failed,
:class:`~essa.errors.ArgumentError` for arguments that do not fit a
function's signature (refused before the call), :class:`~essa.errors.ResultError`
for a result that is not what the signature says.

A function with a signature (docs/signatures.md) takes values and gives a
value; one without, and any call given one ``bytes`` argument, takes and
gives bytes (:mod:`essa.api.function`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import functools
import math
import os
import threading
import time
from typing import Any, BinaryIO, Callable, Iterable, Mapping, Sequence

from essa.api import contexts
from essa.api.function import Function, bind
from essa.cluster import topics
from essa.cluster.client import CallHandle, Client, ConsoleOutput
from essa.cluster.consistency import DEFAULT, check_level
from essa.cluster.control import ControlClient
from essa.cluster.dags import Dag, call_plan, check_dag
from essa.cluster.deployments import (
    DEFAULT_RETRIES,
    MAX_RETRIES,
    Deployed,
    Deployment,
    check_name,
    check_retries,
    parse_spec,
)
from essa.cluster.embedded import EmbeddedRuntime
from essa.cluster.logbook import LogBounds
from essa.cluster.logreader import LogFollower, LogLine, LogQuery, read_logs
from essa.cluster.processes import connect_client
from essa.cluster.programs import check_wasm, read_module
from essa.errors import DecodeError, EssaError
from essa.placement import MAX_CALL_KEYS
from essa.security import settings as security_settings
from essa.security.tls import TlsFiles
from essa.state.bincode import decode_lattice, encode_lattice
from essa.state.keys import KeyList, encode_text
from essa.state.lattice import Lattice
from essa.state.signatures import Signature, parse_toml
from essa.state.timestamps import parse_timestamp
from essa.transport.base import Message
from essa.util.units import parse_duration
from essa.wasm.abi import CallOutcome, EssaResult
from essa.wasm.limits import Grants, Limits

#: Seconds a resolved ``NAME`` (latest version) is reused before it is looked up again.
RESOLVE_TTL = 1.0
#: Seconds a deploy may take (it compiles the module).
DEPLOY_TIMEOUT = 300.0


class CallError(EssaError):
    """A call failed; the message says how, in one line.

    :ivar code: the :class:`~essa.wasm.abi.EssaResult` a guest caller would have got.
    :ivar kind: how it failed: ``trap``, ``time-limit``, ``memory-limit``,
        ``output-limit``, ``message-size``, ``exit``, ``no-result``,
        ``cancelled``, ``unavailable``, ... (see :func:`essa.cluster.calls.reply_message`).
    :ivar stderr: the last lines the call wrote to stderr (the message ends with up to three of them).
    :ivar call: the call's id, which its log lines carry (:meth:`Connection.logs`), or "".
    """

    def __init__(self, message: str, code: EssaResult = EssaResult.UnknownError, kind: str = "error",
                 stderr: Sequence[str] = (), call: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind
        self.stderr = list(stderr)
        self.call = call


class State:
    """The state of one namespace (a deployment's, or a name given to ``essa run --namespace``).

    Keys are the ones guests use with ``essa_put_lattice``: UTF-8 text (any
    other ``str``, such as one holding bytes that were not UTF-8, is refused
    with :class:`~essa.errors.InvalidKey`), empty or up to the message size
    limit; values are :mod:`essa.state.lattice` values, and a write *merges*.
    """

    def __init__(self, control: ControlClient, namespace: str) -> None:
        self._control = control
        #: The namespace.
        self.namespace = check_name(namespace, "namespace")

    def get(self, key: str) -> Lattice | None:
        """The value stored under ``key``, or ``None``."""
        raw = self.get_bytes(key)
        return None if raw is None else decode_lattice(raw)

    def get_bytes(self, key: str) -> bytes | None:
        """The encoded value (the guest ABI's bytes) stored under ``key``, or ``None``."""
        encode_text(key)
        return self._control.request("state-get", namespace=self.namespace, key=key)["value"]

    def merge(self, key: str, value: Lattice) -> None:
        """Merge ``value`` into ``key`` (a value of another lattice type is refused; nothing changes)."""
        encode_text(key)
        self._control.request("state-merge", namespace=self.namespace, key=key, value=encode_lattice(value))

    def keys(self, prefix: str = "") -> KeyList:
        """The keys starting with ``prefix``, sorted, exactly as they were written.

        A :class:`~essa.state.keys.KeyList`: its ``unlisted`` counts keys the store
        holds but could not name (records of an older essa), ``why`` says why.
        """
        encode_text(prefix, "key prefix")
        answer = self._control.request("state-keys", namespace=self.namespace, prefix=prefix)
        keys = answer.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise EssaError("the cluster sent a malformed list of keys")
        unlisted = answer.get("unlisted")
        why = answer.get("why")
        return KeyList(keys, unlisted if isinstance(unlisted, int) else 0, why if isinstance(why, str) else "")

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it existed."""
        encode_text(key)
        return self._control.request("state-delete", namespace=self.namespace, key=key)["deleted"]

    def __repr__(self) -> str:
        return f"<essa.State {self.namespace}>"


class Connection:
    """A connection to essa: an embedded runtime in this process, or a cluster.

    Make one with :func:`connect`; close it (or use it as a context manager)
    when done.
    """

    def __init__(self, client: Client, close: Callable[[], None], where: str) -> None:
        self._client = client
        self._close = close
        self._control = ControlClient(client.transport, token=client.token)
        self._resolved: dict[str, tuple[Deployment, float]] = {}
        #: name -> (DAG, its call plan, when to look both up again)
        self._dags: dict[str, tuple[Dag, Message, float]] = {}
        self._lock = threading.Lock()
        #: Where this connection runs calls: ``"embedded (...)"`` or the cluster's endpoints.
        self.where = where

    # -- deployments -----------------------------------------------------------------

    def deploy(self, module: str | os.PathLike | bytes, name: str,
               signatures: str | os.PathLike | Iterable[Signature | dict] | None = None,
               retries: int | None = None, consistency: str | None = None) -> Deployed:
        """Store ``module`` (a path or the bytes) as a new version of deployment ``name``.

        The module is compiled on deploy: a module that cannot run is refused
        here. Its functions' signatures come from its ``essa.signatures``
        section (the SDKs write it) and from ``signatures``, which take the
        place of the section's for their functions: a TOML file's
        ``[functions.NAME]`` tables (its path, e.g. ``"essa.toml"``), or
        :class:`~essa.state.signatures.Signature` objects or the contract's
        dicts (docs/signatures.md). Returns the version ``name`` now means,
        with the one it meant before (``previous``) and how their functions
        differ (``changes``: added, removed, signature changed); for the bytes
        and signatures ``name`` means already, that version with
        ``unchanged`` set (no new version is made).

        :param retries: how many times a call of this version runs again when
            its executor dies (default 3; 0 for functions that must not
            repeat). See "Failures" in docs/architecture.md for what a
            re-executed call leaves behind.
        :param consistency: the consistency level of the version's calls that
            name none (``"default"``, ``"repeatable-read"`` or ``"causal"``;
            see :meth:`call`).
        :raises essa.errors.SignatureError: a malformed signature (or section),
            or one of a function the module does not have.
        """
        problem = check_level(consistency)
        if problem is not None:
            raise EssaError(problem)
        check_name(name)
        if retries is not None:
            check_retries(retries)
        if isinstance(module, (bytes, bytearray)):
            wasm = bytes(module)
            check_wasm(wasm, "the module")
        else:
            wasm = read_module(os.fspath(module))
        declared = {}
        if signatures is not None:
            origin, found = _declared(signatures)
            declared = {"signatures": [s.as_dict() for s in found], "signatures_from": origin}
        answer = self._control.request("deploy", timeout=DEPLOY_TIMEOUT, name=name, wasm=wasm,
                                       id=os.urandom(16).hex(), created=time.time_ns(), **declared,
                                       **({} if retries is None else {"retries": retries}),
                                       **({} if consistency in (None, DEFAULT) else {"consistency": consistency}))
        self._forget(name)
        return Deployed.from_dict(answer["deployment"])

    def deployment(self, spec: str) -> Deployment:
        """The version ``NAME`` means (its latest, unless rolled back), or ``NAME@VERSION``, ``NAME@TAG``."""
        cached = self._cached(spec)
        if cached is not None:
            return cached
        _name, version = parse_spec(spec)
        pinned = isinstance(version, int)  # a version never changes; what a name or tag means may
        answer = self._control.request("resolve", spec=spec)
        deployment = Deployment.from_dict(answer["deployment"])
        with self._lock:
            if len(self._resolved) > 4096:
                self._resolved.clear()
            self._resolved[spec] = (deployment, math.inf if pinned else time.monotonic() + RESOLVE_TTL)
            self._resolved[deployment.spec] = (deployment, math.inf)  # NAME@VERSION never changes
        return deployment

    async def adeployment(self, spec: str) -> Deployment:
        """:meth:`deployment` for asyncio: at once when it was resolved just now, else on a thread (it asks)."""
        cached = self._cached(spec)
        if cached is not None:
            return cached
        return await asyncio.get_running_loop().run_in_executor(None, self.deployment, spec)

    def _cached(self, spec: str) -> Deployment | None:
        """The deployment ``spec`` names if it was resolved less than :data:`RESOLVE_TTL` ago (pinned: ever)."""
        cached = self._resolved.get(spec)  # a dict read is atomic: no lock on the hot path
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    def deployments(self) -> list[Deployment]:
        """The version each deployment's name means, by name (with its tags; ``latest`` is the newest version)."""
        return [Deployment.from_dict(d) for d in self._control.request("list")["deployments"]]

    def versions(self, name: str) -> list[Deployment]:
        """Every version of deployment ``name``, oldest first, with their tags (``current``: the one the name means)."""
        return [Deployment.from_dict(d) for d in self._control.request("versions", name=name)["deployments"]]

    def rollback(self, name: str, to: int | str | None = None) -> Deployed:
        """Make ``name`` mean version ``to`` (a number or a tag; default: the one before the version it means).

        No version is added or copied: the name points at an older (or any
        other) version until the next deploy or rollback. Returns that
        version, with ``previous`` (the one it meant) and ``changes``.
        """
        check_name(name)
        answer = self._control.request("rollback", name=name, to=None if to is None else str(to), time=time.time_ns())
        self._forget(name)
        return Deployed.from_dict(answer["deployment"])

    def tag(self, spec: str, tag: str) -> Deployment:
        """Make ``NAME@tag`` mean the version ``spec`` names (``NAME``: the one the name means); return it."""
        answer = self._control.request("tag", spec=spec, tag=tag, time=time.time_ns())
        self._forget(parse_spec(spec)[0])
        return Deployment.from_dict(answer["deployment"])

    def untag(self, name: str, tag: str) -> Deployment:
        """Remove tag ``tag`` of deployment ``name``; return the version it named."""
        answer = self._control.request("untag", name=name, tag=tag, time=time.time_ns())
        self._forget(name)
        return Deployment.from_dict(answer["deployment"])

    def remove_version(self, spec: str) -> Deployment:
        """Remove one version, ``NAME@3`` (or ``NAME@TAG``), with its tags; return it.

        Refused for the version the name means now (roll back first, or
        remove the whole deployment with :meth:`remove`).
        """
        answer = self._control.request("drop", spec=spec, time=time.time_ns())
        self._forget(parse_spec(spec)[0])
        return Deployment.from_dict(answer["deployment"])

    def functions(self, spec: str) -> list[str]:
        """The functions of a deployment, as their author named them (``deployment(spec).signature(f)``: theirs)."""
        return list(self.deployment(spec).functions)

    def function(self, spec: str, function: str, timeout: float | None = None,
                 output: Callable[[Message], None] | None = None) -> Function:
        """``function`` of deployment ``spec`` as a Python callable (:class:`~essa.api.function.Function`).

        ``es.function("wc", "count_words")("the quick fox")`` returns 3;
        ``timeout`` and ``output`` apply to each of its calls, as for :meth:`call`.

        :raises essa.errors.NotFound: no such deployment, version or function.
        """
        return Function(self, spec, function, timeout, output)

    def remove(self, name: str, purge: bool = False) -> int:
        """Remove deployment ``name`` (every version); its state stays unless ``purge``.

        Returns the number of state keys deleted (0 without ``purge``).
        ``NAME@3`` removes that version only (see :meth:`remove_version`).
        """
        if "@" in name:
            if purge:
                raise EssaError(f"purge deletes a deployment's state, which all its versions share: it applies to "
                                f"the whole deployment ({name.partition('@')[0]}), not to {name}")
            self.remove_version(name)
            return 0
        answer = self._control.request("remove", name=name, purge=purge)
        self._forget(name)
        return answer["purged"]

    def _forget(self, name: str) -> None:
        with self._lock:
            for spec in [s for s in self._resolved if s == name or s.startswith(name + "@")]:
                del self._resolved[spec]
            self._dags.clear()  # their plans may name the deployment
    # -- DAGs --------------------------------------------------------------------------

    def register_dag(self, name: str, functions: Sequence[str], edges: Sequence[Sequence[str]] = ()) -> Dag:
        """Register DAG ``name`` (replacing one of that name): stages ``functions``, joined by ``edges``.

        Stages are named ``DEPLOYMENT.FUNCTION`` (``wc.split``; ``wc@2.split``
        pins a version); ``edges`` are ``(FROM, TO)`` pairs of them. The DAG
        must be acyclic with exactly one stage without downstream stages (the
        sink, whose result is the DAG's result). A source stage gets the
        call's arguments; any other stage its upstream stages' results,
        concatenated in the order of its in-edges (see :mod:`essa.cluster.dags`).

        :raises essa.errors.NotFound: a stage names a deployment or function that does not exist.
        :raises essa.errors.EssaError: the DAG is malformed (one line saying how).
        """
        dag = check_dag(name, list(functions), [list(e) for e in edges])
        answer = self._control.request("dag-create", name=dag.name, functions=list(dag.functions),
                                       edges=[list(e) for e in dag.edges])
        with self._lock:
            self._dags.pop(name, None)
        return Dag.from_dict(answer["dag"])

    def dag(self, name: str) -> Dag:
        """DAG ``name``; :class:`~essa.errors.NotFound` if there is none."""
        return self._dag_plan(name)[0]

    def _dag_plan(self, name: str) -> tuple[Dag, Message]:
        """DAG ``name`` and its call plan, looked up again after :data:`RESOLVE_TTL` seconds."""
        with self._lock:
            cached = self._dags.get(name)
        if cached is not None and cached[2] > time.monotonic():
            return cached[0], cached[1]
        dag = Dag.from_dict(self._control.request("dag-get", name=name)["dag"])
        plan = call_plan(dag, self.deployment)
        with self._lock:
            if len(self._dags) > 4096:
                self._dags.clear()
            self._dags[name] = (dag, plan, time.monotonic() + RESOLVE_TTL)
        return dag, plan

    def dags(self) -> list[Dag]:
        """Every registered DAG, by name."""
        return [Dag.from_dict(d) for d in self._control.request("dag-list")["dags"]]

    def remove_dag(self, name: str) -> Dag:
        """Remove DAG ``name`` (the deployments it uses stay); return it."""
        answer = self._control.request("dag-remove", name=name)
        with self._lock:
            self._dags.pop(name, None)
        return Dag.from_dict(answer["dag"])

    def call_dag_async(self, name: str, args: bytes = b"", output: Callable[[Message], None] | None = None,
                       consistency: str | None = None) -> concurrent.futures.Future:
        """Start DAG ``name`` with ``args``; the future's result is the sink's result bytes.

        The scheduler places every stage at once, and each stage's result goes
        straight to the executors of the stages after it. A stage that fails
        fails the call (:class:`CallError` naming the stage); cancelling the
        future ends the stages on the executors.

        ``consistency`` is the level of every stage and every call a stage
        starts (by default, each stage's deployment's); at
        ``"repeatable-read"`` all of them read one version of each key, the
        one the first read of it pinned, on whichever executors they run; at
        ``"causal"`` each stage sees what the stages before it wrote and read
        (and what this connection's earlier causal calls did), and the DAG's
        dependencies come back for this connection's later causal calls.
        """
        return _ResultFuture(self._start_dag(name, args, output, consistency))

    def call_dag(self, name: str, args: bytes = b"", timeout: float | None = None,
                 output: Callable[[Message], None] | None = None, consistency: str | None = None) -> bytes:
        """Call DAG ``name`` with ``args`` and return the sink's result (see :meth:`call_dag_async`).

        A call not answered after ``timeout`` seconds is cancelled; ``consistency`` as for :meth:`call_dag_async`.
        """
        handle = self._start_dag(name, args, output, consistency)
        try:
            outcome = handle.result(timeout)
        except concurrent.futures.TimeoutError:
            handle.cancel()
            raise CallError(f"DAG {name}: no answer within {timeout:g} s", kind="cancelled", call=handle.call) from None
        return _value(outcome)

    def _start_dag(self, name: str, args: bytes, output: Callable[[Message], None] | None,
                   consistency: str | None = None) -> CallHandle:
        problem = check_level(consistency)
        if problem is not None:
            raise EssaError(problem)
        plan = self._dag_plan(name)[1]
        sink = plan["stages"][-1]
        fields: dict[str, Any] = {"deployment": sink["deployment"], "dag": plan}
        if consistency is not None:  # even "default": it overrides the stages' deployments' levels
            fields["consistency"] = consistency
        return self._client.start_call(sink["module"], sink["function"], bytes(args), sink["namespace"], output,
                                       fields=fields)

    # -- calls -----------------------------------------------------------------------

    def call(self, spec: str, function: str, /, *args: Any, timeout: float | None = None,
             output: Callable[[Message], None] | None = None, consistency: str | None = None,
             keys: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """Call ``function`` of deployment ``spec`` and return its result.

        With a signature, ``args`` and ``kwargs`` are the function's
        parameters (``es.call("wc", "count_words", "the quick fox")`` -> 3);
        given one ``bytes`` argument (or none, to a function without a
        signature), the call takes those bytes as they are and returns the
        result's bytes (see :mod:`essa.api.function`). A call not answered
        after ``timeout`` seconds is cancelled; guest output goes to
        ``output`` as it is written, and is kept in the deployment's logs
        either way (:meth:`logs`).

        ``consistency`` is the level of the call and every call it starts:
        ``"default"``, ``"repeatable-read"`` or ``"causal"`` (see
        :mod:`essa.cluster.consistency`); by default, the deployment's.
        ``keys`` are state keys the call will touch: the scheduler prefers an
        executor whose cache holds them (at most 16 count). (Function
        parameters named ``timeout``, ``output``, ``consistency`` or ``keys``:
        use :meth:`function`.)

        :raises essa.errors.NotFound: no such deployment, version or function.
        :raises essa.errors.ArgumentError: the arguments do not fit the signature (nothing ran).
        :raises CallError: the call failed (trapped, exceeded a limit, ...).
        :raises essa.errors.ResultError: the result is not what the signature declares.
        """
        return self._call(spec, function, args, kwargs, timeout, output, consistency, keys)

    def call_async(self, spec: str, function: str, /, *args: Any,
                   output: Callable[[Message], None] | None = None, trace: bool = False,
                   consistency: str | None = None, keys: Sequence[str] | None = None,
                   **kwargs: Any) -> concurrent.futures.Future:
        """Start ``function`` of deployment ``spec``; the future's result is the call's result (as :meth:`call`).

        Wrong arguments raise here, before anything starts. The future
        raises :class:`CallError` if the call fails; cancelling it ends the
        call on the executors. Guest output (and essa's warnings about the
        call) goes to ``output`` as it is written, and is kept in the
        deployment's logs either way (:meth:`logs`); ``future.call`` is the
        call's id there. With ``trace``, ``future.spans()`` gives the call
        and every remote call it made (:mod:`essa.cluster.tracing`).
        ``consistency`` and ``keys`` as for :meth:`call` (function parameters
        named ``output``, ``trace``, ``consistency`` or ``keys``: use :meth:`function`).
        """
        return self._call_async(spec, function, args, kwargs, output, trace, consistency, keys)

    async def acall(self, spec: str, function: str, /, *args: Any, consistency: str | None = None,
                    keys: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """:meth:`call` for asyncio: awaits the result (cancelling the task cancels the call).

        A deployment resolved a moment ago starts its call on the event loop
        itself; otherwise the call starts on a thread (resolving asks the
        cluster), so the loop never waits for the network. ``consistency``
        and ``keys`` as for :meth:`call`.
        """
        return (await self._acall(spec, function, args, kwargs, consistency=consistency, keys=keys)).value

    async def acall_result(self, spec: str, function: str, /, *args: Any,
                           output: Callable[[Message], None] | None = None,
                           started: Callable[[str], None] | None = None, consistency: str | None = None,
                           keys: Sequence[str] | None = None, **kwargs: Any) -> "CallResult":
        """:meth:`acall`, giving the result with the call's id (what a trigger answers with).

        Guest output goes to ``output`` as it is written, as for :meth:`call`;
        ``started`` is called with the call's id once the call is sent;
        ``consistency`` and ``keys`` as for :meth:`call`. (Parameters named
        ``output``, ``started``, ``consistency`` or ``keys``: use :meth:`function`.)
        """
        return await self._acall(spec, function, args, kwargs, output, started, consistency, keys)

    def _start(self, spec: str, function: str, args: Sequence[Any], kwargs: Mapping[str, Any],
               output: Callable[[Message], None] | None, trace: bool = False, consistency: str | None = None,
               keys: Sequence[str] | None = None, timeout: float | None = None) -> tuple[CallHandle, Signature | None]:
        problem = check_level(consistency)
        if problem is not None:
            raise EssaError(problem)
        deployment = self.deployment(spec)
        export, payload, signature = bind(deployment, function, args, kwargs)
        fields: dict[str, Any] = {"deployment": deployment.name, "version": deployment.version,
                                  "retries": deployment.retries}
        level = consistency if consistency is not None else deployment.consistency
        if level != DEFAULT:
            fields["consistency"] = level
        if keys:
            if isinstance(keys, (str, bytes)):
                raise EssaError("keys must be a list of state keys, not one string")
            fields["keys"] = list(keys)[:MAX_CALL_KEYS]
            for key in fields["keys"]:
                encode_text(key)
        handle = self._client.start_call(deployment.module, export, payload, deployment.namespace, output,
                                         trace=trace, fields=fields, patience=timeout)
        return handle, signature

    def _call(self, spec: str, function: str, args: Sequence[Any], kwargs: Mapping[str, Any],
              timeout: float | None, output: Callable[[Message], None] | None, consistency: str | None = None,
              keys: Sequence[str] | None = None) -> Any:
        # waited on directly: no second future
        handle, signature = self._start(spec, function, args, kwargs, output, consistency=consistency, keys=keys,
                                        timeout=timeout)
        try:
            outcome = handle.result(timeout)
        except concurrent.futures.TimeoutError:
            handle.cancel()
            raise CallError(f"{function}: no answer within {timeout:g} s", kind="cancelled", call=handle.call) from None
        value = _value(outcome)
        return value if signature is None else signature.decode_result(value)

    def _call_async(self, spec: str, function: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                    output: Callable[[Message], None] | None = None, trace: bool = False,
                    consistency: str | None = None, keys: Sequence[str] | None = None) -> "_ResultFuture":
        return _ResultFuture(*self._start(spec, function, args, kwargs, output, trace, consistency, keys))

    async def _acall(self, spec: str, function: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                     output: Callable[[Message], None] | None = None,
                     started: Callable[[str], None] | None = None, consistency: str | None = None,
                     keys: Sequence[str] | None = None) -> "CallResult":
        loop = asyncio.get_running_loop()
        start_call = functools.partial(self._start, spec, function, args, kwargs, output, consistency=consistency,
                                       keys=keys)
        if self._cached(spec) is not None and self._client.caller.sees_scheduler:
            handle, signature = start_call()  # nothing here waits: no thread hop
        else:
            start = loop.run_in_executor(None, start_call)
            try:
                handle, signature = await asyncio.shield(start)
            except asyncio.CancelledError:  # cancelled while it started: cancel it once started
                start.add_done_callback(_cancel_started)
                raise
        if started is not None:
            started(handle.call)
        # The reply settles an asyncio future straight from the thread that received it: no future in between.
        waiter = loop.create_future()

        def settled(ended: CallHandle) -> None:
            try:
                loop.call_soon_threadsafe(_settle_waiter, waiter, ended, signature)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        handle.add_done_callback(settled)
        try:
            return await waiter
        except asyncio.CancelledError:  # cancelling the task cancels the call
            handle.cancel()
            raise

    def run(self, module: str | os.PathLike | bytes, namespace: str | None = None,
            output: Callable[[Message], None] | None = None, timeout: float | None = None,
            argv: Sequence[str] | None = None, stdin: BinaryIO | bytes | None = None) -> int:
        """Run a module's main function (``_start``) and return its exit status.

        ``namespace`` names the state it uses (e.g. a deployment's name);
        by default a run gets a fresh one. Guest output goes to ``output``,
        by default this process's stdout and stderr. ``argv`` is the
        program's arguments, ``argv[0]`` included (default: the module's
        path); ``stdin`` what it reads from stdin (a binary file or bytes;
        default: nothing).

        :raises essa.errors.RunFailed: the module trapped or could not run (or
            did not end within ``timeout`` seconds: it is then cancelled).
        """
        return self.start_run(module, namespace, output, argv=argv, stdin=stdin).wait(timeout)

    def start_run(self, module: str | os.PathLike | bytes, namespace: str | None = None,
                  output: Callable[[Message], None] | None = None, origin: str | None = None,
                  trace: bool = False, argv: Sequence[str] | None = None,
                  stdin: BinaryIO | bytes | None = None) -> "Run":
        """Start a run (see :meth:`run`): a :class:`Run`, whose result is the exit status.

        ``origin`` names the module in messages (default: its path, or "the module").
        With ``trace``, ``Run.spans()`` gives the run's calls once it ended.
        """
        if namespace is not None:
            check_name(namespace, "namespace")
        if isinstance(module, (bytes, bytearray)):
            wasm, origin = bytes(module), origin or "the module"
        else:
            wasm, origin = read_module(os.fspath(module)), os.fspath(module)
        return Run(self._client.start_run(self._client.publish(wasm, origin), output or ConsoleOutput(), namespace,
                                          trace, argv=[origin] if argv is None else argv, stdin=stdin))

    # -- logs ------------------------------------------------------------------------

    def logs(self, spec: str, *, since: str | float | datetime.datetime | datetime.timedelta | None = None,
             call: str | None = None, tail: int | None = None, timeout: float = 2.0) -> list[LogLine]:
        """The lines the calls of deployment ``spec`` printed, as the executors keep them, oldest first.

        ``spec`` is ``NAME`` (every version) or ``NAME@3`` (that version's
        calls). Every executor (of the cluster, or of this embedded runtime)
        keeps the lines of the calls it ran, within its bounds
        (:class:`~essa.cluster.logbook.LogBounds`): the oldest go first, and
        an executor that stops takes its lines with it.

        :param since: only lines written since then: a ``datetime``, or how
            long ago (a ``timedelta``, seconds, or text such as ``"10m"``,
            ``"30s"``, ``"2h"``), or an RFC 3339 time as text.
        :param call: only the lines of the call with this id (a log line's
            ``call``, :attr:`CallError.call`, a call future's ``call``).
        :param tail: only the last ``tail`` lines.
        :param timeout: seconds to wait for the executors' answers.
        :raises essa.errors.NotFound: no line, and no such deployment or version.
        """
        query = self._log_query(spec, since, call, timeout)
        lines = read_logs(query, tail)
        if not lines:
            self.deployment(spec)  # a misspelt name says so
        return lines

    def follow_logs(self, spec: str, *, since: str | float | datetime.datetime | datetime.timedelta | None = None,
                    call: str | None = None, tail: int | None = None, interval: float = 0.5) -> LogFollower:
        """The lines of :meth:`logs` (the ones kept already first), then each new one as it is written.

        Iterate over the returned :class:`~essa.cluster.logreader.LogFollower`
        (it waits for more, asking the executors every ``interval``
        seconds); its ``close()`` ends the iteration, from any thread. Its
        ``lost`` counts the times lines were dropped (the executors' bounds)
        before they could be read.

        :raises essa.errors.NotFound: no such deployment or version.
        """
        self.deployment(spec)
        return LogFollower(self._log_query(spec, since, call, 2.0), tail, interval)

    def _log_query(self, spec: str, since, call: str | None, timeout: float) -> LogQuery:
        name, version = parse_spec(spec)
        if call is not None and not isinstance(call, str):
            raise EssaError(f"call={call!r}: expected a call id (text)")
        return LogQuery(self._client.transport, name, version, _since(since), call, self._client.token, timeout)

    # -- state -----------------------------------------------------------------------

    def state(self, namespace: str) -> State:
        """The state of a deployment (its name is its namespace) or of any namespace."""
        return State(self._control, namespace)

    def status(self, timeout: float = 1.0, complete_within: float = 0.0) -> list[dict]:
        """What ``essa status`` shows: the status answer of every scheduler and every executor.

        Executors answer ``role``, ``id``, ``calls``, ``runs``, ``failures``,
        ``cancelled``, ``running``, ``latency_ms``, ``by_function``, ``modules``;
        schedulers ``role``, ``id``, ``in_flight`` (calls placed and not done),
        ``unconfirmed`` (done, their callers' receipts not in yet), ``waiting``
        (for an executor), ``executors`` (the same counts per executor, with
        ``placed`` and ``others``: the calls other schedulers placed there, as
        the executor last reported).
        Each query waits ``timeout`` seconds for answers. Peers learn of each
        other by gossip, so an executor the scheduler knows may not answer at
        once: with ``complete_within``, queries repeat for up to that many
        seconds until every executor a scheduler knows has answered.
        """
        deadline = time.monotonic() + complete_within
        while True:
            answers = [a for a in self._client.transport.query(f"{topics.STATUS}/**", {}, timeout=timeout)
                       if isinstance(a, dict)]
            known = {e for a in answers if a.get("role") == "scheduler" for e in a.get("executors") or ()}
            seen = {a.get("id") for a in answers if a.get("role") == "executor"}
            if known <= seen or time.monotonic() >= deadline:
                return answers
            time.sleep(0.1)

    # -- life cycle --------------------------------------------------------------------

    def with_token(self, token: str | None) -> "Connection":
        """This connection, sending ``token`` with its requests instead of its own.

        The new connection shares this one's session (nothing is opened;
        closing it closes nothing): a gateway that serves many users, each
        with their own token, keeps one connection and one view per token.
        """
        client = Client(self._client.transport, self._client.store, caller=self._client.caller,
                        max_message_bytes=self._client.max_message_bytes, token=token)
        return Connection(client, lambda: None, self.where)


    def close(self) -> None:
        """Stop the embedded runtime, or leave the cluster."""
        self._close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<essa.Connection {self.where}>"


class Run:
    """A run started by :meth:`Connection.start_run`: its exit status, once it ends.

    :ivar id: the run's id (its calls share it, and so does its namespace unless one was named).
    """

    def __init__(self, handle: CallHandle) -> None:
        self._handle = handle
        self.id = handle.run

    def result(self, timeout: float | None = None) -> int:
        """Wait for the module's exit status (0 when ``_start`` returned).

        :raises essa.errors.RunFailed: the module trapped or could not run.
        :raises concurrent.futures.TimeoutError: not ended after ``timeout`` seconds (it goes on).
        """
        return self._handle.result(timeout)

    def wait(self, timeout: float | None = None) -> int:
        """:meth:`result`, but a run not ended after ``timeout`` seconds is cancelled and fails.

        :raises essa.errors.RunFailed: the run failed, or did not end in time.
        """
        return self._handle.wait(timeout)

    def done(self) -> bool:
        """Whether the run has ended (or was cancelled)."""
        return self._handle.done()

    def cancel(self, reason: str = "cancelled by the client") -> bool:
        """Stop the run everywhere, with every remote call it started; ``False`` if it had ended already."""
        return self._handle.cancel(reason)

    def spans(self, settle: float = 0.3, timeout: float = 5.0) -> list[Message]:
        """The calls of a run started with ``trace=True``, once it ended (see :func:`write_chrome_trace`)."""
        return self._handle.spans(settle, timeout)

    def __repr__(self) -> str:
        return f"<essa.Run {self.id}{' done' if self.done() else ''}>"


@dataclasses.dataclass(frozen=True, slots=True)
class CallResult:
    """A call's result (as :meth:`Connection.call` returns it) and its id (its log lines carry it)."""

    value: Any
    call: str


class _ResultFuture(concurrent.futures.Future):
    """The future of :meth:`Connection.call_async`: the result (bytes, or decoded by ``signature``), or the error."""

    def __init__(self, handle: CallHandle, signature: Signature | None = None) -> None:
        super().__init__()
        self._handle = handle
        self._signature = signature
        handle.add_done_callback(self._settle)

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._handle.cancel()
        return True

    def spans(self, settle: float = 0.3, timeout: float = 5.0) -> list[Message]:
        """The calls of a call made with ``trace=True``, once it ended (see :meth:`Run.spans`)."""
        return self._handle.spans(settle, timeout)

    @property
    def call(self) -> str:
        """The call's id: its log lines carry it (:meth:`Connection.logs`)."""
        return self._handle.call

    def _settle(self, handle: CallHandle) -> None:
        if handle.cancelled():
            return
        try:
            try:
                value = _value(handle.result())
                if self._signature is not None:
                    value = self._signature.decode_result(value)
            except EssaError as exc:  # CallError, ResultError
                self.set_exception(exc)
            else:
                self.set_result(value)
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile
            pass


def _since(since: str | float | datetime.datetime | datetime.timedelta | None) -> float | None:
    """``since`` of :meth:`Connection.logs` as seconds since the epoch (``None``: no bound)."""
    if since is None:
        return None
    if isinstance(since, datetime.datetime):
        return since.timestamp()
    if isinstance(since, datetime.timedelta):
        since = since.total_seconds()
    elif isinstance(since, str):
        try:
            since = parse_duration(since)
        except ValueError:
            try:
                return parse_timestamp(since.strip()) / 1e9
            except DecodeError:
                raise EssaError(f"since {since[:80]!r} is neither a duration (10m, 30s, 2h) nor an RFC 3339 time "
                                "(2026-12-07T10:00:00Z)") from None
    if not isinstance(since, (int, float)) or isinstance(since, bool) or since < 0:
        raise EssaError(f"since={since!r}: expected a datetime, a timedelta, seconds ago or text (10m, an RFC 3339 "
                        "time)")
    return time.time() - since


def _cancel_started(start: asyncio.Future) -> None:
    if not start.cancelled() and start.exception() is None:
        start.result()[0].cancel()


def _settle_waiter(waiter: asyncio.Future, handle: CallHandle, signature: Signature | None) -> None:
    """Settle the asyncio future of :meth:`Connection.acall` with the call's result (decoded) or error."""
    if waiter.done() or handle.cancelled():
        return
    try:
        value = _value(handle.result())
        waiter.set_result(CallResult(value if signature is None else signature.decode_result(value), handle.call))
    except EssaError as exc:  # CallError, ResultError
        waiter.set_exception(exc)


def _declared(signatures: str | os.PathLike | Iterable[Signature | dict]) -> tuple[str, list[Signature]]:
    """Where declared signatures come from (for messages), and the signatures."""
    if isinstance(signatures, (str, os.PathLike)):
        path = os.fspath(signatures)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise EssaError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        return path, parse_toml(text, path)
    found = [s if isinstance(s, Signature) else Signature.from_dict(s) for s in signatures]
    return "the declared signatures", found


def _value(outcome: CallOutcome) -> bytes:
    """A call's result bytes, or its failure as :class:`CallError`."""
    if outcome.code == EssaResult.Ok:
        return outcome.value
    raise CallError(outcome.message or outcome.code.name, outcome.code, outcome.kind or "error", outcome.stderr,
                    outcome.call)


def connect(
    endpoint: str | Sequence[str] | None = None,
    *,
    context: str | None = None,
    engine: str | None = None,
    store: str | None = None,
    store_options: Mapping[str, str] | None = None,
    executors: int | None = None,
    limits: Limits | None = None,
    grants: Grants | None = None,
    timeout: float = 10.0,
    zenoh_config: str | None = None,
    max_message_bytes: int | None = None,
    token: str | None = None,
    tls: TlsFiles | None = None,
    logs: LogBounds | None = None,
    wait: bool = False,
) -> Connection:
    """Connect to essa.

    With ``endpoint`` (``"tcp/HOST:PORT"``, or several): the cluster whose
    scheduler listens there, within ``timeout`` seconds. An endpoint where
    nothing listens fails at once, in one line; with ``wait``, the
    connection keeps trying for ``timeout`` seconds instead (a service
    started with the cluster, which may not listen yet). With ``context``: the
    cluster of that context (:mod:`essa.api.contexts`; ``"embedded"``: see
    below). With neither: ``$ESSA_CONNECT``'s endpoints, else
    ``$ESSA_CONTEXT``'s context, else the current context (``essa context
    use``, or the cluster ``essa up`` started), else embedded.

    Embedded: a runtime in this process (scheduler, executors and store;
    ``engine``, ``store``, ``store_options``, ``executors``, ``limits`` and
    ``grants`` configure it; the engine and store default to
    ``$ESSA_ENGINE`` and ``$ESSA_STORE`` as for the ``essa`` command, else
    wasmtime and lmdb; ``logs`` bounds what it keeps of its calls' output,
    readable through this connection only), nothing to start first. Passing
    any of ``engine``, ``store``, ``store_options``, ``executors`` or
    ``grants`` asks for it, whatever the current context.

    A secure cluster (see "Securing a cluster" in the README) needs ``tls``,
    this client's certificate files (``essa.TlsFiles(ca, cert, key)``), and a
    ``token`` allowing what it does; they default to the context's, else
    ``$ESSA_TLS_CA``, ``$ESSA_TLS_CERT``, ``$ESSA_TLS_KEY`` and
    ``$ESSA_TOKEN``. The embedded runtime needs neither.
    """
    chosen: contexts.Context | None = None
    if context == contexts.EMBEDDED:
        pass
    elif endpoint is None:
        asks_embedded = any(v is not None for v in (engine, store, store_options, executors, grants))
        if context is None and os.environ.get("ESSA_CONNECT", "").split() and not asks_embedded:
            endpoint = os.environ["ESSA_CONNECT"].split()
        elif context is not None or not asks_embedded:
            chosen = contexts.chosen(context)
            if chosen is not None:
                endpoint = list(chosen.endpoints)
    if endpoint is None:
        runtime = EmbeddedRuntime(engine, store, store_options, executors, limits, grants, logs)
        where = f"embedded ({runtime.engine.name} engine, store {runtime.store.describe()})"
        return Connection(runtime.client, runtime.close, where)
    endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
    cap = max_message_bytes or (limits.max_message_bytes if limits else None)
    if chosen is not None:
        # The context's TLS files (none: plain TCP) and token win over the environment's.
        tls = tls if tls is not None else (chosen.tls_files() or False)
        token = token if token is not None else chosen.token
    try:
        client = connect_client(endpoints, zenoh_config, timeout, cap, tls=tls,
                                token=token if token is not None else security_settings.token(), wait=wait)
    except EssaError as exc:
        if chosen is None:
            raise
        raise EssaError(f"{exc} ({contexts.describe_choice(chosen)})") from None

    def close() -> None:
        client.close()
        client.transport.close()

    where = ", ".join(endpoints) + (f" (context {chosen.name})" if chosen is not None else "")
    return Connection(client, close, where)


__all__ = ["DEFAULT_RETRIES", "MAX_RETRIES", "CallError", "CallResult", "Connection", "LogBounds", "LogFollower", "LogLine",
           "Run", "State", "connect"]
