"""essa's public Python API: deploy modules by name, call their functions, read their state.

::

    import essa

    with essa.connect() as es:                      # embedded: this process, the default store
        es.deploy("wc.wasm", name="wc")             # a new version of deployment "wc"
        es.call("wc", "count_words", essa.encode("string", "the quick fox"))   # -> bytes
        es.state("wc").get("vocab")                 # -> SetLattice({b"fox", b"quick", b"the"})

    es = essa.connect("tcp/127.0.0.1:7447")         # a running cluster (`essa up`)

Deployments are named ``NAME`` (the latest version) or ``NAME@3`` (a pinned
one); functions are named as their author wrote them (``count_words``); a
deployment's state lives in the namespace of its name, shared by every
version, every call and ``essa run --namespace NAME``. Every error is an
:class:`essa.errors.EssaError` whose message is the one line the ``essa``
command prints: :class:`~essa.errors.NotFound` for an unknown deployment,
version or function, :class:`CallError` for a call that failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from typing import BinaryIO, Callable, Mapping, Sequence

from essa.cluster import topics
from essa.cluster.client import CallHandle, Client, ConsoleOutput
from essa.cluster.consistency import DEFAULT, check_level
from essa.cluster.control import ControlClient
from essa.cluster.deployments import Deployment, check_name, parse_spec
from essa.cluster.embedded import EmbeddedRuntime
from essa.cluster.processes import connect_client
from essa.cluster.programs import check_wasm, read_module
from essa.errors import EssaError
from essa.placement import MAX_CALL_KEYS
from essa.security import settings as security_settings
from essa.security.tls import TlsFiles
from essa.state.bincode import decode_lattice, encode_lattice
from essa.state.keys import KeyList, encode_text
from essa.state.lattice import Lattice
from essa.transport.base import Message
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
    """

    def __init__(self, message: str, code: EssaResult = EssaResult.UnknownError, kind: str = "error") -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind


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
        self._lock = threading.Lock()
        #: Where this connection runs calls: ``"embedded (...)"`` or the cluster's endpoints.
        self.where = where

    # -- deployments -----------------------------------------------------------------

    def deploy(self, module: str | os.PathLike | bytes, name: str, consistency: str | None = None) -> Deployment:
        """Store ``module`` (a path or the bytes) as a new version of deployment ``name``.

        The module is compiled on deploy: a module that cannot run is refused
        here. ``consistency`` is the level of the version's calls that name
        none (see :meth:`call`). Returns the new version.
        """
        problem = check_level(consistency)
        if problem is not None:
            raise EssaError(problem)
        check_name(name)
        if isinstance(module, (bytes, bytearray)):
            wasm = bytes(module)
            check_wasm(wasm, "the module")
        else:
            wasm = read_module(os.fspath(module))
        extra = {"consistency": consistency} if consistency not in (None, DEFAULT) else {}
        answer = self._control.request("deploy", timeout=DEPLOY_TIMEOUT, name=name, wasm=wasm,
                                       id=os.urandom(16).hex(), created=time.time_ns(), **extra)
        deployment = Deployment.from_dict(answer["deployment"])
        self._forget(name)
        return deployment

    def deployment(self, spec: str) -> Deployment:
        """The deployment ``NAME`` (its latest version) or ``NAME@VERSION``."""
        name, version = parse_spec(spec)
        pinned = version is not None
        with self._lock:
            cached = self._resolved.get(spec)
        if cached is not None and (pinned or cached[1] > time.monotonic()):
            return cached[0]
        answer = self._control.request("resolve", spec=spec)
        deployment = Deployment.from_dict(answer["deployment"])
        with self._lock:
            if len(self._resolved) > 4096:
                self._resolved.clear()
            self._resolved[spec] = (deployment, time.monotonic() + RESOLVE_TTL)
        return deployment

    def deployments(self) -> list[Deployment]:
        """The latest version of every deployment, by name."""
        return [Deployment.from_dict(d) for d in self._control.request("list")["deployments"]]

    def versions(self, name: str) -> list[Deployment]:
        """Every version of deployment ``name``, oldest first."""
        return [Deployment.from_dict(d) for d in self._control.request("versions", name=name)["deployments"]]

    def functions(self, spec: str) -> list[str]:
        """The functions of a deployment, as their author named them."""
        return list(self.deployment(spec).functions)

    def remove(self, name: str, purge: bool = False) -> int:
        """Remove deployment ``name`` (every version); its state stays unless ``purge``.

        Returns the number of state keys deleted (0 without ``purge``).
        """
        answer = self._control.request("remove", name=name, purge=purge)
        self._forget(name)
        return answer["purged"]

    def _forget(self, name: str) -> None:
        with self._lock:
            for spec in [s for s in self._resolved if s == name or s.startswith(name + "@")]:
                del self._resolved[spec]

    # -- calls -----------------------------------------------------------------------

    def call_async(self, spec: str, function: str, args: bytes = b"",
                   output: Callable[[Message], None] | None = None, trace: bool = False,
                   consistency: str | None = None, keys: Sequence[str] | None = None) -> concurrent.futures.Future:
        """Start ``function`` of deployment ``spec``; the future's result is the result bytes.

        The future raises :class:`CallError` if the call fails; cancelling it
        ends the call on the executors. Guest output (and essa's warnings
        about the call) goes to ``output``, else nowhere. With ``trace``,
        ``future.spans()`` gives the call and every remote call it made
        (:mod:`essa.cluster.tracing`). ``consistency`` and ``keys`` as for :meth:`call`.
        """
        return _BytesFuture(self._start_call(spec, function, args, output, trace, consistency, keys))

    def _start_call(self, spec: str, function: str, args: bytes, output: Callable[[Message], None] | None,
                    trace: bool = False, consistency: str | None = None,
                    keys: Sequence[str] | None = None) -> CallHandle:
        problem = check_level(consistency)
        if problem is not None:
            raise EssaError(problem)
        deployment = self.deployment(spec)
        export = deployment.check_function(function)
        fields = {"deployment": deployment.name}
        level = consistency if consistency is not None else deployment.consistency
        if level != DEFAULT:
            fields["consistency"] = level
        if keys:
            fields["keys"] = list(keys)[:MAX_CALL_KEYS]
            for key in fields["keys"]:
                encode_text(key)
        return self._client.start_call(deployment.module, export, bytes(args), deployment.namespace, output,
                                       trace=trace, fields=fields)

    def call(self, spec: str, function: str, args: bytes = b"", timeout: float | None = None,
             output: Callable[[Message], None] | None = None, consistency: str | None = None,
             keys: Sequence[str] | None = None) -> bytes:
        """Call ``function`` of deployment ``spec`` with ``args``; return the result bytes.

        A call not answered after ``timeout`` seconds is cancelled.
        ``consistency`` is the level of the call and every call it starts:
        ``"default"``, ``"repeatable-read"`` or ``"causal"`` (see
        :mod:`essa.cluster.consistency`); by default, the deployment's. ``keys`` are state keys the call
        will touch: the scheduler prefers an executor whose cache holds them
        (at most 16 count).

        :raises essa.errors.NotFound: no such deployment, version or function.
        :raises CallError: the call failed (trapped, exceeded a limit, ...).
        """
        handle = self._start_call(spec, function, args, output, consistency=consistency, keys=keys)
        try:
            outcome = handle.result(timeout)
        except concurrent.futures.TimeoutError:
            handle.cancel()
            raise CallError(f"{function}: no answer within {timeout:g} s", kind="cancelled") from None
        return _value(outcome)

    async def acall(self, spec: str, function: str, args: bytes = b"", consistency: str | None = None) -> bytes:
        """:meth:`call` for asyncio: awaits the result bytes (cancelling the task cancels the call)."""
        return await asyncio.wrap_future(self.call_async(spec, function, args, consistency=consistency))

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

    # -- state -----------------------------------------------------------------------

    def state(self, namespace: str) -> State:
        """The state of a deployment (its name is its namespace) or of any namespace."""
        return State(self._control, namespace)

    def status(self, timeout: float = 1.0, complete_within: float = 0.0) -> list[dict]:
        """What ``essa status`` shows: the status answer of the scheduler and of every executor.

        Executors answer ``role``, ``id``, ``calls``, ``runs``, ``failures``,
        ``cancelled``, ``running``, ``latency_ms``, ``by_function``, ``modules``;
        the scheduler ``role``, ``id``, ``in_flight`` (calls placed and not done),
        ``unconfirmed`` (done, their callers' receipts not in yet), ``waiting``
        (for an executor), ``executors`` (the same counts per executor).
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


class _BytesFuture(concurrent.futures.Future):
    """The future of :meth:`Connection.call_async`: result bytes, or :class:`CallError`."""

    def __init__(self, handle: CallHandle) -> None:
        super().__init__()
        self._handle = handle
        handle.add_done_callback(self._settle)

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._handle.cancel()
        return True

    def spans(self, settle: float = 0.3, timeout: float = 5.0) -> list[Message]:
        """The calls of a call made with ``trace=True``, once it ended (see :meth:`Run.spans`)."""
        return self._handle.spans(settle, timeout)

    def _settle(self, handle: CallHandle) -> None:
        if handle.cancelled():
            return
        try:
            try:
                value = _value(handle.result())
            except CallError as exc:
                self.set_exception(exc)
            else:
                self.set_result(value)
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile
            pass


def _value(outcome: CallOutcome) -> bytes:
    """A call's result bytes, or its failure as :class:`CallError`."""
    if outcome.code == EssaResult.Ok:
        return outcome.value
    raise CallError(outcome.message or outcome.code.name, outcome.code, outcome.kind or "error")


