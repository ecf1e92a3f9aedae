"""The client side: submit a module, run it, call its functions, cancel them.

A :class:`Client` talks to a scheduler over a transport and to the store the
executors share. ``essa run`` uses it for embedded and cluster mode alike.
Runs and calls start as :class:`CallHandle` futures; cancelling one ends it
on the executors, with every remote call it started.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import uuid
from typing import Any, BinaryIO, Callable

from . import topics
from .abi import CallOutcome, EssaResult
from .calls import Caller, call_request, outcome
from .engine import START, Limits, format_bytes
from .errors import EssaError
from .programs import check_wasm, module_name, publish_module
from .store import Store
from .transport.base import Message, Transport


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


class RunFailed(EssaError):
    """A run ended with an error (a trap, a bad module); ``exit_status`` says how."""

    def __init__(self, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class CallHandle(concurrent.futures.Future):
    """A run or call started by a :class:`Client`: a :class:`concurrent.futures.Future`.

    :meth:`result` gives the exit status of a run (or raises
    :class:`RunFailed`), or the :class:`~essa.abi.CallOutcome` of a call.
    :meth:`cancel` stops it on the executors too, with every remote call it
    started; the future is then cancelled at once.
    """

    def __init__(self, client: "Client", run: str) -> None:
        super().__init__()
        self._client = client
        #: The id of the run (calls of one run share it; cancelling it ends them all).
        self.run = run

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
    """

    def __init__(
        self,
        transport: Transport,
        store: Store | None = None,
        caller: Caller | None = None,
        max_message_bytes: int | None = None,
    ) -> None:
        self.transport = transport
        self.store = store
        self.max_message_bytes = max_message_bytes or Limits().max_message_bytes
        self._owns_caller = caller is None
        self.caller = caller or Caller(transport, "client")
        self._unsent: dict[str, bytes] = {}

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
    ) -> CallHandle:
        """Start a published module's ``_start``; the handle's result is its exit status.

        Guest output of the run and of every call it makes goes to ``output``
        (default: this process's console). The handle's result raises
        :class:`RunFailed` if the module trapped or could not be run.
        """
        run = uuid.uuid4().hex
        return self._start(module, START, b"", namespace or run, run, output or ConsoleOutput(), _exit_status)

    def run(
        self,
        module: str,
        output: Callable[[Message], None] | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> int:
        """Run a published module's ``_start`` and return its exit status.

        Guest output of the run and of every call it makes goes to ``output``
        (default: this process's console). A run not ended after ``timeout``
        seconds is cancelled.

        :raises RunFailed: the module trapped, could not be run, or timed out.
        """
        return _wait(self.start_run(module, output, namespace), timeout)

    def start_call(
        self,
        module: str,
        function: str,
        args: bytes,
        namespace: str = "default",
        output: Callable[[Message], None] | None = None,
    ) -> CallHandle:
        """Start one exported function of a published module; the handle's result is its :class:`CallOutcome`.

        Arguments larger than the message size limit give ``UnknownError`` at once.
        """
        run = uuid.uuid4().hex
        if len(args) > self.max_message_bytes:
            message = (
                f"cannot call {function}: {len(args)} bytes of arguments exceed the message size limit "
                f"({format_bytes(self.max_message_bytes)})"
            )
            handle = CallHandle(self, run)
            handle.set_result(CallOutcome(EssaResult.UnknownError, message=message, kind="message-size"))
            return handle
        return self._start(module, function, args, namespace, run, output, outcome)

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
        return _wait(self.start_call(module, function, args, namespace, output), timeout)

    def cancel(self, run: str, reason: str = "cancelled by the client") -> None:
        """End run ``run`` everywhere: its running and queued calls, and the remote calls they started."""
        try:
            self.transport.publish(topics.CANCEL, {"run": run, "reason": reason})
        finally:
            self.caller.cancel_run(run, reason)

    def _start(self, module, function, args, namespace, run, output, convert) -> CallHandle:
        handle = CallHandle(self, run)
        extra = {"wasm": self._unsent.pop(module)} if module in self._unsent else {}
        subscription = self.transport.subscribe(topics.run_output(run), output) if output else None
        try:
            future = self.caller.start(call_request(module, function, args, namespace, run, **extra))
        except BaseException:
            if subscription:
                subscription.close()
            raise

        def ended(future) -> None:
            if subscription:
                subscription.close()
            handle._settle(convert, future.result(0))

        future.add_done_callback(ended)
        return handle

    def close(self) -> None:
        if self._owns_caller:
            self.caller.close()


def _exit_status(reply: Message) -> int:
    """The exit status a run's reply stands for; raises :class:`RunFailed` for failures with a message."""
    if reply["code"] == EssaResult.Ok:
        return 0
    if reply.get("message"):
        raise RunFailed(reply["message"], reply.get("exit") or 1)
    return reply.get("exit") or 1


def _wait(handle: CallHandle, timeout: float | None) -> Any:
    """``handle.result(timeout)``; on timeout, cancel it and raise :class:`RunFailed`."""
    try:
        return handle.result(timeout)
    except concurrent.futures.TimeoutError:
        handle.cancel(f"the client stopped waiting after {timeout:g} s")
        raise RunFailed(f"no answer within {timeout:g} s") from None
