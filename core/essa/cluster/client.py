"""The client side: submit a module, run it, call its functions, cancel them.

A :class:`Client` talks to a scheduler over a transport and to the store the
executors share. ``essa run`` uses it for embedded and cluster mode alike.
Runs and calls start as :class:`CallHandle` futures; cancelling one ends it
on the executors, with every remote call it started.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time
import uuid
from typing import Any, BinaryIO, Callable, Sequence

from essa.cluster import topics
from essa.cluster.calls import Caller, call_request, outcome
from essa.cluster.consistency import CausalSession
from essa.cluster.programs import check_wasm, module_name, publish_module
from essa.cluster.stdin import StdinServer
from essa.cluster.tracing import check_span
from essa.errors import EssaError, RunFailed
from essa.state.store import Store
from essa.transport.base import Message, Transport
from essa.util.units import format_bytes
from essa.wasm.abi import CallOutcome, EssaResult
from essa.wasm.engine import START
from essa.wasm.limits import Limits


class ConsoleOutput:
    """Writes a run's guest output to this process's stdout and stderr."""

    def __init__(self, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> None:
        self._streams = {1: stdout or sys.stdout.buffer, 2: stderr or sys.stderr.buffer}
        self._lock = threading.Lock()

    def __call__(self, message: Message) -> None:
        stream = self._streams.get(message.get("stream"), self._streams[2])
        with self._lock:
            stream.write(message["data"])
            stream.flush()


class OutputOnce:
    """Passes a run's output messages on to ``output``, each once.

    A call that ran again (its executor died) publishes its output again
    with the same numbers (:class:`essa.cluster.executor.RunOutput`); a
    deterministic call's repeated output is dropped here, and what it prints
    beyond what the first execution printed is shown.
    """

    __slots__ = ("_output", "_seen", "_lock")

    def __init__(self, output: Callable[[Message], None]) -> None:
        self._output = output
        #: call id -> the highest message number shown
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, message: Message) -> None:
        call, n = message.get("call"), message.get("n")
        if isinstance(call, str) and isinstance(n, int):
            with self._lock:
                if n <= self._seen.get(call, 0):
                    return
                self._seen[call] = n
        self._output(message)


class CallHandle(concurrent.futures.Future):
    """A run or call started by a :class:`Client`: a :class:`concurrent.futures.Future`.

    :meth:`result` gives the exit status of a run (or raises
    :class:`RunFailed`), or the :class:`~essa.wasm.abi.CallOutcome` of a call.
    :meth:`cancel` stops it on the executors too, with every remote call it
    started; the future is then cancelled at once.
    """

    def __init__(self, client: "Client", run: str) -> None:
        super().__init__()
        self._client = client
        #: The id of the run (calls of one run share it; cancelling it ends them all).
        self.run = run
        #: The id of the call (its log lines carry it: ``essa logs NAME --call ID``); "" until it is sent.
        self.call = ""
        self._spans: "_Spans | None" = None

    def spans(self, settle: float = 0.3, timeout: float = 5.0) -> list[Message]:
        """The spans of a traced run or call (see :mod:`essa.cluster.tracing`), once it ended.

        Spans travel apart from the reply, so this waits until none arrived
        for ``settle`` seconds (at most ``timeout``). Empty for an untraced one.
        """
        if self._spans is None:
            return []
        return self._spans.collected(settle, timeout)

    def wait(self, timeout: float | None = None) -> Any:
        """:meth:`result`, but a run or call not ended after ``timeout`` seconds is cancelled.

        :raises RunFailed: no answer within ``timeout`` (and the run failures :meth:`result` raises).
        """
        try:
            return self.result(timeout)
        except concurrent.futures.TimeoutError:
            self.cancel(f"the client stopped waiting after {timeout:g} s")
            raise RunFailed(f"no answer within {timeout:g} s") from None

    def cancel(self, reason: str = "cancelled by the client") -> bool:
        """Cancel the run or call; return ``False`` if it had already ended."""
        if not super().cancel():
            return False
        self._client.cancel(self.run, reason)
        return True

    def _settle(self, convert: Callable[[Message], Any], reply: Message) -> None:
        try:
            value = convert(reply)
        except BaseException as exc:  # handed to whoever waits
            settle, value = self.set_exception, exc
        else:
            settle = self.set_result
        try:
            settle(value)
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile
            pass


class Client:
    """Submits modules and calls to a scheduler over ``transport``.

    :param store: the store the executors share, if this process can reach it
        (embedded mode); otherwise a module's bytes travel with its first
        request and the executor that gets it stores them.
    :param max_message_bytes: arguments (and, without a store, modules)
        larger than this are refused here, before anything is sent.
    :param token: the access token sent with every call (a cluster that
        checks tokens refuses calls without one; see :mod:`essa.security`).
    """

    def __init__(
        self,
        transport: Transport,
        store: Store | None = None,
        caller: Caller | None = None,
        max_message_bytes: int | None = None,
        token: str | None = None,
    ) -> None:
        self.transport = transport
        self.token = token
        self.store = store
        self.max_message_bytes = max_message_bytes or Limits().max_message_bytes
        self._owns_caller = caller is None
        self.caller = caller or Caller(transport, "client")
        self._unsent: dict[str, bytes] = {}
        self._run_ids = _RunIds()
        #: causal calls' replies' deps, sent with this client's later causal calls
        self.session = CausalSession()

    def publish(self, wasm: bytes, origin: str = "the module") -> str:
        """Make a module available to the executors; return its name."""
        if self.store is not None:
            return publish_module(self.store, wasm, origin)
        check_wasm(wasm, origin)
        if len(wasm) > self.max_message_bytes:
            raise EssaError(
                f"{origin}: the module's {len(wasm)} bytes exceed the message size limit "
                f"({format_bytes(self.max_message_bytes)}) and cannot travel to the cluster"
            )
        name = module_name(wasm)
        self._unsent[name] = wasm
        return name

    def start_run(
        self,
        module: str,
        output: Callable[[Message], None] | None = None,
        namespace: str | None = None,
        trace: bool = False,
        argv: Sequence[str] | None = None,
        stdin: BinaryIO | bytes | None = None,
    ) -> CallHandle:
        """Start a published module's ``_start``; the handle's result is its exit status.

        Guest output of the run and of every call it makes goes to ``output``
        (default: this process's console). The handle's result raises
        :class:`RunFailed` if the module trapped or could not be run. With
        ``trace``, ``handle.spans()`` gives the run's calls (:mod:`essa.cluster.tracing`).

        :param argv: the program's arguments as the guest sees them, ``argv[0]``
            included (``essa run`` passes the module's path, then its ARGS);
            default: ``[module]``. They travel with the request, and the
            module's remote calls see them too.
        :param stdin: what the module's ``_start`` reads from stdin: a binary
            file (read as the guest asks for it, see :mod:`essa.cluster.stdin`) or
            bytes; default: empty. Remote calls always get an empty stdin.
        :raises RunFailed: an argument cannot be passed (not UTF-8, a NUL byte, too large).
        """
        run = uuid.uuid4().hex
        fields: Message = {"argv": self._checked_argv([module] if argv is None else list(argv))}
        server = None
        if stdin is not None:
            server = StdinServer(self.transport, run, stdin, self.token)
            fields["stdin"] = True
        try:
            handle = self._start(module, START, b"", namespace or run, run, output or ConsoleOutput(), _exit_status,
                                 trace, fields)
        except BaseException:
            if server is not None:
                server.close()
            raise
        if server is not None:
            handle.add_done_callback(lambda _handle: server.close())
        return handle

    def run(
        self,
        module: str,
        output: Callable[[Message], None] | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
        argv: Sequence[str] | None = None,
        stdin: BinaryIO | bytes | None = None,
    ) -> int:
        """Run a published module's ``_start`` and return its exit status.

        Guest output of the run and of every call it makes goes to ``output``
        (default: this process's console). A run not ended after ``timeout``
        seconds is cancelled. ``argv`` and ``stdin`` as for :meth:`start_run`.

        :raises RunFailed: the module trapped, could not be run, or timed out.
        """
        return self.start_run(module, output, namespace, argv=argv, stdin=stdin).wait(timeout)

    def start_call(
        self,
        module: str,
        function: str,
        args: bytes,
        namespace: str = "default",
        output: Callable[[Message], None] | None = None,
        trace: bool = False,
        fields: Message | None = None,
        patience: float | None = None,
    ) -> CallHandle:
        """Start one exported function of a published module; the handle's result is its :class:`CallOutcome`.

        Arguments larger than the message size limit give ``UnknownError`` at
        once. ``trace`` as for :meth:`start_run`; ``fields`` are extra request
        fields (``deployment``: the name the call was made by, for metrics);
        ``patience``: how long the call may wait for a scheduler after its own
        went away (the caller's timeout; see :meth:`essa.cluster.calls.Caller.start`).
        """
        run = self._run_ids.next()
        if len(args) > self.max_message_bytes:
            message = (
                f"cannot call {function}: {len(args)} bytes of arguments exceed the message size limit "
                f"({format_bytes(self.max_message_bytes)})"
            )
            handle = CallHandle(self, run)
            handle.set_result(CallOutcome(EssaResult.UnknownError, message=message, kind="message-size"))
            return handle
        return self._start(module, function, args, namespace, run, output, outcome, trace, fields, patience)

    def call(
        self,
        module: str,
        function: str,
        args: bytes,
        namespace: str = "default",
        output: Callable[[Message], None] | None = None,
        timeout: float | None = None,
    ) -> CallOutcome:
        """Call one exported function of a published module and wait for it.

        Arguments larger than the message size limit give ``UnknownError`` at
        once. A call not ended after ``timeout`` seconds is cancelled.

        :raises RunFailed: no answer within ``timeout``.
        """
        return self.start_call(module, function, args, namespace, output).wait(timeout)

    def _checked_argv(self, argv: list[str]) -> list[str]:
        """``argv``, or :class:`RunFailed` naming the argument WASI cannot carry."""
        size = 0
        for index, arg in enumerate(argv):
            if not isinstance(arg, str):
                raise RunFailed(f"argument {index} is not a string: {arg!r}")
            if "\0" in arg:
                raise RunFailed(f"argument {index} contains a NUL byte, which WASI cannot pass: {arg!r}")
            try:
                size += len(arg.encode("utf-8")) + 1
            except UnicodeEncodeError:
                raise RunFailed(f"argument {index} is not valid UTF-8, which WASI needs: {arg!r}") from None
        if size > self.max_message_bytes:
            raise RunFailed(
                f"the arguments' {size} bytes exceed the message size limit ({format_bytes(self.max_message_bytes)})"
            )
        return argv

    def cancel(self, run: str, reason: str = "cancelled by the client") -> None:
        """End run ``run`` everywhere: its running and queued calls, and the remote calls they started."""
        try:
            self.transport.publish(topics.CANCEL, {"run": run, "reason": reason})
        finally:
            self.caller.cancel_run(run, reason)

    def _start(self, module, function, args, namespace, run, output, convert, trace=False, fields=None,
               patience=None) -> CallHandle:
        handle = CallHandle(self, run)
        extra = dict(fields or {})
        extra.update(self.session.request_extra(extra))
        if self.token is not None:
            extra["token"] = self.token
        if module in self._unsent:
            extra["wasm"] = self._unsent.pop(module)
        if trace:
            handle._spans = _Spans(self.transport, run)
            extra.update(trace=True, sent=time.time())
        if not output:
            extra["output"] = False  # nobody reads it: executors keep it in their logs only
        subscription = self.transport.subscribe(topics.run_output(run), OutputOnce(output)) if output else None
        try:
            future = self.caller.start(call_request(module, function, args, namespace, run, **extra),
                                       patience=patience)
            handle.call = future.id
        except BaseException:
            if subscription:
                subscription.close()
            if handle._spans:
                handle._spans.close()
            raise

        def ended(future) -> None:
            if subscription:
                subscription.close()
            if handle._spans:
                handle._spans.close_later()
            reply = future.result(0)
            self.session.received(reply)  # before the caller learns of the reply (and starts its next call)
            handle._settle(convert, reply)

        future.add_done_callback(ended)
        return handle

    def close(self) -> None:
        if self._owns_caller:
            self.caller.close()


class _RunIds:
    """Fresh random run ids for calls, as ``uuid4().hex`` spells them (32 hex digits), 256 at a time.

    ``os.urandom`` lets go of the GIL, so an event loop that started a call
    (``Connection.acall``) waited to get it back from whichever thread took it,
    on every call; fetching the random bytes of 256 ids at once makes that rare.
    """

    _BATCH = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[str] = []

    def next(self) -> str:
        with self._lock:
            if not self._ids:
                batch = os.urandom(16 * self._BATCH).hex()
                self._ids = [batch[i:i + 32] for i in range(0, len(batch), 32)]
            return self._ids.pop()


class _Spans:
    """The spans of one traced run, as they arrive on its trace topic."""

    #: Seconds the subscription stays open after the run ended (late spans), unless read sooner.
    linger = 5.0

    def __init__(self, transport: Transport, run: str) -> None:
        self._spans: list[Message] = []
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._subscription = transport.subscribe(topics.run_trace(run), self._add)

    def _add(self, message: Message) -> None:
        checked = check_span(message)
        if checked is not None:
            with self._lock:
                if len(self._spans) < 1_000_000:
                    self._spans.append(checked)
                self._last = time.monotonic()

    def collected(self, settle: float, timeout: float) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and time.monotonic() - self._last < settle:
            time.sleep(settle / 4)
        self.close()
        with self._lock:
            return list(self._spans)

    def close_later(self) -> None:
        timer = threading.Timer(self.linger, self.close)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()


def _exit_status(reply: Message) -> int:
    """The exit status a run's reply stands for; raises :class:`RunFailed` for failures with a message."""
    if reply["code"] == EssaResult.Ok:
        return 0
    if reply.get("message"):
        raise RunFailed(reply["message"], reply.get("exit") or 1)
    return reply.get("exit") or 1