def connect(
    endpoint: str | Sequence[str] | None = None,
    *,
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
) -> Connection:
    """Connect to essa.

    Without ``endpoint``: an embedded runtime in this process (scheduler,
    executors and store; ``engine``, ``store``, ``store_options``,
    ``executors``, ``limits`` and ``grants`` configure it; the engine and
    store default to ``$ESSA_ENGINE`` and ``$ESSA_STORE`` as for the ``essa``
    command, else wasmtime and lmdb), nothing to start first. With ``endpoint`` (``"tcp/HOST:PORT"``, or several): the cluster
    whose scheduler listens there, within ``timeout`` seconds.

    A secure cluster (see "Securing a cluster" in the README) needs ``tls``,
    this client's certificate files (``essa.TlsFiles(ca, cert, key)``), and a
    ``token`` allowing what it does; they default to ``$ESSA_TLS_CA``,
    ``$ESSA_TLS_CERT``, ``$ESSA_TLS_KEY`` and ``$ESSA_TOKEN``. The embedded
    runtime needs neither.
    """
    if endpoint is None:
        runtime = EmbeddedRuntime(engine, store, store_options, executors, limits, grants)
        where = f"embedded ({runtime.engine.name} engine, store {runtime.store.describe()})"
        return Connection(runtime.client, runtime.close, where)
    endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
    cap = max_message_bytes or (limits.max_message_bytes if limits else None)
    client = connect_client(endpoints, zenoh_config, timeout, cap, tls=tls,
                            token=token if token is not None else security_settings.token())

    def close() -> None:
        client.close()
        client.transport.close()

    return Connection(client, close, ", ".join(endpoints))


__all__ = ["CallError", "Connection", "Run", "State", "connect"]
