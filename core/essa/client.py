"""The client side: submit a module, run it, call its functions.

A :class:`Client` talks to a scheduler over a transport and to the store the
executors share. ``essa run`` uses it for embedded and cluster mode alike.
"""

from __future__ import annotations

import sys
import threading
import uuid
from typing import BinaryIO, Callable, Sequence

from . import topics
from .abi import CallOutcome, EssaResult
from .engine import START, Limits, format_bytes
from .errors import EssaError
from .calls import Caller, call_request, outcome
from .programs import check_wasm, module_name, publish_module
from .stdin import StdinServer
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
        (default: this process's console).

        :param argv: the program's arguments as the guest sees them, ``argv[0]``
            included (``essa run`` passes the module's path, then its ARGS);
            default: ``[module]``. They travel with the request, and the
            module's remote calls see them too.
        :param stdin: what the module's ``_start`` reads from stdin: a binary
            file (read as the guest asks for it, see :mod:`essa.stdin`) or
            bytes; default: empty. Remote calls always get an empty stdin.
        :raises RunFailed: the module trapped or could not be run, or an
            argument cannot be passed (not UTF-8, a NUL byte, too large).
        """
        run = uuid.uuid4().hex
        extra = {"argv": self._checked_argv([module] if argv is None else list(argv))}
        server = None
        if stdin is not None:
            server = StdinServer(self.transport, run, stdin)
            extra["stdin"] = True
        try:
            result = self._request(module, START, b"", namespace or run, run, output or ConsoleOutput(), timeout,
                                   **extra)
        finally:
            if server is not None:
                server.close()
        if result["code"] == EssaResult.Ok:
            return 0
        if result.get("message"):
            raise RunFailed(result["message"], result.get("exit") or 1)
        return result.get("exit") or 1

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

        Arguments larger than the message size limit give ``UnknownError`` at once.
        """
        if len(args) > self.max_message_bytes:
            message = (
                f"cannot call {function}: {len(args)} bytes of arguments exceed the message size limit "
                f"({format_bytes(self.max_message_bytes)})"
            )
            return CallOutcome(EssaResult.UnknownError, message=message)
        result = self._request(module, function, args, namespace, uuid.uuid4().hex, output, timeout)
        return outcome(result)

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

    def _request(self, module, function, args, namespace, run, output, timeout, **extra) -> Message:
        if module in self._unsent:
            extra["wasm"] = self._unsent.pop(module)
        subscription = self.transport.subscribe(topics.run_output(run), output) if output else None
        try:
            future = self.caller.start(call_request(module, function, args, namespace, run, **extra))
            try:
                return future.result(timeout)
            except TimeoutError:
                raise RunFailed(f"no answer within {timeout:g} s") from None
        finally:
            if subscription:
                subscription.close()

    def close(self) -> None:
        if self._owns_caller:
            self.caller.close()
